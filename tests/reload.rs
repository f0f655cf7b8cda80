//! Hot reload of `broker.toml` end to end: a real broker process whose config file the test
//! edits (in place, by rename, in bursts, invalidly) while `mycelium pub`/`sub` processes
//! and the client library keep using it.
//!
//! Every wait is on the broker's own report of its reloads (`mycelium stats --json`:
//! `config.generation` for applied reloads, `config.reloads` for every attempt) or on a
//! process's output, with a deadline; nothing sleeps to synchronise.

mod common;

use std::collections::BTreeSet;

use common::pubsub_support::{run_to_end, spawn_pub, stats_json, topic_counter};
use common::{block_on, fanout, spawn_sub, wait_until, TestBroker};
use mycelium_client::Client;
use mycelium_client::{RecvError, RecvTimeoutError, SubscriptionEnd};
use mycelium_transport::{ErrorCode, ReloadOutcome};

fn queue(name: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"queue\"\n")
}

fn topic_with(name: &str, routing: &str, extra: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"{routing}\"\n{extra}\n")
}

/// The broker's `config` status from `mycelium stats --json`.
fn config_status(broker: &TestBroker) -> serde_json::Value {
    stats_json(broker)["config"].clone()
}

fn generation(broker: &TestBroker) -> u64 {
    config_status(broker)["generation"]
        .as_u64()
        .expect("config.generation")
}

fn reloads(broker: &TestBroker) -> u64 {
    config_status(broker)["reloads"]
        .as_u64()
        .expect("config.reloads")
}

/// Waits until the broker has applied a reload past `generation`; returns the new status.
fn wait_for_generation_after(broker: &TestBroker, before: u64) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_until("the broker to apply the edited config", || {
        status = config_status(broker);
        status["generation"].as_u64().is_some_and(|g| g > before)
    });
    status
}

/// Waits until the broker has finished a reload attempt past `attempts`; returns the status.
fn wait_for_attempt_after(broker: &TestBroker, attempts: u64) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_until("the broker to attempt a reload", || {
        status = config_status(broker);
        status["reloads"].as_u64().is_some_and(|n| n > attempts)
    });
    status
}

