//! [`preflight`]: what a valid config still asks for that this broker refuses, checked before
//! it is put in force (at start and on every reload) and by `mycelium check`, so that the
//! check and the broker never disagree.

use std::path::Path;

use mycelium_config::BrokerConfig;
use nix::unistd::{access, AccessFlags};

use crate::core::acl::TopicAcl;

/// One line per refusal (empty when the broker would run `config`): access lists naming
/// users or groups this machine does not have, a `[storage] data_dir` the broker could not
/// keep durable topics' logs in.
pub fn preflight(config: &BrokerConfig) -> Vec<String> {
    let mut problems = TopicAcl::check_all(config);
    problems.extend(storage_problem(config));
    problems
}

/// Why durable topics could not keep their logs in `[storage] data_dir`, if they could not:
/// it must be a directory the broker may write in, or not exist yet under one it may create
/// it in. (Validation already refused durable topics without a data_dir.)
fn storage_problem(config: &BrokerConfig) -> Option<String> {
    let wants_logs =
        config.topic_defaults.durable || config.topics.iter().any(|topic| topic.durable);
    let dir = config.storage.data_dir.as_deref()?;
    if !wants_logs {
        return None;
    }
    let refusal = |why: String| {
        Some(format!(
            "[storage] data_dir {}: {why}; durable topics keep their logs there",
            dir.display()
        ))
    };
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => refusal("is not a directory".into()),
        Ok(_) => writable(dir).err().and_then(refusal),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // Created at start: the nearest directory that exists must take it.
            let parent = dir.ancestors().skip(1).find(|a| a.exists());
            match parent {
                Some(parent) if parent.is_dir() => writable(parent).err().and_then(|why| {
                    refusal(format!("does not exist and cannot be created ({why})"))
                }),
                _ => refusal("does not exist and no directory above it does".into()),
            }
        }
        Err(error) => refusal(error.to_string()),
    }
}

fn writable(dir: &Path) -> Result<(), String> {
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
        .map_err(|errno| format!("{} is not writable: {}", dir.display(), errno.desc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durable_config(data_dir: &Path) -> BrokerConfig {
        let mut config = BrokerConfig::default();
        let mut topic = config.topic_defaults.topic("kept");
        topic.durable = true;
        config.topics.push(topic);
        config.storage.data_dir = Some(data_dir.to_path_buf());
        config
    }

    #[test]
    fn a_data_dir_that_exists_or_can_be_made_passes_and_a_file_does_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(preflight(&durable_config(tmp.path())).is_empty());
        assert!(preflight(&durable_config(&tmp.path().join("a/b/c"))).is_empty());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let problems = preflight(&durable_config(&file));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("is not a directory"),
            "{}",
            problems[0]
        );
        let under_file = preflight(&durable_config(&file.join("logs")));
        assert_eq!(under_file.len(), 1, "{under_file:?}");
        // Nobody needs a data_dir when no topic is durable.
        let mut plain = durable_config(&file);
        plain.topics[0].durable = false;
        assert!(preflight(&plain).is_empty());
    }

    #[test]
    fn a_data_dir_the_broker_may_not_write_is_refused() {
        if nix::unistd::geteuid().is_root() {
            eprintln!("skipped: root may write anywhere, so no directory is unwritable to it");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let locked = tmp.path().join("locked");
        std::fs::create_dir(&locked).expect("mkdir");
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o500))
            .expect("chmod");
        let problems = preflight(&durable_config(&locked));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("not writable"), "{}", problems[0]);
    }
}
