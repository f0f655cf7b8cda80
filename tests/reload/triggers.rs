//! What starts a reload and what it keeps: a save by rename as editors do, a burst of writes
//! (one consistent result), SIGHUP and `mycelium reload` without a watcher event; environment
//! overrides still win, and a socket mode change applies to the socket file at once.

use super::*;

#[test]
fn a_save_by_rename_as_editors_do_is_applied() {
    let broker = TestBroker::start(&fanout("a"));
    let before = generation(&broker);
    let temp = broker.dir.path().join(".broker.toml.swp");
    std::fs::write(
        &temp,
        broker.config_text(&format!("{}{}", fanout("a"), fanout("b"))),
    )
    .expect("write temp");
    std::fs::rename(&temp, &broker.config).expect("rename over the config");
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(status["last_change"], "+topic b", "{status}");
    // And again: the watch survives the replaced file.
    let before = generation(&broker);
    std::fs::write(&temp, broker.config_text(&fanout("b"))).expect("write temp");
    std::fs::rename(&temp, &broker.config).expect("rename over the config");
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(status["last_change"], "-topic a", "{status}");
}

#[test]
fn a_burst_of_twenty_writes_in_100_ms_ends_in_one_consistent_config() {
    let base = fanout("base");
    let broker = TestBroker::start(&base);
    let sub = spawn_sub(&broker, "base", &[]);
    let (start_generation, start_reloads) = (generation(&broker), reloads(&broker));
    let started = std::time::Instant::now();
    for i in 0..20 {
        broker.rewrite_config(&format!("{base}{}", fanout(&format!("burst.{i}"))));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let written_in = started.elapsed();
    let want = BTreeSet::from(["base".to_owned(), "burst.19".to_owned()]);
    wait_until("the broker to serve the final config", || {
        topic_names(&broker) == want
    });
    let status = config_status(&broker);
    assert_eq!(status["last_reload_failed"], false, "{status}");
    let applied = status["generation"].as_u64().expect("generation") - start_generation;
    let attempts = status["reloads"].as_u64().expect("reloads") - start_reloads;
    // Debounced: the burst is reloaded once or twice (a reload may start between two writes
    // that a loaded machine spaced by more than the 100 ms of quiet), not once per write.
    assert!(applied >= 1, "the final config was applied");
    if written_in < std::time::Duration::from_millis(300) {
        assert!(
            applied <= 3 && attempts <= 4,
            "{applied} reloads applied, {attempts} attempted for 20 writes in {written_in:?}"
        );
    }
    // The untouched topic kept its subscriber throughout.
    let out = run_to_end(broker.cmd().args(["pub", "base", "after-burst"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(sub.take_lines(1), ["after-burst"]);
}

#[test]
fn environment_overrides_still_win_after_a_reload() {
    let file = |size: usize| {
        format!(
            "{}{}",
            topic_with("limited", "fanout", &format!("max_message_size = {size}")),
            fanout("other")
        )
    };
    let broker = TestBroker::start_with_env(
        "",
        &file(1000),
        &[("MYCELIUM_TOPICS__LIMITED__MAX_MESSAGE_SIZE", "100")],
    );
    let big = "x".repeat(150);
    let out = run_to_end(broker.cmd().args(["pub", "limited", &big]));
    assert!(
        !out.status.success(),
        "the override's limit applies at start"
    );
    let before = generation(&broker);
    broker.rewrite_config(&format!("{}{}", file(5000), fanout("added")));
    let status = wait_for_generation_after(&broker, before);
    // The file's new limit is overridden, so it is no change at all.
    assert_eq!(status["last_change"], "+topic added", "{status}");
    let out = run_to_end(broker.cmd().args(["pub", "limited", &big]));
    assert!(
        !out.status.success(),
        "the override still wins: {}",
        out.stderr
    );
    assert!(out.stderr.contains("limit of 100 bytes"), "{}", out.stderr);
}

#[test]
fn sighup_and_mycelium_reload_reload_the_file_without_a_watcher_event() {
    let broker = TestBroker::start(&fanout("a"));
    let attempts = reloads(&broker);
    broker.signal(nix::sys::signal::Signal::SIGHUP);
    let status = wait_for_attempt_after(&broker, attempts);
    assert_eq!(status["last_reload_failed"], false, "{status}");
    assert_eq!(status["generation"], 1, "nothing changed");
    let reload = run_to_end(broker.cmd().arg("reload"));
    assert!(reload.status.success(), "{}", reload.stderr);
    assert_eq!(reload.stdout.trim(), "reloaded: no change (generation 1)");
    let json = run_to_end(broker.cmd().args(["reload", "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(doc["outcome"], "unchanged");
}

#[test]
fn a_socket_mode_change_applies_to_the_socket_file_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let broker = TestBroker::start_with("socket_mode = \"0660\"", &fanout("a"));
    let mode = || {
        std::fs::metadata(&broker.socket)
            .expect("socket metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(), 0o660);
    let before = generation(&broker);
    let text = format!(
        "[server]\nsocket_path = \"{}\"\nsocket_mode = \"0600\"\n\n{}",
        broker.socket.display(),
        fanout("a")
    );
    std::fs::write(&broker.config, text).expect("write");
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(
        status["last_change"],
        "~server.socket_mode 0660→0600 (applied to the socket file)"
    );
    assert_eq!(lines(&status, "not_applied"), Vec::<String>::new());
    assert_eq!(mode(), 0o600);
}
