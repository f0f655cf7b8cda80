//! Clients and the broker coming and going: a subscriber killed or stopped mid-stream disturbs
//! no one else, a graceful shutdown delivers every accepted message, and a library client goes
//! through subscribe, receive, unsubscribe and close.

use super::*;

#[test]
fn a_subscriber_killed_mid_stream_does_not_disturb_the_other_or_the_broker() {
    const TOTAL: usize = 20_000;
    const HALF: usize = TOTAL / 2;
    let mut broker = TestBroker::start(&fanout("stream"));
    let mut survivor = spawn_sub(&broker, "stream", &["--count", &TOTAL.to_string()]);
    let mut victim = spawn_sub(&broker, "stream", &[]);
    // The second half of the stream is held back until the victim is dead, so the kill is
    // certainly mid-stream.
    let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
    let lines = (0..TOTAL).map(move |i| {
        if i == HALF {
            let _ = gate_rx.recv_timeout(DEADLINE);
        }
        format!("m-{i}")
    });
    let publisher = spawn_pub(&broker, "stream", lines);
    let mut received = survivor.take_lines(HALF / 2);
    assert_eq!(victim.take_lines(1), ["m-0"], "the victim was receiving");
    signal(&victim.child, Signal::SIGKILL);
    assert!(!victim.wait().success());
    wait_until("the broker to drop the dead subscriber", || {
        topic_counter(&broker, "stream", "subscribers") == 1
    });
    gate.send(()).expect("the feeder is waiting");
    received.extend(survivor.take_lines(TOTAL - HALF / 2));
    assert_eq!(received, numbered("m-", 0..TOTAL));
    assert!(survivor.wait().success());
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "mycelium pub failed: {stderr}");
    assert!(
        stderr.contains(&format!("published {TOTAL} message(s) to stream")),
        "{stderr}"
    );
    assert!(broker.is_running());
    assert_eq!(topic_counter(&broker, "stream", "published"), TOTAL as u64);
    assert_eq!(topic_counter(&broker, "stream", "dropped"), 0);
}

#[test]
fn a_stopped_subscriber_of_a_drop_oldest_topic_resumes_with_the_newest_messages() {
    // Far more than the socket buffers and the 8 MiB outbox hold, so the broker must drop.
    const TOTAL: usize = 200_000;
    const BUFFER: usize = 1000;
    let broker = TestBroker::start(&format!(
        "{}buffer_size = {BUFFER}\nbackpressure = \"drop_oldest\"\n",
        fanout("latest")
    ));
    let mut sub = spawn_sub(&broker, "latest", &[]);
    signal(&sub.child, Signal::SIGSTOP);
    let padding = "x".repeat(100);
    let lines = (0..TOTAL).map(move |i| format!("{i} {padding}"));
    let (status, stderr) = spawn_pub(&broker, "latest", lines).finish();
    assert!(status.success(), "the publisher never waits: {stderr}");
    wait_until("the broker to route every message", || {
        topic_counter(&broker, "latest", "delivered") + topic_counter(&broker, "latest", "dropped")
            == TOTAL as u64
    });
    let dropped = topic_counter(&broker, "latest", "dropped");
    assert!(dropped > 0, "the stopped subscriber must have lost some");
    signal(&sub.child, Signal::SIGCONT);
    let got: Vec<usize> = sub
        .take_lines(TOTAL - dropped as usize)
        .iter()
        .map(|line| {
            line.split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a foreign line {line:?}"))
        })
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in publish order, no duplicates"
    );
    // What it holds at the end is the newest: the outbox kept the last BUFFER messages.
    assert_eq!(
        got[got.len() - BUFFER..],
        (TOTAL - BUFFER..TOTAL).collect::<Vec<_>>()[..]
    );
    assert_eq!(got.len() as u64 + dropped, TOTAL as u64);
    assert_eq!(
        topic_counter(&broker, "latest", "delivered"),
        got.len() as u64
    );
    signal(&sub.child, Signal::SIGTERM);
    let _ = sub.wait();
}