fn topic_names(broker: &TestBroker) -> BTreeSet<String> {
    stats_json(broker)["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

fn lines(status: &serde_json::Value, key: &str) -> Vec<String> {
    status[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_topic_added_to_the_file_is_usable_by_publishers_and_subscribers_at_once() {
    let broker = TestBroker::start(&fanout("old"));
    let before = generation(&broker);
    assert_eq!(before, 1, "the startup config is generation 1");
    broker.rewrite_config(&format!("{}{}", fanout("old"), fanout("signals")));
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(status["last_change"], "+topic signals", "{status}");
    assert_eq!(status["last_reload_failed"], false);
    let mut sub = spawn_sub(&broker, "signals", &["--count", "3"]);
    let out = run_to_end(broker.cmd().args(["pub", "signals", "a"]));
    assert!(out.status.success(), "{}", out.stderr);
    let publisher = spawn_pub(&broker, "signals", ["b".to_owned(), "c".to_owned()]);
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(sub.take_lines(3), ["a", "b", "c"]);
    assert!(sub.wait().success());
}

#[test]
fn a_removed_topic_ends_its_subscribers_with_an_error_and_disturbs_no_other_topic() {
    let broker = TestBroker::start(&format!(
        "{}{}{}",
        fanout("old"),
        queue("old.jobs"),
        fanout("kept")
    ));
    let mut gone = spawn_sub(&broker, "old", &[]);
    let mut gone_consumer = spawn_sub(&broker, "old.jobs", &[]);
    let mut kept = spawn_sub(&broker, "kept", &["--count", "2"]);
    let out = run_to_end(broker.cmd().args(["pub", "old", "before"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(gone.take_lines(1), ["before"]);
    let out = run_to_end(broker.cmd().args(["pub", "kept", "one"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(kept.take_lines(1), ["one"]);

    let before = generation(&broker);
    broker.rewrite_config(&fanout("kept"));
    let status = wait_for_generation_after(&broker, before);
    assert_eq!(
        status["last_change"], "-topic old, -topic old.jobs",
        "{status}"
    );

    // Both subscribers are told, and end with an error naming the removal.
    for sub in [&mut gone, &mut gone_consumer] {
        let exit = sub.wait();
        assert!(!exit.success(), "a subscriber of a removed topic must fail");
    }
    // The other topic's subscriber is untouched: it is still subscribed and gets the next one.
    let out = run_to_end(broker.cmd().args(["pub", "kept", "two"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(kept.take_lines(1), ["two"]);
    assert!(kept.wait().success());
    // The removed topic is unknown now.
    let out = run_to_end(broker.cmd().args(["pub", "old", "after"]));
    assert!(
        !out.status.success(),
        "publishing to a removed topic must fail"
    );
    assert!(out.stderr.contains("unknown topic 'old'"), "{}", out.stderr);
    assert_eq!(topic_names(&broker), BTreeSet::from(["kept".to_owned()]));
}

#[test]
fn the_client_library_sees_a_removed_topic_as_the_end_of_its_subscription_and_a_refused_publish() {
    let broker = TestBroker::start(&format!("{}{}", fanout("doomed"), fanout("kept")));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = client.subscribe("doomed").await.expect("subscribe");
        let publisher = client.publisher("doomed").await.expect("publisher");
        publisher.publish(b"first").await.expect("publish");
        let first = sub.recv().await.expect("a message");
        assert_eq!(&first.payload()[..], b"first");

        let report = {
            std::fs::write(&broker.config, broker.config_text(&fanout("kept"))).expect("write");
            client.reload().await.expect("reload answered")
        };
        // The watcher may have applied the edit first: then this request finds no change.
        assert!(
            matches!(
                report.outcome,
                ReloadOutcome::Applied | ReloadOutcome::Unchanged
            ),
            "{report:?}"
        );
        assert!(report.status.last_error.is_empty(), "{report:?}");
        // The subscription ends with TopicRemoved, after what was routed before.
        match sub.recv().await {
            Err(RecvError::Ended(SubscriptionEnd::TopicRemoved { message })) => {
                assert!(message.contains("'doomed' was removed"), "{message}");
            }
            other => panic!("expected the subscription to end with TopicRemoved, got {other:?}"),
        }
        match sub.recv().await {
            Err(RecvError::Ended(SubscriptionEnd::TopicRemoved { .. })) => {}
            other => panic!("nothing after the end but the end again, got {other:?}"),
        }
        // A publish to the old topic id is refused by the broker, not routed.
        publisher.publish(b"late").await.expect("queued");
        match client.flush().await {
            Err(error) => assert_eq!(error.code(), Some(ErrorCode::TopicRemoved), "{error}"),
            Ok(()) => panic!("the broker must refuse a publish to a removed topic"),
        }
        client.close().await.expect("close");
    });
}

#[test]
fn a_buffer_size_change_under_load_loses_no_message_on_any_topic() {
    const N: usize = 30_000;
    let config = |size: usize| {
        format!(
            "{}{}",
            topic_with("hot", "fanout", &format!("buffer_size = {size}")),
            topic_with("steady", "fanout", "buffer_size = 1000")
        )
    };
    let broker = TestBroker::start(&config(5000));
    let hot_sub = spawn_sub(&broker, "hot", &["--count", &N.to_string()]);
    let steady_sub = spawn_sub(&broker, "steady", &["--count", &N.to_string()]);
    let hot_pub = spawn_pub(&broker, "hot", (0..N).map(|i| format!("h{i}")));
    let steady_pub = spawn_pub(&broker, "steady", (0..N).map(|i| format!("s{i}")));
    // Resize the hot topic's buffers several times while both streams flow: smaller than
    // what may be queued, then larger.
    let mut generation_now = generation(&broker);
    for size in [10, 100_000, 50, 20_000] {
        broker.rewrite_config(&config(size));
        let status = wait_for_generation_after(&broker, generation_now);
        generation_now = status["generation"].as_u64().expect("generation");
        assert!(
            status["last_change"]
                .as_str()
                .is_some_and(|c| c.starts_with("~hot.buffer_size ")),
            "{status}"
        );
    }
    for publisher in [hot_pub, steady_pub] {
        let (status, stderr) = publisher.finish();
        assert!(status.success(), "{stderr}");
    }
    for (prefix, sub) in [("h", hot_sub), ("s", steady_sub)] {
        let expected: Vec<String> = (0..N).map(|i| format!("{prefix}{i}")).collect();
        assert!(
            sub.take_lines(N) == expected,
            "topic {prefix}: a message was lost, duplicated or reordered"
        );
    }
    assert_eq!(topic_counter(&broker, "hot", "dropped"), 0);
    assert_eq!(topic_counter(&broker, "steady", "dropped"), 0);
}

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
fn settings_that_need_a_restart_are_reported_and_the_rest_of_the_edit_applies() {
    let broker = TestBroker::start(&fanout("a"));
    let before = generation(&broker);
    let moved = broker.dir.path().join("elsewhere.sock");
    let text = format!(
        "[server]\nsocket_path = \"{}\"\n\n[performance]\nworker_threads = 3\n\n{}{}",
        moved.display(),
        fanout("a"),
        fanout("b")
    );
    std::fs::write(&broker.config, text).expect("write");
    let status = wait_for_generation_after(&broker, before);
    let change = status["last_change"].as_str().expect("last_change");
    assert!(change.starts_with("+topic b"), "{change}");
    assert!(change.contains("server.socket_path"), "{change}");
    assert!(change.contains("needs restart"), "{change}");
    let pending = lines(&status, "not_applied").join("\n");
    assert!(pending.contains("server.socket_path"), "{pending}");
    assert!(pending.contains("performance.worker_threads"), "{pending}");
    // Still on the old socket, with the new topic.
    assert!(!moved.exists());
    assert!(topic_names(&broker).contains("b"));
    // A later reload still says what the file asks for and the broker does not do.
    let reload = run_to_end(broker.cmd().arg("reload"));
    assert!(reload.status.success(), "{}", reload.stdout);
    assert!(
        reload.stdout.contains("reloaded: no change"),
        "{}",
        reload.stdout
    );
    assert!(
        reload.stdout.contains("not applied: server.socket_path"),
        "{}",
        reload.stdout
    );
}

#[test]
fn a_routing_change_on_a_live_topic_is_refused_and_the_rest_of_the_edit_applies() {
    let broker = TestBroker::start(&topic_with("flip", "fanout", "buffer_size = 10"));
    let sub = spawn_sub(&broker, "flip", &[]);
    let before = generation(&broker);
    broker.rewrite_config(&topic_with("flip", "queue", "buffer_size = 20"));
    let status = wait_for_generation_after(&broker, before);
    let change = status["last_change"].as_str().expect("last_change");
    assert!(change.contains("~flip.buffer_size 10→20"), "{change}");
    assert!(
        change.contains("!flip.routing fanout→queue (refused"),
        "{change}"
    );
    let pending = lines(&status, "not_applied").join("\n");
    assert!(pending.contains("flip.routing"), "{pending}");
    let stats = stats_json(&broker);
    assert_eq!(stats["topics"][0]["routing"], "fanout");
    // Its subscriber is undisturbed.
    let out = run_to_end(broker.cmd().args(["pub", "flip", "still"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(sub.take_lines(1), ["still"]);
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
fn a_removed_topic_ends_its_shared_memory_subscriber() {
    let broker = TestBroker::start(&format!("{}{}", fanout("shm.gone"), fanout("shm.kept")));
    let mut gone = spawn_sub(&broker, "shm.gone", &["--transport", "shm"]);
    let mut kept = spawn_sub(&broker, "shm.kept", &["--transport", "shm", "--count", "1"]);
    let before = generation(&broker);
    broker.rewrite_config(&fanout("shm.kept"));
    wait_for_generation_after(&broker, before);
    assert!(
        !gone.wait().success(),
        "the shm subscriber must end with an error"
    );
    let out = run_to_end(broker.cmd().args(["pub", "shm.kept", "on"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(kept.take_lines(1), ["on"]);
    assert!(kept.wait().success());
}

/// A `mycelium sub --transport shm` of `topic`, stopped (SIGSTOP), and a `mycelium pub
/// --transport shm` of 50 000 lines: with `ring_bytes = 4096` (about 60 of these lines) the
/// publisher waits on the stopped subscriber almost at once.
fn held_shm_publisher(
    broker: &TestBroker,
    topic: &str,
) -> (
    common::SubProcess,
    nix::unistd::Pid,
    common::pubsub_support::PubProcess,
) {
    use nix::sys::signal::{kill, Signal};
    let frozen = spawn_sub(broker, topic, &["--transport", "shm"]);
    let frozen_pid = nix::unistd::Pid::from_raw(frozen.child.id() as i32);
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let publisher = common::pubsub_support::spawn_pub_with(
        broker,
        topic,
        &["--transport", "shm"],
        (0..50_000).map(|i| format!("line-{i}")),
    );
    (frozen, frozen_pid, publisher)
}

#[test]
fn a_shared_memory_publisher_held_back_by_a_stopped_subscriber_is_released_when_its_topic_is_removed(
) {
    use nix::sys::signal::{kill, Signal};
    let topics = format!("{}{}", fanout("held"), fanout("other"));
    let broker = TestBroker::start(&format!("[shm]\nring_bytes = 4096\n\n{topics}"));
    let (_frozen, frozen_pid, publisher) = held_shm_publisher(&broker, "held");
    let before = generation(&broker);
    std::fs::write(
        &broker.config,
        broker.config_text(&format!("[shm]\nring_bytes = 4096\n\n{}", fanout("other"))),
    )
    .expect("write");
    wait_for_generation_after(&broker, before);
    // Every slot of its ring was freed with the topic: the publisher no longer waits, and
    // learns from the broker's ShmDetached that its messages go nowhere (docs/configuration.md,
    // Hot reload): it stops with the reason.
    let (status, stderr) = publisher.finish();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("TopicRemoved"), "{stderr}");
    let _ = kill(frozen_pid, Signal::SIGCONT);
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

#[test]
fn a_topic_turned_to_drop_newest_by_a_reload_detaches_a_stopped_shm_subscriber_that_holds_a_waiting_publisher(
) {
    use nix::sys::signal::{kill, Signal};
    // Created under block with no deadline: the publisher's ring waits, and keeps waiting
    // after the reload (a ring keeps its mode); the drop_newest watchdog must still free it.
    let block = "[shm]\nring_bytes = 4096\n\n[[topics]]\nname = \"held\"\nrouting = \"fanout\"\npublish_deadline_ms = 0\n";
    let broker = TestBroker::start(block);
    let (mut frozen, frozen_pid, publisher) = held_shm_publisher(&broker, "held");
    let before = generation(&broker);
    std::fs::write(
        &broker.config,
        broker.config_text(&block.replace(
            "publish_deadline_ms = 0",
            "publish_deadline_ms = 300\nbackpressure = \"drop_newest\"",
        )),
    )
    .expect("write");
    wait_for_generation_after(&broker, before);
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(!frozen.wait().success(), "detached, with the reason");
}

#[test]
fn a_topic_turned_to_drop_oldest_by_a_reload_gives_its_next_shm_subscriber_a_lossy_relay_ring() {
    const N: u64 = 2_000;
    let config = |backpressure: &str| {
        format!(
            "[shm]\nring_bytes = 4096\n\n[[topics]]\nname = \"relayed\"\nrouting = \"fanout\"\nmax_message_size = 1000\nbackpressure = \"{backpressure}\"\n"
        )
    };
    let broker = TestBroker::start(&config("block"));
    let client = common::shm_connect(&broker.socket).expect("shm session");
    // A subscriber under block, gone at once: its relay ring was lossless.
    drop(client.subscribe("relayed").expect("subscribe"));
    let before = generation(&broker);
    std::fs::write(&broker.config, broker.config_text(&config("drop_oldest"))).expect("write");
    wait_for_generation_after(&broker, before);
    // The session handles its frames in order: the detach above is done before this attach.
    let mut sub = client.subscribe("relayed").expect("subscribe");
    let message = |seq: u64| format!("{seq}:{}", "x".repeat(100));
    // Message 0 read first: a reader lapped before its first frame cannot count its loss
    // exactly (docs/shm-layout.md, the unit of `Lagged`).
    let out = run_to_end(broker.cmd().args(["pub", "relayed", &message(0)]));
    assert!(out.status.success(), "{}", out.stderr);
    let first = sub.recv_timeout(common::DEADLINE).expect("recv");
    assert_eq!(&first[..], message(0).as_bytes());
    // Socket subscribers get a batch only once the relay ring has it: when this one has
    // every message, so has the ring, which the shm subscriber has not read meanwhile.
    let socket_sub = spawn_sub(&broker, "relayed", &["--count", &(N - 1).to_string()]);
    let (status, stderr) = spawn_pub(&broker, "relayed", (1..N).map(message)).finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(socket_sub.take_lines(N as usize - 1).len(), N as usize - 1);
    // A lossy ring (drop_oldest, as the topic is now): lapped many times over, the
    // subscriber is told how many it lost, then reads the newest messages in order. A ring
    // kept from before the reload would be lossless: it takes what fits, the topic drops
    // the rest for it, and the subscriber is never told.
    let (mut received, mut skipped, mut next) = (1u64, 0u64, 1u64);
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while next < N {
        assert!(
            std::time::Instant::now() < deadline,
            "never got the last message: {received} received, told of {skipped} lost, next {next}"
        );
        match sub.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(payload) => {
                let text = String::from_utf8(payload.into_payload().to_vec()).expect("UTF-8");
                let seq: u64 = text
                    .split_once(':')
                    .and_then(|(seq, _)| seq.parse().ok())
                    .expect("a numbered message");
                assert_eq!(text, message(seq), "intact");
                assert_eq!(seq, next, "in order, every gap told before it");
                next = seq + 1;
                received += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Lagged(n)) => {
                skipped += n;
                next += n;
            }
            Err(error) => panic!("{error}"),
        }
    }
    assert!(skipped > 0, "the lapped subscriber was told of its loss");
    assert_eq!(
        received + skipped,
        N,
        "every message received or reported lost"
    );
}
