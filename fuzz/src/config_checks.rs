//! The properties the `config` fuzz target checks: arbitrary text through the config loader and,
//! when two texts load, through [`ConfigDiff`].
//!
//! - The input is UTF-8 text (other inputs are skipped); a NUL byte, if any, splits it into a
//!   running config and a wanted one (a reload from the first to the second).
//! - Loading (`from_toml_str_with_env`, no environment) never panics; an error renders, and has at
//!   least one diagnostic, each a non-empty line naming the origin, with a line and column (when
//!   it has them) inside the text.
//! - A loaded config validates (`validate()` finds nothing), and diffs against itself to nothing.
//! - For two loaded configs: the diff's `summary()` is `no change` exactly when it is empty,
//!   `pending()` lists exactly its `Restart` and `Refused` changes, its effective config is valid,
//!   and the effective config diffed against the wanted one leaves only `Restart` and `Refused`
//!   changes (no topic added or removed): what the broker runs after the reload is the file,
//!   except what it cannot follow.
//!
//! This file is compiled by the fuzz crate and, through `#[path]`, by
//! `mycelium-config/tests/fuzz_corpus.rs`, which replays the committed corpus on stable.

use std::path::Path;

use mycelium_config::{BrokerConfig, ConfigDiff, ConfigError, Takes};

/// The origin every input is loaded under.
const ORIGIN: &str = "broker.toml";

/// Checks the loader and the diff on `data`; panics on a violation.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (running, wanted) = match text.split_once('\0') {
        Some((running, wanted)) => (running, Some(wanted)),
        None => (text, None),
    };
    let running = load(running);
    let wanted = wanted.map(load);
    let _ = mycelium_config::socket_path_leniently(text, []);
    match (running, wanted) {
        (Some(running), Some(Some(wanted))) => {
            check_reload(&running, &wanted);
            check_reload(&wanted, &running);
        }
        (Some(running), None) => check_reload(&BrokerConfig::default(), &running),
        _ => {}
    }
}

/// Loads `text`, checking the error or the config; the config if it loaded.
fn load(text: &str) -> Option<BrokerConfig> {
    match BrokerConfig::from_toml_str_with_env(text, Path::new(ORIGIN), []) {
        Ok(config) => {
            let problems = config.validate();
            assert!(
                problems.is_empty(),
                "a loaded config does not validate: {problems:?}"
            );
            let same = ConfigDiff::between(&config, &config);
            assert!(same.is_empty(), "a config differs from itself: {same:?}");
            assert_eq!(same.summary(), "no change");
            assert!(same.pending().is_empty());
            assert_eq!(same.effective(), &config);
            Some(config)
        }
        Err(error) => {
            check_error(text, &error);
            None
        }
    }
}

/// An error renders, and each of its diagnostics is a located line.
fn check_error(text: &str, error: &ConfigError) {
    assert!(
        !error.to_string().is_empty(),
        "an error renders empty: {error:?}"
    );
    let lines = error.diagnostics();
    assert!(!lines.is_empty(), "an error without diagnostics: {error:?}");
    for line in &lines {
        assert!(!line.trim().is_empty(), "an empty diagnostic in {error:?}");
    }
    let diagnostics = match error {
        ConfigError::Parse(diagnostic) => std::slice::from_ref(diagnostic),
        ConfigError::Invalid(diagnostics) => {
            assert!(!diagnostics.is_empty(), "Invalid without a problem");
            &diagnostics[..]
        }
        ConfigError::Env { .. } => panic!("no environment was given, yet {error:?}"),
        other => panic!("loading text failed with {other:?}"),
    };
    // The text's lines, counting one after a final newline (where an unterminated value ends).
    let line_count = text.lines().count() + 1;
    for diagnostic in diagnostics {
        assert_eq!(diagnostic.file, Path::new(ORIGIN), "{diagnostic:?}");
        assert!(!diagnostic.message.is_empty(), "{diagnostic:?}");
        let rendered = diagnostic.to_string();
        assert!(rendered.contains(&diagnostic.message), "{rendered}");
        if let Some(line) = diagnostic.line {
            assert!(
                (1..=line_count).contains(&line),
                "line {line} of a {line_count}-line text: {diagnostic:?}"
            );
        }
        if let Some(column) = diagnostic.column {
            assert!(column >= 1, "column 0: {diagnostic:?}");
            assert!(
                diagnostic.line.is_some(),
                "a column without a line: {diagnostic:?}"
            );
        }
    }
}

/// The diff of a reload from `running` to `wanted`, and the reload after it.
fn check_reload(running: &BrokerConfig, wanted: &BrokerConfig) {
    let diff = ConfigDiff::between(running, wanted);
    let summary = diff.summary();
    assert_eq!(summary == "no change", diff.is_empty(), "{summary}");
    let unfollowed = diff
        .changes()
        .iter()
        .filter(|change| matches!(change.takes, Takes::Restart | Takes::Refused))
        .count();
    let pending = diff.pending();
    assert_eq!(
        pending.len(),
        unfollowed,
        "pending {pending:?} for {diff:?}"
    );
    for change in diff.changes() {
        assert_ne!(
            change.old, change.new,
            "a change to the same value: {change:?}"
        );
        assert!(
            summary.contains(&change.to_string()),
            "{summary} misses {change}"
        );
    }
    for topic in diff.added() {
        assert!(running.topic(&topic.name).is_none() && wanted.topic(&topic.name).is_some());
    }
    for name in diff.removed() {
        assert!(running.topic(name).is_some() && wanted.topic(name).is_none());
    }

    let effective = diff.effective();
    let problems = effective.validate();
    assert!(
        problems.is_empty(),
        "the effective config of a reload does not validate: {problems:?}\n{summary}"
    );
    let again = ConfigDiff::between(effective, wanted);
    assert!(
        again.added().is_empty() && again.removed().is_empty(),
        "reloading the same file again adds or removes topics: {again:?}"
    );
    for change in again.changes() {
        assert!(
            matches!(change.takes, Takes::Restart | Takes::Refused),
            "after a reload the file still changes {change} (first: {summary})"
        );
    }
    assert_eq!(
        again.pending(),
        pending,
        "a second reload reports other pending changes"
    );
    assert!(ConfigDiff::between(effective, effective).is_empty());
}