#[test]
fn graceful_shutdown_delivers_every_accepted_message_then_removes_the_socket() {
    const TOTAL: usize = 20_000;
    let mut broker = TestBroker::start(
        "[[topics]]\nname = \"ledger\"\nrouting = \"fanout\"\nbuffer_size = 100000\n",
    );
    let socket = broker.socket.clone();
    let mut sub = spawn_sub(&broker, "ledger", &[]);
    // A stopped subscriber reads nothing, so the accepted messages wait in the broker when
    // SIGTERM arrives; buffer_size leaves room for all of them, so the publisher is not blocked.
    signal(&sub.child, Signal::SIGSTOP);
    let publisher = spawn_pub(&broker, "ledger", (0..TOTAL).map(|i| format!("entry-{i}")));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "mycelium pub failed: {stderr}");
    assert_eq!(topic_counter(&broker, "ledger", "published"), TOTAL as u64);

    broker.signal(Signal::SIGTERM);
    wait_until("the broker to stop listening", || !socket.exists());
    signal(&sub.child, Signal::SIGCONT);
    assert_eq!(sub.take_lines(TOTAL), numbered("entry-", 0..TOTAL));
    wait_until("the broker to exit", || !broker.is_running());
    assert!(broker.dir.path().exists());
    assert!(!socket.exists(), "the socket file outlived the broker");
    sub.wait();
    assert_eq!(sub.lines_until_exit(), Vec::<String>::new());
    match block_on(Client::connect(&socket)) {
        Err(ConnectError::Unreachable { path, source }) => {
            assert_eq!(path, socket);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a connect error after shutdown, got {other:?}"),
    }
    let (status, log) = broker.wait();
    assert!(status.success(), "the broker exited with {status}: {log}");
    assert!(!log.contains("did not take their messages"), "{log}");
}

#[test]
fn the_client_library_subscribes_receives_unsubscribes_and_closes() {
    let broker = TestBroker::start(&format!("{}{}", fanout("t"), fanout("u")));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut t = client.subscribe("t").await.expect("subscribe t");
        let mut u = client.subscribe("u").await.expect("subscribe u");
        assert_eq!(t.topic(), "t");
        for i in 0..100 {
            client
                .publish("t", format!("t-{i}").as_bytes())
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
        for i in 0..100 {
            let message = t.recv().await.expect("a message");
            assert_eq!(&message[..], format!("t-{i}").as_bytes());
        }
        assert!(matches!(t.try_recv(), Err(TryRecvError::Empty)));

        t.unsubscribe().await.expect("unsubscribe");
        client
            .publish("t", b"after unsubscribe")
            .await
            .expect("publish");
        client.publish("u", b"marker").await.expect("publish");
        // The Pong comes after every delivery the broker made for earlier frames.
        client.flush().await.expect("flush");
        assert_eq!(
            u.try_recv().map(|m| m.into_payload()).ok(),
            Some("marker".into())
        );
        assert!(matches!(u.try_recv(), Err(TryRecvError::Empty)));
        let stats = client.stats().await.expect("stats");
        let t_stats = stats
            .topics
            .iter()
            .find(|s| s.name == "t")
            .expect("topic t");
        assert_eq!(t_stats.subscribers, 0);
        assert_eq!(t_stats.published, 101);
        assert_eq!(t_stats.delivered, 100, "a delivery after the unsubscribe");

        // A new subscription starts from the next message, not from the missed one.
        let mut again = client.subscribe("t").await.expect("subscribe t again");
        client.flush().await.expect("flush");
        assert!(matches!(again.try_recv(), Err(TryRecvError::Empty)));
        client.publish("t", b"resubscribed").await.expect("publish");
        let message = again.recv().await.expect("a message");
        assert_eq!(&message[..], b"resubscribed");

        let handle = client.clone();
        client.close().await.expect("close");
        assert!(
            matches!(
                u.recv().await,
                Err(RecvError::Ended(SubscriptionEnd::Closed))
            ),
            "a subscription ends cleanly (closed, not failed) when its own client closes"
        );
        assert!(matches!(
            handle.publish("u", b"too late").await,
            Err(PublishError::BrokerGone(_))
        ));
    });
    wait_until("the broker to count the closed connection", || {
        stats_json(&broker)["connections"] == 1
    });

    let missing = broker.dir.path().join("no-broker-here.sock");
    match block_on(Client::connect(&missing)) {
        Err(ConnectError::Unreachable { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ConnectError::Unreachable, got {other:?}"),
    }
}
