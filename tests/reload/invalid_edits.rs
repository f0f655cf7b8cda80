//! An invalid edit changes nothing, and the broker reports it by file, line and field.

use super::*;

#[test]
fn an_invalid_edit_changes_nothing_and_the_broker_reports_file_line_and_field() {
    let good = format!(
        "{}{}",
        fanout("a"),
        topic_with("b", "queue", "prefetch = 8")
    );
    let broker = TestBroker::start(&good);
    let mut sub = spawn_sub(&broker, "a", &[]);
    let cases = [
        // A TOML syntax error.
        (
            format!("{good}[[topics]\nname = \"c\"\n"),
            "broker.toml:",
            "",
        ),
        // An unknown field.
        (
            format!("{good}[[topics]]\nname = \"c\"\nrouting = \"fanout\"\nbufer_size = 5\n"),
            "topics[2].bufer_size: unknown field `bufer_size`",
            "broker.toml:14:",
        ),
        // A duplicate topic.
        (
            format!("{good}{}", fanout("a")),
            "topics[2].name: duplicate topic name `a`",
            "broker.toml:12:",
        ),
        // Zero where more is needed.
        (
            format!(
                "{}{}",
                fanout("a"),
                topic_with("b", "queue", "buffer_size = 0")
            ),
            "topics[1].buffer_size: must be greater than 0",
            "broker.toml:",
        ),
    ];
    let start_generation = generation(&broker);
    for (n, (text, expected, located)) in cases.iter().enumerate() {
        let attempts = reloads(&broker);
        std::fs::write(&broker.config, broker.config_text(text)).expect("write");
        let status = wait_for_attempt_after(&broker, attempts);
        assert_eq!(status["last_reload_failed"], true, "case {n}: {status}");
        let errors = lines(&status, "last_error").join("\n");
        assert!(errors.contains(expected), "case {n}: {errors}");
        assert!(errors.contains(located), "case {n}: {errors}");
        assert!(
            errors.contains(&broker.config.display().to_string()),
            "case {n}: the error names the file: {errors}"
        );
        assert_eq!(
            status["generation"].as_u64(),
            Some(start_generation),
            "case {n}: an invalid file must change nothing"
        );
        // `mycelium check` prints the same diagnostics without the broker.
        let check = run_to_end(
            broker
                .cmd()
                .arg("check")
                .arg("--config")
                .arg(&broker.config),
        );
        assert!(!check.status.success(), "case {n}: check must fail");
        assert_eq!(check.stdout.trim_end(), errors, "case {n}");
        // `mycelium reload` says so too, and exits 1.
        let reload = run_to_end(broker.cmd().arg("reload"));
        assert_eq!(reload.status.code(), Some(1), "case {n}: {}", reload.stdout);
        assert!(
            reload.stdout.contains(expected),
            "case {n}: {}",
            reload.stdout
        );
        // The broker keeps serving on the last good config.
        let out = run_to_end(broker.cmd().args(["pub", "a", &format!("still-{n}")]));
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(sub.take_lines(1), [format!("still-{n}")]);
    }
    let status = stats_json(&broker);
    let names: BTreeSet<&str> = status["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["a", "b"]));
    // A client that finds the broker through the (now invalid) file still reaches it.
    let found = run_to_end(
        broker
            .cmd()
            .env_remove("MYCELIUM_SOCKET")
            .args(["stats", "--config"])
            .arg(&broker.config),
    );
    assert!(found.status.success(), "{}", found.stderr);
    assert!(found.stderr.contains("is invalid"), "{}", found.stderr);
    assert!(
        found.stdout.contains("last reload FAILED"),
        "{}",
        found.stdout
    );
    // Fixing the file applies it, and clears the failure.
    let before = generation(&broker);
    broker.rewrite_config(&format!("{good}{}", fanout("c")));
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(status["last_reload_failed"], false, "{status}");
    assert_eq!(status["last_change"], "+topic c");
    let text = run_to_end(broker.cmd().arg("stats"));
    assert!(
        text.stdout.contains("last change: +topic c"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("FAILED"), "{}", text.stdout);
    assert!(sub.child.try_wait().expect("try_wait").is_none());
}

/// A durable topic whose `[storage] data_dir` cannot hold logs (here a file, which even root
/// cannot make a directory of): the broker does not start and says why, `mycelium check` says
/// the same, and a reload asking for it fails and changes nothing. With a usable data_dir the
/// same reload adds the topic, its log directory made.
#[test]
fn a_durable_topic_whose_data_dir_cannot_be_used_is_refused_at_start_and_on_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_dir = dir.path().join("data");
    std::fs::write(&not_a_dir, b"a file").expect("write");
    let durable_in = |data_dir: &std::path::Path| {
        format!(
            "[storage]\ndata_dir = \"{}\"\n\n{}",
            data_dir.display(),
            topic_with("kept", "fanout", "durable = true")
        )
    };
    let durable = durable_in(&not_a_dir);
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket_path = \"{}\"\n\n{durable}",
            dir.path().join("b.sock").display()
        ),
    )
    .expect("write");
    let out = run_to_end(
        std::process::Command::new(common::mycelium_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("MYCELIUM_LOG"),
    );
    assert!(!out.status.success(), "the broker must not start");
    let why = format!(
        "[storage] data_dir {}: is not a directory",
        not_a_dir.display()
    );
    assert!(out.stderr.contains(&why), "{}", out.stderr);
    // `mycelium check` says the same of the file, and fails.
    let check = run_to_end(
        std::process::Command::new(common::mycelium_bin())
            .args(["check", "--config"])
            .arg(&config),
    );
    assert!(!check.status.success(), "{}", check.stdout);
    assert!(check.stdout.contains(&why), "{}", check.stdout);

    let broker = TestBroker::start(&fanout("a"));
    let start_generation = generation(&broker);
    let attempts = reloads(&broker);
    std::fs::write(
        &broker.config,
        broker.config_text(&format!("{}{durable}", fanout("a"))),
    )
    .expect("write");
    let status = wait_for_attempt_after(&broker, attempts);
    assert_eq!(status["last_reload_failed"], true, "{status}");
    let errors = lines(&status, "last_error").join("\n");
    assert!(errors.contains(&why), "{errors}");
    assert_eq!(status["generation"].as_u64(), Some(start_generation));
    assert!(!topic_names(&broker).contains("kept"));

    let data = dir.path().join("logs");
    let before = generation(&broker);
    broker.rewrite_config(&format!("{}{}", fanout("a"), durable_in(&data)));
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(status["last_reload_failed"], false, "{status}");
    assert!(topic_names(&broker).contains("kept"));
    assert!(
        data.join("kept").is_dir(),
        "the topic's log directory is made"
    );
}
