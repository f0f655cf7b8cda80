//! Slow consumers over the socket: under `drop_newest` and `drop_oldest` a subscriber whose
//! buffer is full loses messages, counted, and is told exactly how many (`Lagged`); other
//! subscribers and topics are not held up.

mod common;

use common::pubsub_support::topic_counter;
use common::{block_on, wait_until, TestBroker};
use mycelium_client::{Client, RecvError, TryRecvError};

const N: u64 = 300_000;

fn lossy(policy: &str) -> String {
    format!(
        "[[topics]]\nname = \"lossy\"\nrouting = \"fanout\"\nbuffer_size = 16\nbackpressure = \"{policy}\"\n"
    )
}

/// A subscriber that reads nothing while `N` messages are published loses some; it then gets
/// every message that was kept, in order, and a `Lagged` count such that the two add up to
/// everything published.
fn a_stalled_subscriber_is_told_exactly_how_many_it_missed(policy: &str) {
    let broker = TestBroker::start(&lossy(policy));
    block_on(async {
        let slow = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = slow.subscribe("lossy").await.expect("subscribe");
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("lossy").await.expect("publisher");
        for i in 0..N {
            p.publish(&i.to_le_bytes()).await.expect("publish");
        }
        publisher.flush().await.expect("every publish accepted");
        let dropped = topic_counter(&broker, "lossy", "dropped");
        assert!(dropped > 0, "the stalled subscriber must have lost some");
        // Take everything that was kept, in order.
        let mut last: Option<u64> = None;
        let mut received = 0u64;
        // The `Lagged` notices, added up: they may come between the messages.
        let mut missed = 0u64;
        while received + dropped < N {
            let message = match sub.recv().await {
                Ok(message) => message,
                Err(RecvError::Lagged(n)) => {
                    missed += n;
                    continue;
                }
                Err(error) => panic!("expected a message, got {error:?}"),
            };
            let seq = u64::from_le_bytes(message.payload()[..8].try_into().expect("8 bytes"));
            assert!(
                last.is_none_or(|l| seq > l),
                "{seq} after {last:?}: out of order"
            );
            last = Some(seq);
            received += 1;
        }
        // The next message carries the notice of the gap.
        p.publish(b"marker").await.expect("publish");
        publisher.flush().await.expect("accepted");
        let marker = loop {
            match sub.recv().await {
                Ok(marker) => break marker,
                Err(RecvError::Lagged(n)) => missed += n,
                Err(error) => panic!("expected the marker, got {error:?}"),
            }
        };
        assert_eq!(&marker.payload()[..], b"marker");
        // A notice that arrived with the marker may be handed out after it.
        loop {
            match sub.try_recv() {
                Err(TryRecvError::Lagged(n)) => missed += n,
                Err(TryRecvError::Empty) => break,
                other => panic!("expected only the notice, got {other:?}"),
            }
        }
        assert_eq!(missed, dropped, "told exactly what was dropped");
        assert_eq!(received + missed, N, "nothing lost uncounted");
        slow.close().await.expect("close");
        publisher.close().await.expect("close");
    });
}

#[test]
fn drop_newest_tells_a_stalled_subscriber_exactly_how_many_it_missed() {
    a_stalled_subscriber_is_told_exactly_how_many_it_missed("drop_newest");
}

#[test]
fn drop_oldest_tells_a_stalled_subscriber_exactly_how_many_it_missed() {
    a_stalled_subscriber_is_told_exactly_how_many_it_missed("drop_oldest");
}

