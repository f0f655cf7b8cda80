//! Topics changed by a reload: an added topic is usable at once, a removed one ends its
//! subscribers (CLI and library) and disturbs no other, a buffer change loses nothing under load;
//! a routing change on a live topic and settings that need a restart are refused, and the rest
//! of the edit applies.

use super::*;

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
