//! Back-pressure on `block` and `disconnect` topics over shared memory: a stopped or stalled
//! reader holds publishers back at most for the topic's deadline, loses nothing meanwhile, and
//! never holds up another topic or the socket path.

use super::*;

#[test]
fn a_stalled_socket_subscriber_on_one_topic_does_not_hold_up_another_topic() {
    let broker = TestBroker::start(&format!(
        "{}buffer_size = 10\nmax_message_size = 1000\n\n{}max_message_size = 1000\n\n[shm]\nring_bytes = 4096\n",
        fanout("stalled"),
        fanout("flowing")
    ));
    let frozen = spawn_sub(&broker, "stalled", &[]);
    let frozen_pid = Pid::from_raw(frozen.child.id() as i32);
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let mut stalled = shm_client(&broker).publisher("stalled").expect("publisher");
    // Fill everything between the stalled publisher and its frozen subscriber: its ring, the
    // broker's reader (blocked under `block`), the outbox, the socket.
    let payload = [b's'; 500];
    let deadline = Instant::now() + DEADLINE;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(500) {
        assert!(
            Instant::now() < deadline,
            "the stalled topic never filled up"
        );
        if stalled.try_publish(&payload).expect("try_publish") {
            quiet_since = Instant::now();
        }
    }
    // The other topic flows, through the broker, to its socket subscriber.
    let mut flowing_sub = spawn_sub(&broker, "flowing", &["--count", "1000"]);
    let mut flowing = shm_client(&broker).publisher("flowing").expect("publisher");
    for i in 0..1000 {
        flowing
            .publish(format!("f{i}").as_bytes())
            .expect("publish");
    }
    let lines = flowing_sub.take_lines(1000);
    assert_eq!(lines.last().map(String::as_str), Some("f999"));
    assert!(flowing_sub.wait().success());
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
}

#[test]
fn when_the_last_socket_subscriber_leaves_the_broker_stops_holding_shm_publishers_back() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 4096\n",
        fanout("left")
    ));
    let mut publisher = shm_client(&broker).publisher("left").expect("publisher");
    let mut sub = spawn_sub(&broker, "left", &["--count", "1"]);
    publisher.publish(b"one").expect("publish");
    assert_eq!(sub.take_lines(1), ["one"]);
    assert!(sub.wait().success());
    // The broker's slot in the 4 KiB ring is released once it sees the subscriber go; then
    // the ring has no reader and takes any amount without waiting.
    let payload = [b'x'; 500];
    let deadline = Instant::now() + DEADLINE;
    let mut published = 0;
    while published < 1000 {
        if publisher.try_publish(&payload).expect("try_publish") {
            published += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "the broker still holds the ring after its subscriber left"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn on_a_block_topic_a_stopped_shm_subscriber_holds_socket_publishers_back_and_loses_nothing() {
    const N: usize = 20_000;
    // `publish_deadline_ms = 0`: the publisher waits for as long as the subscriber is stopped,
    // however loaded the machine (the deadline has a test of its own, below).
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\npublish_deadline_ms = 0\n\n{}max_message_size = 1000\n\n[shm]\nring_bytes = 4096\n",
        fanout("held"),
        fanout("other")
    ));
    let mut shm_sub = spawn_sub(
        &broker,
        "held",
        &["--transport", "shm", "--count", &N.to_string()],
    );
    let shm_pid = Pid::from_raw(shm_sub.child.id() as i32);
    let mut uds_sub = spawn_sub(&broker, "held", &["--count", &N.to_string()]);
    kill(shm_pid, Signal::SIGSTOP).expect("SIGSTOP");
    // Through a 4 KiB relay ring, a few hundred of these fit: the socket publisher is held
    // back by the stopped subscriber for as long as it stays stopped.
    let publisher = spawn_pub(&broker, "held", (0..N).map(|i| i.to_string()));
    // Meanwhile another topic flows, its publisher and subscriber unaffected.
    let mut other_sub = spawn_sub(&broker, "other", &["--count", "1000"]);
    let other_pub = spawn_pub(&broker, "other", (0..1000).map(|i| format!("o{i}")));
    let (status, stderr) = other_pub.finish();
    assert!(status.success(), "{stderr}");
    let lines = other_sub.take_lines(1000);
    assert_eq!(
        lines,
        (0..1000).map(|i| format!("o{i}")).collect::<Vec<_>>()
    );
    assert!(other_sub.wait().success());
    std::thread::sleep(Duration::from_millis(500));
    kill(shm_pid, Signal::SIGCONT).expect("SIGCONT");
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let got = shm_sub.take_lines(N);
    assert!(
        got == expected,
        "the shm subscriber got {} lines, not every message once in order (first difference at {:?})",
        got.len(),
        got.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert!(shm_sub.wait().success());
    assert!(
        uds_sub.take_lines(N) == expected,
        "the socket subscriber got every message once in order"
    );
    assert!(uds_sub.wait().success());
    assert_eq!(topic_counter(&broker, "held", "dropped"), 0);
    assert_eq!(topic_counter(&broker, "other", "dropped"), 0);
}

#[test]
fn on_a_block_topic_a_stopped_shm_subscriber_holds_socket_publishers_back_only_for_the_deadline() {
    const N: u64 = 3_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\npublish_deadline_ms = 300\n\n[shm]\nring_bytes = 4096\n",
        fanout("relayed")
    ));
    let (mut frozen, frozen_pid) = stopped_shm_sub(&broker, "relayed");
    let client = shm_client(&broker);
    let healthy = client.subscribe("relayed").expect("subscribe");
    let uds_sub = spawn_sub(&broker, "relayed", &["--count", &N.to_string()]);
    // Up to 300-byte messages through a 4 KiB relay ring: a dozen fit, then the socket
    // publisher is held back by the stopped subscriber; for ever, were the deadline not kept
    // across the relay's 1 ms polls.
    socket_publish_reaches_the_healthy_subscriber(&broker, healthy, "relayed", N);
    let lines = uds_sub.take_lines(N as usize);
    assert!(
        lines == (0..N).map(checked_message).collect::<Vec<_>>(),
        "the socket subscriber got every message once in order"
    );
    assert_eq!(
        topic_counter(&broker, "relayed", "dropped"),
        1,
        "the detach is counted, and nothing else was lost"
    );
    // Woken up, the stopped subscriber learns it was detached, and exits with the reason.
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(
        !frozen.wait().success(),
        "the detached subscriber fails with the reason"
    );
}