/// A subscriber that loses the end of a burst is told at once, not when (if ever) another
/// message comes: otherwise it never learns of the loss. `mycelium sub` is stopped (SIGSTOP)
/// during a burst and continued after it; with nothing published after the burst, it must
/// print every kept message and `lagged: N` lines that add up to the burst. (A subscriber in
/// this process would go on reading into its client's queue, and its losses would not fall
/// at the end of the burst.)
fn a_stopped_cli_subscriber_prints_the_loss_at_the_end_of_a_burst(policy: &str) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::io::BufRead;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let broker = TestBroker::start(&lossy(policy));
    let mut child = broker
        .cmd()
        .args(["sub", "lossy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning mycelium sub");
    let (lines, lagged) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let counting = lines.clone();
    std::thread::spawn(move || {
        for _ in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            counting.fetch_add(1, Ordering::Relaxed);
        }
    });
    let told = lagged.clone();
    let subscribed = Arc::new(AtomicU64::new(0));
    let ready = subscribed.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("subscribed to") {
                ready.store(1, Ordering::Relaxed);
            }
            // "lagged: N message(s) were dropped ..."
            let count = line
                .strip_prefix("lagged: ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = count {
                told.fetch_add(n, Ordering::Relaxed);
            }
        }
    });
    wait_until("mycelium sub to subscribe", || {
        subscribed.load(Ordering::Relaxed) == 1
    });
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    block_on(async {
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("lossy").await.expect("publisher");
        for i in 0..N {
            p.publish(format!("{i}").as_bytes()).await.expect("publish");
        }
        publisher.flush().await.expect("every publish accepted");
        publisher.close().await.expect("close");
    });
    let dropped = topic_counter(&broker, "lossy", "dropped");
    assert!(dropped > 0, "the stopped subscriber must have lost some");
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    let start = std::time::Instant::now();
    loop {
        let (got, missed) = (
            lines.load(Ordering::Relaxed),
            lagged.load(Ordering::Relaxed),
        );
        if got + missed == N {
            assert_eq!(missed, dropped, "told exactly what was dropped");
            break;
        }
        assert!(
            got + missed < N && start.elapsed() < common::DEADLINE,
            "mycelium sub printed {got} message(s) and lagged: {missed} (of {dropped} dropped), \
             {N} published and nothing after: the loss was not reported"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn drop_newest_a_stopped_cli_subscriber_prints_the_loss_at_the_end_of_a_burst() {
    a_stopped_cli_subscriber_prints_the_loss_at_the_end_of_a_burst("drop_newest");
}

#[test]
fn drop_oldest_a_stopped_cli_subscriber_prints_the_loss_at_the_end_of_a_burst() {
    a_stopped_cli_subscriber_prints_the_loss_at_the_end_of_a_burst("drop_oldest");
}

#[test]
fn under_block_a_stopped_subscriber_holds_the_others_back_only_for_the_publish_deadline() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    const TOTAL: u64 = 300_000;
    let broker = TestBroker::start(
        "[[topics]]\nname = \"strict\"\nrouting = \"fanout\"\nbuffer_size = 1000\npublish_deadline_ms = 300\n",
    );
    let frozen = common::spawn_sub(&broker, "strict", &[]);
    let pid = Pid::from_raw(frozen.child.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    block_on(async {
        let healthy = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = healthy.subscribe("strict").await.expect("subscribe");
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("strict").await.expect("publisher");
        let receiving = tokio::spawn(async move {
            for i in 0..TOTAL {
                let message = sub.recv().await.expect("a message");
                assert_eq!(
                    message.payload()[..8],
                    i.to_le_bytes(),
                    "in order, none lost"
                );
            }
        });
        // 300 000 x 64 B is far more than the stopped subscriber's socket buffers hold.
        let mut payload = [0u8; 64];
        for i in 0..TOTAL {
            payload[..8].copy_from_slice(&i.to_le_bytes());
            p.publish(&payload).await.expect("publish");
        }
        publisher.flush().await.expect("every publish accepted");
        receiving
            .await
            .expect("the healthy subscriber got everything");
        healthy.close().await.expect("close");
        publisher.close().await.expect("close");
    });
    // The stopped one was disconnected (counted), not waited on for ever.
    wait_until("both subscriptions to be gone", || {
        topic_counter(&broker, "strict", "subscribers") == 0
    });
    assert!(topic_counter(&broker, "strict", "dropped") >= 1);
    let _ = kill(pid, Signal::SIGCONT);
}

#[test]
fn under_block_a_full_queue_backlog_drops_the_rest_of_a_batch_after_the_deadline_and_says_so() {
    let broker = TestBroker::start(
        "[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\nbuffer_size = 10\npublish_deadline_ms = 200\n",
    );
    block_on(async {
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("jobs").await.expect("publisher");
        let batch: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        p.publish_batch(&refs).await.expect("queued");
        match publisher.flush().await {
            Err(error) => {
                assert_eq!(
                    error.code(),
                    Some(mycelium_transport::ErrorCode::SlowConsumer)
                );
                assert!(
                    error.to_string().contains("publish_deadline_ms = 200"),
                    "{error}"
                );
            }
            Ok(()) => panic!("no consumer: the publisher must hear that messages were dropped"),
        }
        publisher.close().await.ok();
    });
    assert_eq!(
        topic_counter(&broker, "jobs", "queued"),
        10,
        "the backlog keeps what fits"
    );
    assert_eq!(
        topic_counter(&broker, "jobs", "dropped"),
        90,
        "the rest is counted"
    );
}

/// What a broker queues toward two stalled subscribers of a `drop_newest` topic whose own
/// buffers never fill (`buffer_size` is huge): `delivered` counts what was queued for them.
fn queued_for_stalled_subscribers(server_extra: &str) -> u64 {
    const MESSAGES: u64 = 600_000;
    let broker = TestBroker::start_with(
        server_extra,
        "[[topics]]\nname = \"big\"\nrouting = \"fanout\"\nbuffer_size = 10000000\nbackpressure = \"drop_newest\"\n",
    );
    let stalled: Vec<_> = (0..2)
        .map(|_| {
            let sub = common::spawn_sub(&broker, "big", &[]);
            let pid = nix::unistd::Pid::from_raw(sub.child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
            sub
        })
        .collect();
    block_on(async {
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("big").await.expect("publisher");
        let payload = [7u8; 64];
        for _ in 0..MESSAGES {
            p.publish(&payload).await.expect("publish");
        }
        publisher.flush().await.expect("accepted");
    });
    wait_until("every message routed or dropped", || {
        topic_counter(&broker, "big", "delivered") + topic_counter(&broker, "big", "dropped")
            == 2 * MESSAGES
    });
    let delivered = topic_counter(&broker, "big", "delivered");
    for sub in &stalled {
        let pid = nix::unistd::Pid::from_raw(sub.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }
    delivered
}

#[test]
fn the_broker_wide_inflight_budget_bounds_what_stalled_subscribers_hold() {
    // Each stalled connection may hold 8 MiB queued on its own; with a 64 KiB budget the
    // two together hold 64 KiB (plus what their sockets took) before drops begin.
    let unbounded = queued_for_stalled_subscribers("");
    let bounded = queued_for_stalled_subscribers("max_inflight_bytes = 65536");
    eprintln!(
        "queued toward the stalled subscribers: {bounded} with the budget, {unbounded} without"
    );
    // 2 x 8 MiB of 74-byte frames is ~226 000 messages.
    assert!(
        bounded + 150_000 < unbounded,
        "with the budget {bounded} were queued, without {unbounded}"
    );
}