#[test]
fn on_a_block_topic_a_stopped_socket_subscriber_holds_a_shm_publisher_back_only_for_the_deadline() {
    // 18 MB in all: more than the stopped subscriber's socket buffers (up to 8 MiB with the
    // broker's tuning) and its 100 queued messages hold.
    const N: usize = 20_000;
    let line = |seq: usize| format!("{seq}:{}", "y".repeat(900));
    let broker = TestBroker::start(&format!(
        "{}buffer_size = 100\nmax_message_size = 1000\npublish_deadline_ms = 300\n\n[shm]\nring_bytes = 65536\n",
        fanout("read")
    ));
    let mut frozen = spawn_sub(&broker, "read", &[]);
    let frozen_pid = Pid::from_raw(frozen.child.id() as i32);
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let healthy = spawn_sub(&broker, "read", &["--count", &N.to_string()]);
    // The broker's reader of the publisher's ring routes to the socket subscribers: once the
    // stopped one is full, the reader, and with it the shm publisher, is held back; for
    // ever, were the deadline not kept there too (`finish` fails after a deadline of its own).
    let publisher = spawn_pub_with(&broker, "read", &["--transport", "shm"], (0..N).map(line));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    assert!(
        healthy.take_lines(N) == (0..N).map(line).collect::<Vec<_>>(),
        "the healthy socket subscriber got every message once in order"
    );
    assert!(
        topic_counter(&broker, "read", "dropped") >= 1,
        "the disconnect is counted"
    );
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(
        !frozen.wait().success(),
        "the disconnected subscriber fails with the reason"
    );
}

#[test]
fn on_a_disconnect_topic_a_shm_subscriber_holding_the_relay_ring_full_is_dropped_and_the_socket_publisher_goes_on(
) {
    const N: u64 = 2_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"disconnect\"\n\n[shm]\nring_bytes = 4096\n",
        fanout("strict_relay")
    ));
    let mut frozen = spawn_sub(&broker, "strict_relay", &["--transport", "shm"]);
    let frozen_pid = Pid::from_raw(frozen.child.id() as i32);
    let client = shm_client(&broker);
    let healthy = client.subscribe("strict_relay").expect("subscribe");
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    // Up to 300-byte messages through a 4 KiB relay ring: without the disconnect the
    // publisher would wait on the frozen subscriber for ever.
    socket_publish_reaches_the_healthy_subscriber(&broker, healthy, "strict_relay", N);
    assert!(
        topic_counter(&broker, "strict_relay", "dropped") >= 1,
        "the disconnect is counted"
    );
    // Woken up, the frozen subscriber learns it was dropped, and exits with the reason.
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    let status = frozen.wait();
    assert!(!status.success(), "the dropped subscriber must fail");
}

/// `mycelium pub` publishes `n` checked messages to `topic` (relayed to the shared-memory
/// subscribers) while `healthy` takes them: the publisher exits 0 and `healthy` gets every
/// one once, in order. A publisher that hangs fails at `finish`'s deadline; the reader is not a
/// scoped thread, so the test never waits for ever to join one that is never told to stop.
fn socket_publish_reaches_the_healthy_subscriber(
    broker: &TestBroker,
    healthy: blocking::Subscription,
    topic: &str,
    n: u64,
) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || take_all(healthy, &done))
    };
    let publisher = spawn_pub(broker, topic, (0..n).map(checked_message));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = reader.join().expect("reader");
    let expected: Vec<u64> = (0..n).collect();
    assert!(
        got == expected,
        "the healthy shm subscriber got {} messages, not everything once in order (first difference at {:?})",
        got.len(),
        got.iter().zip(&expected).position(|(a, b)| a != b)
    );
}

#[test]
fn on_a_block_topic_a_stalled_shm_subscriber_holds_its_publisher_back_only_for_the_deadline() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\npublish_deadline_ms = 300\n\n[shm]\nring_bytes = 4096\n",
        fanout("held")
    ));
    let mut frozen = spawn_sub(&broker, "held", &["--transport", "shm"]);
    let frozen_pid = Pid::from_raw(frozen.child.id() as i32);
    let client = shm_client(&broker);
    let healthy = client.subscribe("held").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("held").expect("publisher");
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || take_all(healthy, &done))
    };
    // A blocking publish: it waits on the frozen subscriber until the watchdog detaches it
    // (after publish_deadline_ms); without that, this thread would wait for ever.
    let (finished, published) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for seq in 0..2000 {
            publisher
                .publish(checked_message(seq).as_bytes())
                .expect("publish");
        }
        let _ = finished.send(());
    });
    published
        .recv_timeout(DEADLINE)
        .expect("the publisher was held back past its deadline");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = reader.join().expect("reader");
    assert_eq!(
        got,
        (0..2000).collect::<Vec<u64>>(),
        "the healthy one got all"
    );
    assert!(
        topic_counter(&broker, "held", "dropped") >= 1,
        "the detach is counted"
    );
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(
        !frozen.wait().success(),
        "the detached subscriber fails with the reason"
    );
}

#[test]
fn on_a_disconnect_topic_a_stalled_shm_subscriber_is_dropped_and_the_publisher_goes_on() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"disconnect\"\n\n[shm]\nring_bytes = 4096\n",
        fanout("strict")
    ));
    let mut frozen = spawn_sub(&broker, "strict", &["--transport", "shm"]);
    let frozen_pid = Pid::from_raw(frozen.child.id() as i32);
    let client = shm_client(&broker);
    let healthy = client.subscribe("strict").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("strict").expect("publisher");
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    // 2000 messages of up to 300 bytes through a 4 KiB ring: without the disconnect the
    // publisher would wait on the frozen subscriber for ever.
    let done = std::sync::atomic::AtomicBool::new(false);
    let got = std::thread::scope(|scope| {
        let reader = scope.spawn(|| take_all(healthy, &done));
        let deadline = Instant::now() + DEADLINE;
        for seq in 0..2000 {
            // try_publish, so that a publisher held back for good fails the test, not hangs it.
            while !publisher
                .try_publish(checked_message(seq).as_bytes())
                .expect("try_publish")
            {
                assert!(
                    Instant::now() < deadline,
                    "the publisher is still held back at {seq}"
                );
                std::thread::yield_now();
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().expect("reader")
    });
    assert_eq!(
        got,
        (0..2000).collect::<Vec<u64>>(),
        "the healthy subscriber got everything"
    );
    assert!(
        topic_counter(&broker, "strict", "dropped") >= 1,
        "the disconnect is counted"
    );
    // Woken up, the frozen subscriber learns it was dropped, and exits with the reason.
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    let status = frozen.wait();
    assert!(!status.success(), "the dropped subscriber must fail");
}
