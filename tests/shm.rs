//! The shared-memory data path end to end: a real broker process hands out rings; publishers
//! and subscribers in separate processes (the `mycelium` CLI) or in this test process (the
//! synchronous `ShmClient`) exchange messages through them, one hop.
//!
//! Crashes are real: publishers are SIGKILLed in the middle of a stream, subscribers are
//! SIGKILLed while a publisher waits on them, and a hostile client scribbles random bytes
//! over a ring the broker gave it. Every wait is on a condition with a deadline.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use common::pubsub_support::{spawn_pub, spawn_pub_with, stats_json, topic_counter};
use common::{fanout, spawn_sub, wait_until, TestBroker, DEADLINE};
use mycelium_client::blocking;
use mycelium_client::{PublishError, RecvError, RecvTimeoutError, ShmOptions};
use mycelium_transport::shm::recv_fds;
use mycelium_transport::{
    encode_frame, peek_frame, ErrorCode, Frame, ShmRole, HANDSHAKE_MAX_FRAME_LEN,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn shm_client(broker: &TestBroker) -> blocking::Client {
    common::shm_connect(&broker.socket).expect("shm session")
}

/// A message whose integrity the reader can check: `seq:` then a body derived from `seq`, of
/// a length that varies with `seq` (so frames wrap the ring at every alignment).
fn checked_message(seq: u64) -> String {
    let len = 8 + (seq as usize * 7) % 300;
    let body: String = (0..len)
        .map(|i| char::from(b'a' + ((seq as usize + i) % 26) as u8))
        .collect();
    format!("{seq}:{body}")
}

/// The sequence number of a message that passes the check, or a description of the damage.
fn check_message(message: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_owned())?;
    let (seq, _) = text.split_once(':').ok_or("no ':'")?;
    let seq: u64 = seq.parse().map_err(|_| format!("bad seq in {text:?}"))?;
    if text != checked_message(seq) {
        return Err(format!("torn or corrupt message {text:?}"));
    }
    Ok(seq)
}

/// The next message within `timeout` (`None` if none came), or the lag notice or end that
/// came instead.
fn recv_within(
    sub: &mut blocking::Subscription,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, RecvError> {
    match sub.recv_timeout(timeout) {
        Ok(message) => Ok(Some(message.payload().to_vec())),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Lagged(n)) => Err(RecvError::Lagged(n)),
        Err(RecvTimeoutError::Ended(end)) => Err(RecvError::Ended(end)),
        Err(other) => panic!("unexpected receive error {other:?}"),
    }
}

fn recv(sub: &mut blocking::Subscription) -> Vec<u8> {
    match sub.recv_timeout(DEADLINE) {
        Ok(message) => message.payload().to_vec(),
        Err(RecvTimeoutError::Timeout) => panic!("no message within {DEADLINE:?}"),
        Err(error) => panic!("receive failed: {error}"),
    }
}

#[test]
fn shm_cli_publishers_reach_every_shm_cli_subscriber_in_per_publisher_order() {
    const PER_PUBLISHER: usize = 5000;
    const TOTAL: usize = 2 * PER_PUBLISHER;
    // A small ring: the publishers wait on the subscribers many times over.
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 16384\n",
        fanout("ticks")
    ));
    let subs: Vec<_> = (0..3)
        .map(|_| {
            spawn_sub(
                &broker,
                "ticks",
                &["--transport", "shm", "--count", &TOTAL.to_string()],
            )
        })
        .collect();
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let lines = (0..PER_PUBLISHER).map(move |i| format!("p{p}-{i}"));
            spawn_pub_with(&broker, "ticks", &["--transport", "shm"], lines)
        })
        .collect();
    for publisher in publishers {
        let (status, stderr) = publisher.finish();
        assert!(status.success(), "publisher failed: {stderr}");
        assert!(
            stderr.contains(&format!("published {PER_PUBLISHER} message(s)")),
            "{stderr}"
        );
    }
    for mut sub in subs {
        let lines = sub.take_lines(TOTAL);
        for p in 0..2 {
            let mine: Vec<&String> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("p{p}-")))
                .collect();
            let expected: Vec<String> = (0..PER_PUBLISHER).map(|i| format!("p{p}-{i}")).collect();
            assert_eq!(mine.len(), PER_PUBLISHER, "publisher {p}: wrong count");
            assert!(
                mine.iter().zip(&expected).all(|(a, b)| *a == b),
                "publisher {p}: out of order"
            );
        }
        assert!(sub.wait().success());
    }
}

#[test]
fn socket_publishers_reach_shm_subscribers_through_the_relay_ring() {
    const N: usize = 20_000;
    let broker = TestBroker::start(&fanout("mixed"));
    let client = shm_client(&broker);
    let mut shm_sub = client.subscribe("mixed").expect("subscribe");
    let mut uds_sub = spawn_sub(&broker, "mixed", &["--count", &N.to_string()]);
    let publisher = spawn_pub(&broker, "mixed", (0..N).map(|i| format!("m{i}")));
    for i in 0..N {
        assert_eq!(
            recv(&mut shm_sub),
            format!("m{i}").as_bytes(),
            "message {i}"
        );
    }
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    // The socket subscriber got every message too.
    let lines = uds_sub.take_lines(N);
    assert_eq!(lines.first().map(String::as_str), Some("m0"));
    assert_eq!(lines.last(), Some(&format!("m{}", N - 1)));
    assert!(uds_sub.wait().success());
}

#[test]
fn shm_publishers_reach_socket_subscribers_whenever_they_subscribed() {
    const N: usize = 20_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 16384\n",
        fanout("out")
    ));
    // One socket subscriber before the shared-memory publisher exists...
    let mut early = spawn_sub(&broker, "out", &["--count", &(2 * N).to_string()]);
    let client = shm_client(&broker);
    let mut publisher = client.publisher("out").expect("publisher");
    for i in 0..N {
        publisher
            .publish(format!("a{i}").as_bytes())
            .expect("publish");
    }
    // ...and one after: it sees everything published once its subscription was acknowledged
    // (and perhaps the last "a" messages too, if the broker had not read them yet).
    let late = spawn_sub(&broker, "out", &[]);
    for i in 0..N {
        publisher
            .publish(format!("b{i}").as_bytes())
            .expect("publish");
    }
    let expected_early: Vec<String> = (0..N)
        .map(|i| format!("a{i}"))
        .chain((0..N).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(early.take_lines(2 * N), expected_early);
    let mut late_lines = Vec::new();
    let last = format!("b{}", N - 1);
    while late_lines.last() != Some(&last) {
        late_lines.extend(late.take_lines(1));
    }
    let first_b = late_lines.iter().position(|l| l.starts_with('b'));
    let (a_tail, bs) = late_lines.split_at(first_b.expect("b messages"));
    let expected_b: Vec<String> = (0..N).map(|i| format!("b{i}")).collect();
    assert_eq!(bs, expected_b);
    let expected_a_tail: Vec<String> = (N - a_tail.len()..N).map(|i| format!("a{i}")).collect();
    assert_eq!(
        a_tail, expected_a_tail,
        "earlier messages, if any, are the latest ones in order"
    );
    assert!(early.wait().success());
}

#[test]
fn socket_and_shm_clients_on_one_topic_all_see_each_other_once() {
    const N: usize = 5_000;
    let broker = TestBroker::start(&fanout("both"));
    let client = shm_client(&broker);
    let mut shm_sub = client.subscribe("both").expect("subscribe");
    let mut uds_sub = spawn_sub(&broker, "both", &["--count", &(2 * N).to_string()]);
    let uds_pub = spawn_pub(&broker, "both", (0..N).map(|i| format!("u{i}")));
    let mut shm_pub = shm_client(&broker).publisher("both").expect("publisher");
    for i in 0..N {
        shm_pub
            .publish(format!("s{i}").as_bytes())
            .expect("publish");
    }
    let (status, stderr) = uds_pub.finish();
    assert!(status.success(), "{stderr}");
    let check = |lines: Vec<String>, who: &str| {
        for prefix in ["u", "s"] {
            let mine: Vec<&String> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
            let expected: Vec<String> = (0..N).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(mine.len(), N, "{who}: {prefix} messages");
            assert!(
                mine.iter().zip(&expected).all(|(a, b)| *a == b),
                "{who}: {prefix} order"
            );
        }
    };
    let shm_lines: Vec<String> = (0..2 * N)
        .map(|_| String::from_utf8(recv(&mut shm_sub)).expect("utf-8"))
        .collect();
    check(shm_lines, "shm subscriber");
    // Exactly once: nothing more arrives (a relayed copy of a shm message would).
    assert_eq!(
        recv_within(&mut shm_sub, Duration::from_millis(200)).expect("recv"),
        None
    );
    check(uds_sub.take_lines(2 * N), "socket subscriber");
    assert!(uds_sub.wait().success());
}

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
fn on_a_drop_newest_topic_a_shm_subscriber_that_stops_reading_loses_relayed_messages_but_never_stalls_the_socket_path(
) {
    const N: usize = 5_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_newest\"\n\n[shm]\nring_bytes = 4096\n",
        fanout("slow")
    ));
    let client = shm_client(&broker);
    let mut idle = client.subscribe("slow").expect("subscribe");
    let mut uds_sub = spawn_sub(&broker, "slow", &["--count", &N.to_string()]);
    let lines = (0..N).map(|i| format!("{i:0>100}"));
    let (status, stderr) = spawn_pub(&broker, "slow", lines).finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(uds_sub.take_lines(N).len(), N);
    assert!(uds_sub.wait().success());
    // A 4 KiB relay ring holds a few dozen 100-byte messages: the rest were dropped and
    // counted, the socket path never waited. What the idle subscriber gets is a prefix, in
    // order, without gaps.
    assert!(topic_counter(&broker, "slow", "dropped") > 0);
    let mut next = 0;
    // Once it has read them, it is told exactly how many the relay ring dropped for it, at
    // once: no message comes after the drops.
    let skipped = loop {
        match recv_within(&mut idle, DEADLINE) {
            Ok(Some(message)) => {
                assert_eq!(message, format!("{next:0>100}").as_bytes());
                next += 1;
            }
            Err(RecvError::Lagged(skipped)) => break skipped,
            other => panic!("expected messages then the gap, got {other:?}"),
        }
    };
    assert!(next > 0 && next < N, "got {next} of {N}");
    assert_eq!(skipped, (N - next) as u64);
    // The next message comes with no second report of the same gap.
    let (status, stderr) =
        spawn_pub(&broker, "slow", std::iter::once("marker".to_owned())).finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        recv_within(&mut idle, DEADLINE).expect("recv").as_deref(),
        Some(&b"marker"[..])
    );
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

fn queue(name: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"queue\"\n")
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

/// Receives until `stop` is set and nothing more comes for a while; returns the sequence
/// numbers taken.
fn take_all(mut sub: blocking::Subscription, done: &std::sync::atomic::AtomicBool) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match recv_within(&mut sub, Duration::from_millis(200)).expect("recv") {
            Some(message) => got.push(check_message(&message).expect("intact")),
            None if done.load(std::sync::atomic::Ordering::SeqCst) => return got,
            None => {}
        }
    }
}

#[test]
fn a_shm_queue_gives_each_message_to_exactly_one_of_its_consumers() {
    const N: u64 = 50_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 65536\n",
        queue("jobs")
    ));
    let done = std::sync::atomic::AtomicBool::new(false);
    let consumers: Vec<_> = (0..2)
        .map(|_| shm_client(&broker).subscribe("jobs").expect("consumer"))
        .collect();
    let mut publisher = shm_client(&broker).publisher("jobs").expect("publisher");
    let got: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let takers: Vec<_> = consumers
            .into_iter()
            .map(|sub| scope.spawn(|| take_all(sub, &done)))
            .collect();
        for seq in 0..N {
            publisher
                .publish(checked_message(seq).as_bytes())
                .expect("publish");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        takers
            .into_iter()
            .map(|t| t.join().expect("consumer thread"))
            .collect()
    });
    let mut all: Vec<u64> = got.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "every message exactly once"
    );
    for (i, mine) in got.iter().enumerate() {
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "consumer {i}: out of order"
        );
        assert!(
            mine.len() as u64 > N / 10,
            "consumer {i} got only {} of {N}",
            mine.len()
        );
    }
}

#[test]
fn a_shm_queue_publisher_with_no_consumer_gives_up_after_its_timeout() {
    let broker = TestBroker::start(&queue("lonely"));
    let options = ShmOptions {
        request_timeout: Duration::from_millis(200),
        ..ShmOptions::default()
    };
    let client = common::shm_connect_with(&broker.socket, options).expect("session");
    let mut publisher = client.publisher("lonely").expect("publisher");
    assert!(
        !publisher.try_publish(b"x").expect("try_publish"),
        "no consumer yet"
    );
    let start = Instant::now();
    let error = publisher.publish(b"job").expect_err("nobody to take it");
    assert!(matches!(error, PublishError::NoConsumer { .. }), "{error}");
    assert!(start.elapsed() >= Duration::from_millis(200) && start.elapsed() < DEADLINE);
    // Once a consumer is there, the same publisher delivers.
    let mut consumer = shm_client(&broker).subscribe("lonely").expect("consumer");
    publisher.publish(b"job").expect("publish");
    assert_eq!(recv(&mut consumer), b"job");
}

#[test]
fn a_shm_queue_publisher_feeds_socket_consumers_too_each_message_once() {
    const N: u64 = 20_000;
    let broker = TestBroker::start(&queue("mixed_jobs"));
    // A socket consumer through the broker, and a shared-memory one.
    let socket_consumer = spawn_sub(&broker, "mixed_jobs", &[]);
    let shm_consumer = shm_client(&broker)
        .subscribe("mixed_jobs")
        .expect("consumer");
    let mut publisher = shm_client(&broker)
        .publisher("mixed_jobs")
        .expect("publisher");
    let done = std::sync::atomic::AtomicBool::new(false);
    let from_shm = std::thread::scope(|scope| {
        let taker = scope.spawn(|| take_all(shm_consumer, &done));
        for seq in 0..N {
            publisher
                .publish(checked_message(seq).as_bytes())
                .expect("publish");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        taker.join().expect("consumer thread")
    });
    let from_socket: Vec<u64> = socket_consumer
        .take_lines(N as usize - from_shm.len())
        .iter()
        .map(|line| check_message(line.as_bytes()).expect("intact"))
        .collect();
    assert!(
        !from_socket.is_empty() && !from_shm.is_empty(),
        "both consumers got work"
    );
    let mut all: Vec<u64> = from_shm.iter().chain(&from_socket).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "every message exactly once"
    );
    // Nothing more comes to the socket consumer.
    std::thread::sleep(Duration::from_millis(200));
    assert!(socket_consumer.lines_so_far().is_empty());
}

#[test]
fn a_subscriber_sees_every_message_of_a_publisher_that_attached_after_it() {
    let broker = TestBroker::start(&fanout("late"));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("late").expect("subscribe");
    assert_eq!(
        sub.ring_count(),
        1,
        "only the relay ring before any publisher"
    );
    // A second session, as a separate process would have: the broker must tell the first.
    let other = shm_client(&broker);
    let mut publisher = other.publisher("late").expect("publisher");
    for seq in 0..1000 {
        publisher
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    for seq in 0..1000 {
        assert_eq!(check_message(&recv(&mut sub)), Ok(seq));
    }
    assert_eq!(sub.ring_count(), 2);
    drop(publisher);
    // The ring is drained, then dropped when the broker says its publisher left.
    let deadline = Instant::now() + DEADLINE;
    while sub.ring_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "the departed publisher's ring was never dropped"
        );
        assert_eq!(
            recv_within(&mut sub, Duration::from_millis(20)).expect("recv"),
            None
        );
    }
}

#[test]
fn a_publisher_killed_mid_stream_leaves_only_whole_messages_and_others_carry_on() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 8192\n",
        fanout("crash")
    ));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("crash").expect("subscribe");
    // An endless publisher process, killed while it writes flat out.
    let lines = (0u64..).map(checked_message);
    let victim = spawn_pub_with(&broker, "crash", &["--transport", "shm"], lines);
    let mut next = 0u64;
    while next < 20_000 {
        let message = recv(&mut sub);
        assert_eq!(check_message(&message), Ok(next));
        next += 1;
    }
    kill(Pid::from_raw(victim.pid()), Signal::SIGKILL).expect("SIGKILL");
    let (status, _) = victim.finish();
    assert!(!status.success());
    // Whatever it published before dying is whole and in order; then its ring runs dry.
    while let Some(message) = recv_within(&mut sub, Duration::from_millis(300)).expect("recv") {
        assert_eq!(check_message(&message), Ok(next));
        next += 1;
    }
    // A new publisher is heard by the same subscription.
    let mut survivor = shm_client(&broker).publisher("crash").expect("publisher");
    survivor
        .publish(checked_message(7).as_bytes())
        .expect("publish");
    assert_eq!(check_message(&recv(&mut sub)), Ok(7));
}

#[test]
fn a_subscriber_killed_while_the_publisher_waits_on_it_releases_the_publisher() {
    // A ring holds frames of up to half its size: 1000-byte messages keep it at 4 KiB.
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 4096\n",
        fanout("stall")
    ));
    let mut frozen = spawn_sub(&broker, "stall", &["--transport", "shm"]);
    let pid = Pid::from_raw(frozen.child.id() as i32);
    let mut publisher = shm_client(&broker).publisher("stall").expect("publisher");
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    // 4 KiB ring, 100-byte messages: the publisher fills it and must wait for the frozen
    // subscriber...
    let payload = [b'x'; 100];
    let mut published = 0;
    while publisher.try_publish(&payload).expect("try_publish") {
        published += 1;
        assert!(
            published < 1000,
            "a 4 KiB ring took 1000 messages of 100 bytes"
        );
    }
    // ...until it dies: the broker frees its slot and the publisher goes on.
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    frozen.wait();
    let start = Instant::now();
    for _ in 0..1000 {
        publisher.publish(&payload).expect("publish");
    }
    assert!(start.elapsed() < DEADLINE);
}

#[test]
fn unknown_topics_and_oversized_messages_get_clear_errors() {
    let broker = TestBroker::start(&format!(
        "{}[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\n\n[[topics]]\nname = \"small\"\nrouting = \"fanout\"\nmax_message_size = 100\n",
        fanout("f")
    ));
    let client = shm_client(&broker);
    let unknown = client.publisher("nope").expect_err("unknown topic");
    assert_eq!(unknown.code(), Some(ErrorCode::UnknownTopic), "{unknown}");
    let mut small = client.publisher("small").expect("publisher");
    let too_large = small
        .publish(&[0u8; 101])
        .expect_err("101 bytes on a 100-byte topic");
    assert!(
        matches!(
            too_large,
            PublishError::MessageTooLarge {
                size: 101,
                max: 100,
                ..
            }
        ),
        "{too_large}"
    );
    small.publish(&[0u8; 100]).expect("100 bytes fit");
    // The session is still usable after the refusals.
    let mut sub = client.subscribe("f").expect("subscribe");
    let mut publisher = client.publisher("f").expect("publisher");
    publisher.publish(b"still here").expect("publish");
    assert_eq!(recv(&mut sub), b"still here");
}

#[test]
fn a_broker_with_shm_disabled_refuses_sessions_and_the_cli_says_why() {
    let broker = TestBroker::start(&format!("{}\n[shm]\nenabled = false\n", fanout("f")));
    let error = common::shm_connect(&broker.socket).expect_err("shm disabled");
    assert_eq!(error.code(), Some(ErrorCode::ShmRefused), "{error}");
    let out = broker
        .cmd()
        .args(["pub", "f", "x", "--transport", "shm"])
        .output()
        .expect("pub ran");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shm.enabled = false"), "{stderr}");
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

#[test]
fn a_session_holds_at_most_64_attachments() {
    let topics: String = (0..3).map(|i| fanout(&format!("t{i}"))).collect();
    let broker = TestBroker::start(&topics);
    let client = shm_client(&broker);
    let mut held = Vec::new();
    for i in 0..64 {
        held.push(
            client
                .subscribe(&format!("t{}", i % 3))
                .expect("within the limit"),
        );
    }
    let refused = client.publisher("t0").expect_err("the 65th");
    assert_eq!(refused.code(), Some(ErrorCode::ShmRefused), "{refused}");
    assert!(refused.to_string().contains("at most 64"), "{refused}");
    held.pop();
    client.publisher("t0").expect("a place was freed");
}

#[test]
fn publishers_per_topic_are_limited_by_config() {
    let broker = TestBroker::start(&format!(
        "{}\n[shm]\nmax_publishers_per_topic = 2\n",
        fanout("f")
    ));
    let client = shm_client(&broker);
    let first = client.publisher("f").expect("first");
    let _second = client.publisher("f").expect("second");
    let third = client.publisher("f").expect_err("third");
    assert_eq!(third.code(), Some(ErrorCode::ShmRefused), "{third}");
    assert!(
        third.to_string().contains("max_publishers_per_topic"),
        "{third}"
    );
    drop(first);
    // The detach frees the place; the broker handles it before the next request.
    client.publisher("f").expect("a place was freed");
}

/// A raw shm session: the hostile client's side.
fn raw_session(broker: &TestBroker) -> std::os::unix::net::UnixStream {
    let mut stream = std::os::unix::net::UnixStream::connect(&broker.socket).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let hello = Frame::ShmHello {
        client_id: uuid::Uuid::new_v4(),
        name: "scribbler".into(),
    };
    write_frame(&mut stream, &hello);
    let (welcome, _) = read_frame(&stream);
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
    stream
}

fn write_frame(stream: &mut std::os::unix::net::UnixStream, frame: &Frame) {
    use std::io::Write;
    let mut bytes = BytesMut::new();
    encode_frame(frame, &mut bytes).expect("encode");
    stream.write_all(&bytes).expect("write");
}

/// Reads one frame (and the fds that came with it) from a stream that carries one frame per
/// message.
fn read_frame(stream: &std::os::unix::net::UnixStream) -> (Frame, Vec<OwnedFd>) {
    let mut buf = BytesMut::new();
    let mut fds = Vec::new();
    loop {
        if let Some((view, used)) = peek_frame(&buf, HANDSHAKE_MAX_FRAME_LEN).expect("frame") {
            let frame = view.to_frame().expect("decode");
            buf.advance(used);
            return (frame, fds);
        }
        let mut chunk = [0u8; 4096];
        let (n, more) = recv_fds(&stream.as_fd(), &mut chunk, 64).expect("recvmsg");
        assert!(n > 0, "the broker closed the session");
        buf.extend_from_slice(&chunk[..n]);
        fds.extend(more);
    }
}

#[test]
fn a_client_scribbling_over_its_ring_hurts_only_its_own_messages() {
    let broker = TestBroker::start(&format!("{}{}", fanout("victim"), fanout("bystander")));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("victim").expect("subscribe");
    let mut bystander_sub = client.subscribe("bystander").expect("subscribe");
    let mut bystander_pub = shm_client(&broker)
        .publisher("bystander")
        .expect("publisher");

    let mut hostile = raw_session(&broker);
    write_frame(
        &mut hostile,
        &Frame::ShmAttach {
            request_id: 1,
            role: ShmRole::Publish,
            topic: "victim".into(),
        },
    );
    let (grant, fds) = read_frame(&hostile);
    assert!(matches!(grant, Frame::ShmGrant { .. }), "{grant:?}");
    assert_eq!(fds.len(), 1);
    let file = std::fs::File::from(fds.into_iter().next().expect("fd"));
    // SAFETY: the mapping is only written through this slice, in this scope; other processes
    // writing the same memory at the same time is exactly what the test is about.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map the ring");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..50 {
        for byte in map.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        // The subscriber reads whatever it makes of that: never a panic or a hang.
        match recv_within(&mut sub, Duration::from_millis(5)) {
            // A ring found corrupt is dropped and counted as a fault, not an error.
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(other) => panic!("round {round}: unexpected error {other}"),
        }
    }
    // Everyone else is untouched.
    for seq in 0..100 {
        bystander_pub
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    for seq in 0..100 {
        assert_eq!(check_message(&recv(&mut bystander_sub)), Ok(seq));
    }
    let stats = stats_json(&broker);
    assert!(
        stats["topics"].is_array(),
        "the broker still answers: {stats}"
    );
}

#[test]
fn a_loaned_message_is_written_in_place_and_published_on_commit() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n{}max_message_size = 1000\n",
        fanout("loans"),
        queue("loaned_jobs")
    ));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("loans").expect("subscribe");
    let mut socket_sub = spawn_sub(&broker, "loans", &["--count", "2"]);
    let mut publisher = client.publisher("loans").expect("publisher");
    let mut loan = publisher.loan(11).expect("loan");
    loan.as_mut_slice().copy_from_slice(b"in place 1!");
    loan.commit().expect("commit");
    // Dropped without commit: nothing is published.
    {
        let mut dropped = publisher.loan(7).expect("loan");
        dropped.as_mut_slice().copy_from_slice(b"dropped");
    }
    // Serialised in place, size known afterwards.
    let mut loan = publisher.loan(1000).expect("loan");
    let text = b"short";
    loan.as_mut_slice()[..text.len()].copy_from_slice(text);
    loan.commit_len(text.len()).expect("commit");
    assert_eq!(recv(&mut sub), b"in place 1!");
    assert_eq!(recv(&mut sub), b"short");
    assert_eq!(
        recv_within(&mut sub, Duration::from_millis(100)).expect("recv"),
        None
    );
    assert_eq!(socket_sub.take_lines(2), ["in place 1!", "short"]);
    assert!(socket_sub.wait().success());
    let too_large = publisher.loan(1001).expect_err("above the topic's limit");
    assert!(
        matches!(too_large, PublishError::MessageTooLarge { .. }),
        "{too_large}"
    );
    // On a queue topic the address is written for the caller.
    let mut consumer = client.subscribe("loaned_jobs").expect("consumer");
    let mut jobs = client.publisher("loaned_jobs").expect("publisher");
    let mut loan = jobs.loan(3).expect("loan");
    loan.as_mut_slice().copy_from_slice(b"job");
    loan.commit().expect("commit");
    assert_eq!(recv(&mut consumer), b"job");
}

#[test]
fn recv_timeout_returns_at_its_deadline_whether_it_spins_or_not() {
    let broker = TestBroker::start(&fanout("quiet"));
    for spin in [Duration::ZERO, Duration::from_micros(20)] {
        for busy_poll in [false, true] {
            let options = ShmOptions {
                spin,
                busy_poll,
                ..ShmOptions::default()
            };
            let client = common::shm_connect_with(&broker.socket, options).expect("session");
            let mut sub = client.subscribe("quiet").expect("subscribe");
            let start = Instant::now();
            let got = recv_within(&mut sub, Duration::from_millis(50)).expect("recv");
            let waited = start.elapsed();
            assert_eq!(got, None);
            assert!(
                waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
                "spin {spin:?}, busy_poll {busy_poll}: waited {waited:?}"
            );
        }
    }
}

#[test]
fn a_session_ending_frees_every_slot_it_held() {
    let broker = TestBroker::start(&format!("{}\n[shm]\nmax_subscribers = 2\n", fanout("f")));
    for round in 0..5 {
        // Two subscribers fill the relay ring's slots; the end of the previous round's
        // session must free them. The broker sees that end asynchronously (as it would a
        // SIGKILL), so the first subscribe may come too early: retry until the deadline.
        let client = shm_client(&broker);
        let deadline = Instant::now() + DEADLINE;
        let (_a, _b) = loop {
            let both = client
                .subscribe("f")
                .and_then(|a| client.subscribe("f").map(|b| (a, b)));
            match both {
                Ok(both) => break both,
                Err(error) if error.code() == Some(ErrorCode::ShmRefused) => {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: slots never freed"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => panic!("round {round}: {error}"),
            }
        };
        let refused = client
            .subscribe("f")
            .expect_err("a third is over the limit");
        assert_eq!(refused.code(), Some(ErrorCode::ShmRefused), "{refused}");
        assert!(refused.to_string().contains("max_subscribers"), "{refused}");
        drop(client);
    }
}

#[test]
fn bench_measures_the_shm_path_and_reports_it() {
    let broker = TestBroker::start(&format!(
        "{}{}{}",
        fanout("bench.fanout"),
        fanout("bench.ping"),
        fanout("bench.pong")
    ));
    let out = broker
        .cmd()
        .args([
            "bench",
            "--transport",
            "shm",
            "--count",
            "200000",
            "--subscribers",
            "2",
            "--json",
        ])
        .output()
        .expect("bench ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("json line")).expect("json");
    assert_eq!(json["transport"], "shm");
    assert_eq!(json["received"], 400_000);
    assert_eq!(json["lost"], 0);
    assert_eq!(json["reordered"], 0);
    let out = broker
        .cmd()
        .args(["bench", "--pingpong", "2000", "--json"])
        .output()
        .expect("pingpong ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With --json stdout is the JSON document alone.
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        json["transport"], "shm",
        "shm is the default when available: {stdout}"
    );
}

/// Collects what several consumers took, by consumer, until they hold `n` messages between
/// them (failing after [`DEADLINE`]), then a little longer to catch any message taken twice.
struct Tally {
    shm: Vec<std::sync::Arc<std::sync::Mutex<Vec<u64>>>>,
    socket: Vec<(common::SubProcess, Vec<u64>)>,
}

impl Tally {
    fn total(&self) -> usize {
        self.shm
            .iter()
            .map(|got| got.lock().expect("tally").len())
            .sum::<usize>()
            + self.socket.iter().map(|(_, got)| got.len()).sum::<usize>()
    }

    fn poll_sockets(&mut self) {
        for (process, got) in &mut self.socket {
            got.extend(
                process
                    .lines_so_far()
                    .iter()
                    .map(|line| check_message(line.as_bytes()).expect("intact")),
            );
        }
    }

    /// Waits for `n` messages in all, then 300 ms more; returns each consumer's list (shm
    /// consumers first).
    fn wait_for(mut self, n: usize) -> Vec<Vec<u64>> {
        let start = Instant::now();
        loop {
            self.poll_sockets();
            let total = self.total();
            if total >= n {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "only {total} of {n} messages arrived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.poll_sockets();
        self.shm
            .iter()
            .map(|got| got.lock().expect("tally").clone())
            .chain(self.socket.into_iter().map(|(_, got)| got))
            .collect()
    }
}

/// A thread that takes every message of `sub` into a shared list until `done` is set.
fn spawn_taker(
    mut sub: blocking::Subscription,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    std::thread::JoinHandle<()>,
) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = std::sync::Arc::clone(&got);
    let thread = std::thread::spawn(move || {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(message) = recv_within(&mut sub, Duration::from_millis(50)).expect("recv") {
                into.lock()
                    .expect("tally")
                    .push(check_message(&message).expect("intact"));
            }
        }
    });
    (got, thread)
}

fn assert_exactly_once(got: &[Vec<u64>], n: u64) {
    let mut all: Vec<u64> = got.iter().flatten().copied().collect();
    all.sort_unstable();
    let duplicates = all.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(duplicates, 0, "{duplicates} messages taken twice");
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

#[test]
fn socket_publishers_on_a_queue_reach_shm_and_socket_consumers_each_message_once() {
    const N: u64 = 50_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 65536\n",
        queue("relay_jobs")
    ));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (clients, takers): (Vec<_>, Vec<_>) = (0..2)
        .map(|_| {
            let client = shm_client(&broker);
            let sub = client.subscribe("relay_jobs").expect("shm consumer");
            (client, spawn_taker(sub, std::sync::Arc::clone(&done)))
        })
        .unzip();
    let socket_consumer = spawn_sub(&broker, "relay_jobs", &[]);
    let publisher = spawn_pub(&broker, "relay_jobs", (0..N).map(checked_message));
    let (shm, threads): (Vec<_>, Vec<_>) = takers.into_iter().unzip();
    let got = Tally {
        shm,
        socket: vec![(socket_consumer, Vec::new())],
    }
    .wait_for(N as usize);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for thread in threads {
        thread.join().expect("consumer thread");
    }
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    assert_exactly_once(&got, N);
    for (i, mine) in got.iter().enumerate() {
        assert!(
            mine.len() as u64 >= N / 100,
            "consumer {i} got only {} of {N}: {:?}",
            mine.len(),
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "consumer {i}: out of publish order"
        );
    }
    drop(clients);
}

#[test]
fn socket_publishers_on_a_queue_with_only_shm_consumers_lose_nothing_through_a_small_ring() {
    const N: u64 = 50_000;
    // A small prefetch and a small relay ring: the backlog forms and drains into the relay
    // ring as the consumers read, and the ring fills many times over.
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nprefetch = 16\nbuffer_size = 1000\n\n[shm]\nring_bytes = 16384\n",
        queue("shm_only_jobs")
    ));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = shm_client(&broker);
    let sub = client.subscribe("shm_only_jobs").expect("shm consumer");
    let (in_test, taker) = spawn_taker(sub, std::sync::Arc::clone(&done));
    // The second consumer is another process: the `mycelium` CLI over shared memory.
    let cli_consumer = spawn_sub(&broker, "shm_only_jobs", &["--transport", "shm"]);
    let publisher = spawn_pub(&broker, "shm_only_jobs", (0..N).map(checked_message));
    let got = Tally {
        shm: vec![in_test],
        socket: vec![(cli_consumer, Vec::new())],
    }
    .wait_for(N as usize);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    taker.join().expect("consumer thread");
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    assert_exactly_once(&got, N);
    assert!(
        got.iter().all(|mine| !mine.is_empty()),
        "both consumers got work: {:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(topic_counter(&broker, "shm_only_jobs", "dropped"), 0);
}

#[test]
fn shm_and_socket_publishers_on_a_queue_feed_shm_and_socket_consumers_each_message_once() {
    const N: u64 = 40_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 65536\n",
        queue("both_ways")
    ));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = shm_client(&broker);
    let sub = client.subscribe("both_ways").expect("shm consumer");
    let (in_test, taker) = spawn_taker(sub, std::sync::Arc::clone(&done));
    let socket_consumer = spawn_sub(&broker, "both_ways", &[]);
    // Half the messages from a socket publisher process, half from a shm publisher here.
    let socket_publisher = spawn_pub(&broker, "both_ways", (N / 2..N).map(checked_message));
    let mut shm_publisher = shm_client(&broker).publisher("both_ways").expect("pub");
    for seq in 0..N / 2 {
        shm_publisher
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    let got = Tally {
        shm: vec![in_test],
        socket: vec![(socket_consumer, Vec::new())],
    }
    .wait_for(N as usize);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    taker.join().expect("consumer thread");
    let (status, stderr) = socket_publisher.finish();
    assert!(status.success(), "{stderr}");
    assert_exactly_once(&got, N);
    for (i, mine) in got.iter().enumerate() {
        for (from, range) in [("shm", 0..N / 2), ("socket", N / 2..N)] {
            assert!(
                mine.iter().any(|seq| range.contains(seq)),
                "consumer {i} got nothing from the {from} publisher"
            );
        }
    }
}

#[test]
fn on_a_block_queue_a_stopped_shm_consumer_holding_the_relay_ring_full_is_detached_after_the_deadline(
) {
    const N: u64 = 2_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbuffer_size = 100\npublish_deadline_ms = 300\n\n[shm]\nring_bytes = 4096\n",
        queue("jobs")
    ));
    // Every consumer reads every frame of the relay ring (keeping those addressed to it): a
    // stopped one holds the ring full for the others once a ring's worth was dealt, the
    // backlog fills, and the socket publisher is held back.
    let (mut frozen, frozen_pid) = stopped_shm_sub(&broker, "jobs");
    let client = shm_client(&broker);
    let mut healthy = client.subscribe("jobs").expect("subscribe");
    // Past the deadline the stopped consumer is detached and what was dealt to it, unread,
    // is dealt again: the healthy one gets every message, each once. (Without the detach the
    // rest of each held batch was dropped.) It reads on a thread of its own, with a deadline.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while (got.len() as u64) < N && Instant::now() < deadline {
            if let Some(message) =
                recv_within(&mut healthy, Duration::from_millis(200)).expect("recv")
            {
                got.push(check_message(&message).expect("intact"));
            }
        }
        got
    });
    let publisher = spawn_pub(&broker, "jobs", (0..N).map(checked_message));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    let mut got = reader.join().expect("reader");
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "each message once");
    assert_eq!(
        topic_counter(&broker, "jobs", "dropped"),
        1,
        "the detach is counted, and nothing was lost"
    );
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(
        !frozen.wait().success(),
        "the detached consumer fails with the reason"
    );
}

#[test]
fn what_a_killed_shm_consumer_left_unread_is_dealt_again_to_the_others() {
    const N: u64 = 2_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nprefetch = 100\n",
        queue("orphans")
    ));
    // A consumer process that stops reading (SIGSTOP), then dies (SIGKILL) holding what was
    // dealt to it; a socket consumer that keeps reading.
    let mut doomed = spawn_sub(&broker, "orphans", &["--transport", "shm"]);
    let socket_consumer = spawn_sub(&broker, "orphans", &[]);
    let doomed_pid = Pid::from_raw(doomed.child.id() as i32);
    kill(doomed_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let publisher = spawn_pub(&broker, "orphans", (0..N).map(checked_message));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "{stderr}");
    // The stopped consumer holds up to its prefetch; everything else reaches the other one.
    let mut from_socket: Vec<u64> = Vec::new();
    common::wait_until(
        "the socket consumer to take all but the stopped one's share",
        || {
            from_socket.extend(
                socket_consumer
                    .lines_so_far()
                    .iter()
                    .map(|line| check_message(line.as_bytes()).expect("intact")),
            );
            from_socket.len() as u64 >= N - 100
        },
    );
    kill(doomed_pid, Signal::SIGKILL).expect("SIGKILL");
    doomed.wait();
    let printed: Vec<u64> = doomed
        .lines_until_exit()
        .iter()
        .map(|line| check_message(line.as_bytes()).expect("intact"))
        .collect();
    let mut all = std::collections::BTreeMap::<u64, u32>::new();
    let taken = |seq: &u64, all: &mut std::collections::BTreeMap<u64, u32>| {
        *all.entry(*seq).or_default() += 1
    };
    common::wait_until("every message to be taken at least once", || {
        from_socket.extend(
            socket_consumer
                .lines_so_far()
                .iter()
                .map(|line| check_message(line.as_bytes()).expect("intact")),
        );
        let mut seen = std::collections::BTreeSet::new();
        seen.extend(from_socket.iter().chain(&printed).copied());
        seen.len() as u64 == N
    });
    for seq in from_socket.iter().chain(&printed) {
        taken(seq, &mut all);
    }
    assert_eq!(all.len() as u64, N, "every message at least once");
    // At least once: a message is taken twice only if the dead consumer had it in hand
    // (printed) without having marked it read.
    for (seq, times) in &all {
        assert!(
            *times == 1 || (*times == 2 && printed.contains(seq)),
            "message {seq} taken {times} times"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The async layer: AsyncShmSubscription and AsyncShmPublisher on a tokio runtime.
// ---------------------------------------------------------------------------------------------

/// One worker thread: a publish or receive that blocked it would stop the other side too. The
/// runtime runs on a thread of its own, so such a deadlock (where no tokio timer can fire)
/// fails the test after [`DEADLINE`] instead of hanging it.
#[test]
fn async_shm_clients_round_trip_without_blocking_the_runtime_through_a_small_ring() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async_round_trip());
        let _ = done.send(());
    });
    finished
        .recv_timeout(DEADLINE * 2)
        .expect("the round trip finished (a blocked runtime deadlocks it)");
}

async fn async_round_trip() {
    const N: u64 = 20_000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 16384\n",
        fanout("async_ticks")
    ));
    let client = mycelium_client::Client::connect_with(
        &broker.socket,
        mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory),
    )
    .await
    .expect("session");
    let mut subscription = client.subscribe("async_ticks").await.expect("sub");
    let publisher = client.publisher("async_ticks").await.expect("pub");
    // 20 000 messages of up to 300 bytes through a 16 KiB ring and a 1024-message channel:
    // the publisher waits for room many times, and only this task's receives make room.
    let publishing = tokio::spawn(async move {
        for seq in 0..N {
            publisher
                .publish(checked_message(seq).as_bytes())
                .await
                .expect("publish");
        }
    });
    let receiving = async {
        for expected in 0..N {
            let message = subscription.recv().await.expect("recv");
            assert_eq!(check_message(&message), Ok(expected), "in publish order");
        }
    };
    tokio::time::timeout(DEADLINE, receiving)
        .await
        .expect("every message within the deadline");
    tokio::time::timeout(DEADLINE, publishing)
        .await
        .expect("the publisher finished")
        .expect("no panic");
}

#[tokio::test]
async fn dropping_a_recv_future_loses_no_message() {
    const N: u64 = 5_000;
    let broker = TestBroker::start(&fanout("async_cancel"));
    let client = mycelium_client::Client::connect_with(
        &broker.socket,
        mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory),
    )
    .await
    .expect("session");
    let mut subscription = client.subscribe("async_cancel").await.expect("sub");
    // The publisher is another process: the CLI over shared memory.
    let publisher = spawn_pub_with(
        &broker,
        "async_cancel",
        &["--transport", "shm"],
        (0..N).map(checked_message),
    );
    let (mut got, mut cancelled) = (Vec::new(), 0u64);
    let start = Instant::now();
    while (got.len() as u64) < N {
        assert!(start.elapsed() < DEADLINE, "got {} of {N}", got.len());
        // A deadline that often fires first: the recv future is dropped half-way, many times.
        tokio::select! {
            message = subscription.recv() => {
                got.push(check_message(&message.expect("recv")).expect("intact"));
            }
            _ = tokio::time::sleep(Duration::from_micros(20)) => cancelled += 1,
        }
    }
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "every message, once, in order"
    );
    assert!(
        cancelled > 0,
        "no recv was ever cancelled: the test proved nothing"
    );
    let (status, stderr) = tokio::task::spawn_blocking(move || publisher.finish())
        .await
        .expect("join");
    assert!(status.success(), "{stderr}");
}

#[tokio::test]
async fn an_async_queue_consumer_shares_socket_publishers_messages() {
    const N: u64 = 10_000;
    let broker = TestBroker::start(&queue("async_jobs"));
    let client = mycelium_client::Client::connect_with(
        &broker.socket,
        mycelium_client::ClientOptions::with_transport(mycelium_client::Transport::SharedMemory),
    )
    .await
    .expect("session");
    let mut consumer = client.subscribe("async_jobs").await.expect("sub");
    let socket_consumer = spawn_sub(&broker, "async_jobs", &[]);
    let publisher = spawn_pub(&broker, "async_jobs", (0..N).map(checked_message));
    let mut from_shm = Vec::new();
    let mut from_socket = Vec::new();
    let start = Instant::now();
    while ((from_shm.len() + from_socket.len()) as u64) < N {
        assert!(start.elapsed() < DEADLINE, "stalled");
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(10), consumer.recv()).await
        {
            from_shm.push(check_message(&message.expect("recv")).expect("intact"));
        }
        from_socket.extend(
            socket_consumer
                .lines_so_far()
                .iter()
                .map(|line| check_message(line.as_bytes()).expect("intact")),
        );
    }
    let (status, stderr) = tokio::task::spawn_blocking(move || publisher.finish())
        .await
        .expect("join");
    assert!(status.success(), "{stderr}");
    assert!(
        !from_shm.is_empty() && !from_socket.is_empty(),
        "both got work"
    );
    assert_exactly_once(&[from_shm, from_socket], N);
}

/// Waits until `counter` reaches `at_least`, failing after [`DEADLINE`].
fn wait_for_progress(counter: &std::sync::atomic::AtomicU64, at_least: u64, what: &str) {
    let start = Instant::now();
    while counter.load(std::sync::atomic::Ordering::SeqCst) < at_least {
        assert!(
            start.elapsed() < DEADLINE,
            "{what} stuck at {} (waiting for {at_least})",
            counter.load(std::sync::atomic::Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn on_a_drop_oldest_topic_a_lapped_shm_subscriber_learns_how_many_it_missed_and_reads_on_intact() {
    // Up to 316-byte messages through a 4 KiB lossy ring, from a publisher in another process.
    const TOTAL: u64 = 3000;
    const RESUME_AT: u64 = 2000;
    // Messages in flight ahead of a reader the publisher is paced by: twice this many (at
    // most 324 bytes each, with the frame header) is well under a ring.
    const WINDOW: u64 = 4;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_oldest\"\n\n[shm]\nring_bytes = 4096\n",
        fanout("latest")
    ));
    let client = shm_client(&broker);
    let mut fast = client.subscribe("latest").expect("subscribe");
    let mut slow = client.subscribe("latest").expect("subscribe");
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    // Messages each subscriber has taken, and whether the slow one reads again.
    let fast_seen = Arc::new(AtomicU64::new(0));
    let slow_seen = Arc::new(AtomicU64::new(0));
    let slow_reading = Arc::new(AtomicBool::new(false));
    let lines = {
        let (fast_seen, slow_seen, slow_reading) = (
            Arc::clone(&fast_seen),
            Arc::clone(&slow_seen),
            Arc::clone(&slow_reading),
        );
        (0..TOTAL).map(move |seq| {
            // The fast subscriber is never lapped: the publisher waits for it. The slow one
            // reads message 0 (so its loss count is exact), then nothing until it has found
            // itself lapped (and jumped to the end of the ring); messages from RESUME_AT on
            // come after that, so it learns of the gap from them, and from RESUME_AT +
            // WINDOW on the publisher waits for it too.
            wait_for_progress(&fast_seen, (seq + 1).saturating_sub(WINDOW), "fast");
            if seq == 1 {
                wait_for_progress(&slow_seen, 1, "slow's first message");
            }
            if seq >= RESUME_AT {
                let start = Instant::now();
                while !slow_reading.load(SeqCst) {
                    assert!(start.elapsed() < DEADLINE, "slow never resumed");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            if seq >= RESUME_AT + WINDOW {
                wait_for_progress(&slow_seen, seq + 1 - WINDOW, "slow");
            }
            checked_message(seq)
        })
    };
    // `mycelium pub` in its own process, fed one flushed line at a time (the pacing above
    // must reach it line by line, so not through `spawn_pub_with`'s buffered feeder).
    let mut publisher = broker
        .cmd()
        .args(["pub", "latest", "--transport", "shm"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning mycelium pub");
    let mut stdin = publisher.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for line in lines {
            if writeln!(stdin, "{line}")
                .and_then(|()| stdin.flush())
                .is_err()
            {
                return;
            }
        }
    });
    let (got_fast, (got_slow, skipped)) = std::thread::scope(|scope| {
        let fast_reader = scope.spawn(|| {
            let mut got = Vec::new();
            while (got.len() as u64) < TOTAL {
                match recv_within(&mut fast, DEADLINE) {
                    Ok(Some(message)) => got.push(check_message(&message).expect("intact")),
                    Ok(None) => panic!("fast: nothing within {DEADLINE:?}"),
                    Err(error) => panic!("fast: {error}"),
                }
                fast_seen.fetch_add(1, SeqCst);
            }
            got
        });
        let slow_reader = scope.spawn(|| {
            let mut got = vec![check_message(&recv(&mut slow)).expect("intact")];
            slow_seen.fetch_add(1, SeqCst);
            // Slow: away while the publisher laps it many times over.
            wait_for_progress(&fast_seen, RESUME_AT - 1, "fast");
            // The first look finds the lap and tells at once how many messages were
            // overwritten; then it reads what the ring still holds whole (published before
            // RESUME_AT), oldest first, and only then lets the publisher go on, so nothing
            // laps it again.
            let mut message = Vec::new();
            let skipped = match slow.try_recv_into(&mut message) {
                Err(RecvError::Lagged(skipped)) => skipped,
                other => panic!("slow: a lag first, not {other:?}"),
            };
            // What it lost counts as progress for the pacing.
            slow_seen.fetch_add(skipped, SeqCst);
            loop {
                match slow.try_recv_into(&mut message) {
                    Ok(true) => {
                        got.push(check_message(&message).expect("never a torn message"));
                        slow_seen.fetch_add(1, SeqCst);
                    }
                    Ok(false) => break,
                    Err(error) => panic!("slow: {error}"),
                }
            }
            // A 4 KiB ring holds a dozen messages of at most 324 bytes: the gap is followed by
            // those still whole, not just by what comes after the slow reader looked.
            assert!(
                got.len() >= 5 && *got.last().expect("message 0") < RESUME_AT,
                "the ring's intact messages come right after the gap: {got:?}"
            );
            slow_reading.store(true, SeqCst);
            while got.len() as u64 + skipped < TOTAL {
                match recv_within(&mut slow, DEADLINE) {
                    Ok(Some(message)) => {
                        got.push(check_message(&message).expect("never a torn message"));
                        slow_seen.fetch_add(1, SeqCst);
                    }
                    Ok(None) => panic!("slow: nothing within {DEADLINE:?}, {} read", got.len()),
                    Err(RecvError::Lagged(n)) => {
                        panic!("slow: lapped again ({n} more), though the publisher waits");
                    }
                    Err(error) => panic!("slow: {error}"),
                }
            }
            (got, skipped)
        });
        (
            fast_reader.join().expect("fast reader"),
            slow_reader.join().expect("slow reader"),
        )
    });
    feeder.join().expect("feeder");
    let status = common::wait_child(&mut publisher, "mycelium pub to exit");
    assert!(status.success(), "mycelium pub failed");
    assert_eq!(
        got_fast,
        (0..TOTAL).collect::<Vec<_>>(),
        "fast loses nothing"
    );
    assert!(skipped > 0, "the slow subscriber was lapped");
    assert_eq!(got_slow.len() as u64 + skipped, TOTAL);
    assert_eq!(
        got_slow,
        std::iter::once(0)
            .chain(1 + skipped..TOTAL)
            .collect::<Vec<_>>(),
        "message 0, the gap it was told of, then every later message in order"
    );
}

#[test]
fn on_a_drop_newest_topic_a_stopped_shm_subscriber_never_holds_the_publisher() {
    const TOTAL: u64 = 2000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_newest\"\n\n[shm]\nring_bytes = 4096\n",
        fanout("newest")
    ));
    let mut frozen = spawn_sub(&broker, "newest", &["--transport", "shm"]);
    let frozen_pid = Pid::from_raw(frozen.child.id() as i32);
    let mut publisher = shm_client(&broker).publisher("newest").expect("publisher");
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    // In a thread, so that a publisher that waits on the frozen subscriber fails the test at
    // the deadline instead of hanging it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let publishing = std::thread::spawn(move || {
        for seq in 0..TOTAL {
            publisher
                .publish(checked_message(seq).as_bytes())
                .expect("publish");
        }
        let _ = done_tx.send(());
        publisher
    });
    done_rx
        .recv_timeout(DEADLINE)
        .expect("the publisher waited on a stopped subscriber");
    let publisher = publishing.join().expect("publisher thread");
    let dropped = publisher.dropped();
    assert!(dropped > 0, "a 4 KiB ring cannot hold {TOTAL} messages");
    assert_eq!(
        topic_counter(&broker, "newest", "dropped"),
        dropped,
        "the broker reads the count from the ring"
    );
    // Resumed, the subscriber gets exactly what was kept, whole and in order: the messages
    // that found room (the first ones, then smaller ones that fitted where a larger one did
    // not).
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    let delivered = TOTAL - dropped;
    let lines = frozen.take_lines(delivered as usize);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| check_message(line.as_bytes()).expect("intact"))
        .collect();
    assert_eq!(seqs[0], 0);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(seqs.len() as u64 + dropped, TOTAL);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(frozen.lines_so_far(), Vec::<String>::new(), "nothing more");
    // The count outlives the publisher (it moves from its ring to the broker's sum under
    // one lock, so no moment of the detach shows less).
    drop(publisher);
    assert_eq!(topic_counter(&broker, "newest", "dropped"), dropped);
    kill(frozen_pid, Signal::SIGKILL).expect("SIGKILL");
    frozen.wait();
}

#[test]
fn a_queue_topic_with_drop_oldest_is_refused_shared_memory_with_the_reason() {
    let broker = TestBroker::start(&format!(
        "{}backpressure = \"drop_oldest\"\n",
        queue("jobs")
    ));
    let client = shm_client(&broker);
    for error in [
        client
            .publisher("jobs")
            .map(|_| ())
            .expect_err("refused")
            .to_string(),
        client
            .subscribe("jobs")
            .map(|_| ())
            .expect_err("refused")
            .to_string(),
    ] {
        assert!(
            error.to_string().contains("drop_oldest"),
            "the reason names the policy: {error}"
        );
    }
}

#[test]
fn a_loan_on_a_lossy_or_dropping_topic_is_copied_in_at_commit() {
    let broker = TestBroker::start(&format!(
        "{}backpressure = \"drop_oldest\"\n{}backpressure = \"drop_newest\"\n",
        fanout("lossy"),
        fanout("dropping")
    ));
    let client = shm_client(&broker);
    for topic in ["lossy", "dropping"] {
        let mut sub = client.subscribe(topic).expect("subscribe");
        let mut publisher = client.publisher(topic).expect("publisher");
        let mut loan = publisher.loan(11).expect("loan");
        loan.as_mut_slice().copy_from_slice(b"hello world");
        loan.commit_len(5).expect("commit");
        assert_eq!(recv(&mut sub), b"hello", "{topic}");
    }
}

// Messages larger than a ring: payload segments.

/// Ring size of the large-message tests.
const SMALL_RING: usize = 16384;

/// A message of `len` bytes whose every byte depends on `seq` and its offset, so a torn,
/// shifted or swapped message fails the check.
fn large_message(seq: u64, len: usize) -> Vec<u8> {
    let mut message: Vec<u8> = (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seq * 7) as u8)
        .collect();
    message[..8].copy_from_slice(&seq.to_le_bytes());
    message
}

/// The lengths of the interleaved stream: 1x, 3x and 10x the ring, with small ones between.
fn large_lengths() -> Vec<usize> {
    let mut lengths = Vec::new();
    for round in 0..4 {
        for len in [SMALL_RING, 3 * SMALL_RING, 10 * SMALL_RING] {
            lengths.push(len + round);
            lengths.push(10 + round);
        }
    }
    lengths
}

/// Memfds held by process `pid` now (`memfd:` links in `/proc/<pid>/fd`), by name.
fn memfds(pid: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| {
            target.starts_with("/memfd:mycelium:")
                && (target.contains(":msg:") || target.starts_with("/memfd:mycelium:relay:"))
        })
        .collect()
}

/// The broker's relay rings now (memfds named `mycelium:<topic>:relay:<ring id>`): how many
/// of its fds and how many of its mappings (`/proc/<pid>/maps`) are one.
fn relay_rings(pid: i32) -> (usize, usize) {
    // Not `mycelium:relay:`, which names the relay's payload segments.
    let is_relay_ring = |name: &str| {
        name.contains("/memfd:mycelium:")
            && !name.contains("/memfd:mycelium:relay:")
            && name.contains(":relay:")
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| is_relay_ring(&target.to_string_lossy()))
                .count()
        })
        .unwrap_or(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|maps| maps.lines().filter(|line| is_relay_ring(line)).count())
        .unwrap_or(0);
    (fds, maps)
}

#[test]
fn a_topics_relay_ring_is_freed_when_its_last_shm_subscriber_leaves_and_made_afresh_for_the_next() {
    const TOPICS: usize = 8;
    let names: Vec<String> = (0..TOPICS).map(|i| format!("freed{i}")).collect();
    let topics: String = names.iter().map(|name| fanout(name)).collect();
    let broker = TestBroker::start(&format!("{topics}\n[shm]\nring_bytes = 65536\n"));
    let pid = broker.pid();
    assert_eq!(
        relay_rings(pid),
        (0, 0),
        "no relay ring before any subscriber"
    );
    // One shm subscriber per topic (two on the first), in this process: each topic gets a
    // relay ring when its first one attaches (before the grant is answered).
    let client = shm_client(&broker);
    let mut subs: Vec<_> = names
        .iter()
        .map(|name| client.subscribe(name).expect("subscribe"))
        .collect();
    subs.push(client.subscribe(&names[0]).expect("subscribe"));
    let (fds, maps) = relay_rings(pid);
    assert_eq!(fds, TOPICS, "one relay ring per topic");
    assert!(maps >= TOPICS, "each mapped: {maps}");
    // The second subscriber of the first topic leaves: its ring stays for the other. (The
    // session handles its frames in order: the publisher's grant follows the detach.)
    drop(subs.pop());
    let publisher = client.publisher(&names[1]).expect("publisher");
    assert_eq!(relay_rings(pid).0, TOPICS, "rings with a subscriber stay");
    drop(publisher);
    // Every subscriber leaves: every ring is freed, memfd and mapping.
    drop(subs);
    wait_until("the relay rings to be freed", || relay_rings(pid) == (0, 0));
    // A subscriber that dies frees its topic's ring too.
    let mut killed = spawn_sub(&broker, &names[2], &["--transport", "shm"]);
    assert_eq!(relay_rings(pid).0, 1);
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    wait_until("the dead subscriber's relay ring to be freed", || {
        relay_rings(pid) == (0, 0)
    });
    // The next subscriber gets a fresh ring, and socket publishers' messages reach it.
    let mut again = client.subscribe(&names[0]).expect("subscribe again");
    assert_eq!(relay_rings(pid).0, 1);
    let out = common::pubsub_support::run_to_end(broker.cmd().args(["pub", &names[0], "back"]));
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(recv(&mut again), b"back");
}

/// Waits until no payload-segment memfd is held by `pid`.
fn assert_no_payload_memfds(pid: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = memfds(pid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "payload memfds left in {pid}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A socket subscriber (the async client, on a thread of its own) of `topic`, subscribed when
/// this returns, that collects `count` messages.
fn socket_subscriber(
    broker: &TestBroker,
    topic: &str,
    count: usize,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let timed = timed_socket_subscriber(broker, topic, count);
    std::thread::spawn(move || {
        let got = timed.join().expect("socket subscriber");
        got.into_iter().map(|(message, _)| message).collect()
    })
}

/// [`socket_subscriber`] that also tells when each message arrived.
fn timed_socket_subscriber(
    broker: &TestBroker,
    topic: &str,
    count: usize,
) -> std::thread::JoinHandle<Vec<(Vec<u8>, Instant)>> {
    let socket = broker.socket.clone();
    let topic = topic.to_owned();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = mycelium_client::Client::connect(&socket)
                .await
                .expect("connect");
            let mut sub = client.subscribe(&topic).await.expect("subscribe");
            ready_tx.send(()).expect("ready");
            let mut got = Vec::new();
            for _ in 0..count {
                let message = tokio::time::timeout(DEADLINE, sub.recv())
                    .await
                    .expect("a message in time")
                    .expect("message");
                got.push((message.payload().to_vec(), Instant::now()));
            }
            got
        })
    });
    ready
        .recv_timeout(DEADLINE)
        .expect("socket subscriber ready");
    handle
}

fn large_topics() -> String {
    format!(
        "{}max_message_size = 1048576

{}max_message_size = 1048576

[shm]
ring_bytes = {SMALL_RING}
",
        fanout("big"),
        queue("bigjobs")
    )
}

#[test]
fn messages_larger_than_the_ring_reach_shm_and_socket_subscribers_whole_and_in_order() {
    let broker = TestBroker::start(&large_topics());
    let lengths = large_lengths();
    let client = shm_client(&broker);
    let mut subs: Vec<_> = (0..2)
        .map(|_| shm_client(&broker).subscribe("big").expect("subscribe"))
        .collect();
    let socket_sub = socket_subscriber(&broker, "big", lengths.len());
    let mut publisher = client.publisher("big").expect("publisher");
    let publishing = std::thread::spawn(move || {
        for (seq, &len) in large_lengths().iter().enumerate() {
            publisher
                .publish(&large_message(seq as u64, len))
                .expect("publish");
        }
        publisher
    });
    for (i, sub) in subs.iter_mut().enumerate() {
        for (seq, &len) in lengths.iter().enumerate() {
            let got = recv(sub);
            assert_eq!(got.len(), len, "subscriber {i}, message {seq}: length");
            assert!(
                got == large_message(seq as u64, len),
                "subscriber {i}, message {seq}: content"
            );
        }
    }
    // try_recv_batch hands the mapped segment over in place.
    let mut publisher = publishing.join().expect("publisher thread");
    let mut batch_sub = shm_client(&broker).subscribe("big").expect("subscribe");
    publisher
        .publish(&large_message(99, 5 * SMALL_RING))
        .expect("publish");
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.is_empty() {
        assert!(Instant::now() < deadline, "batch never came");
        batch_sub
            .try_recv_batch(16, |m| seen.push(m.to_vec()))
            .expect("batch");
    }
    assert!(seen == [large_message(99, 5 * SMALL_RING)]);
    let got = socket_sub.join().expect("socket subscriber");
    assert_eq!(got.len(), lengths.len());
    for (seq, (message, &len)) in got.iter().zip(&lengths).enumerate() {
        assert!(
            *message == large_message(seq as u64, len),
            "socket subscriber, message {seq}: {} bytes, expected {len}",
            message.len()
        );
    }
    drop((publisher, subs, batch_sub, client));
    assert_no_payload_memfds("self");
    assert_no_payload_memfds(&broker.pid().to_string());
}

#[test]
fn a_large_loan_is_written_in_place_in_a_segment_and_published_on_commit() {
    let broker = TestBroker::start(&large_topics());
    let client = shm_client(&broker);
    let mut sub = client.subscribe("big").expect("subscribe");
    let mut publisher = client.publisher("big").expect("publisher");
    let len = 10 * SMALL_RING;
    let mut loan = publisher.loan(len).expect("a loan larger than the ring");
    assert_eq!(loan.len(), len);
    loan.as_mut_slice().copy_from_slice(&large_message(7, len));
    loan.commit().expect("commit");
    assert!(recv(&mut sub) == large_message(7, len));
    // Serialised in place, shorter than lent: still whole.
    let mut loan = publisher.loan(len).expect("loan");
    loan.as_mut_slice()[..3 * SMALL_RING].copy_from_slice(&large_message(8, 3 * SMALL_RING));
    loan.commit_len(3 * SMALL_RING).expect("commit");
    assert!(recv(&mut sub) == large_message(8, 3 * SMALL_RING));
    // Dropped without commit: nothing is published, and the segment is gone.
    drop(publisher.loan(len).expect("loan"));
    assert_eq!(
        recv_within(&mut sub, Duration::from_millis(100)).expect("recv"),
        None
    );
    assert_no_payload_memfds("self");
}

#[test]
fn a_socket_publishers_large_message_reaches_shm_subscribers_through_a_segment() {
    let broker = TestBroker::start(&large_topics());
    let mut sub = shm_client(&broker).subscribe("big").expect("subscribe");
    let lengths = large_lengths();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = mycelium_client::Client::connect(&broker.socket)
            .await
            .expect("connect");
        for (seq, &len) in lengths.iter().enumerate() {
            client
                .publish("big", &large_message(seq as u64, len))
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
    });
    for (seq, &len) in lengths.iter().enumerate() {
        let got = recv(&mut sub);
        assert!(
            got == large_message(seq as u64, len),
            "message {seq}: {} bytes, expected {len}",
            got.len()
        );
    }
    drop(sub);
    assert_no_payload_memfds("self");
    assert_no_payload_memfds(&broker.pid().to_string());
}

#[test]
fn a_large_message_on_a_shm_queue_goes_to_exactly_one_consumer() {
    const N: u64 = 12;
    let broker = TestBroker::start(&large_topics());
    let consumers: Vec<_> = (0..3)
        .map(|_| shm_client(&broker).subscribe("bigjobs").expect("consumer"))
        .collect();
    let mut publisher = shm_client(&broker).publisher("bigjobs").expect("publisher");
    for seq in 0..N {
        let len = [SMALL_RING, 3 * SMALL_RING, 20][seq as usize % 3];
        publisher
            .publish(&large_message(seq, len))
            .expect("publish");
    }
    let mut seen = Vec::new();
    for mut consumer in consumers {
        while let Some(message) =
            recv_within(&mut consumer, Duration::from_millis(300)).expect("recv")
        {
            let seq = u64::from_le_bytes(message[..8].try_into().expect("8 bytes"));
            let len = [SMALL_RING, 3 * SMALL_RING, 20][seq as usize % 3];
            assert!(message == large_message(seq, len), "message {seq} whole");
            seen.push(seq);
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "each message exactly once"
    );
    drop(publisher);
    assert_no_payload_memfds("self");
    assert_no_payload_memfds(&broker.pid().to_string());
}

#[test]
fn a_socket_publishers_large_queue_messages_reach_shm_consumers_exactly_once() {
    const N: u64 = 24;
    let length = |seq: u64| [SMALL_RING, 3 * SMALL_RING, 20][seq as usize % 3];
    let broker = TestBroker::start(&large_topics());
    // Shared-memory consumers only: every message, large or small, must go through the relay
    // ring (a large one in a payload segment handed to its one consumer).
    let consumers: Vec<_> = (0..2)
        .map(|_| shm_client(&broker).subscribe("bigjobs").expect("consumer"))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = mycelium_client::Client::connect(&broker.socket)
            .await
            .expect("connect");
        for seq in 0..N {
            client
                .publish("bigjobs", &large_message(seq, length(seq)))
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
    });
    let mut seen = Vec::new();
    for (i, mut consumer) in consumers.into_iter().enumerate() {
        let mut last = None;
        while let Some(message) =
            recv_within(&mut consumer, Duration::from_millis(500)).expect("recv")
        {
            let seq = u64::from_le_bytes(message[..8].try_into().expect("8 bytes"));
            assert!(
                message == large_message(seq, length(seq)),
                "consumer {i}: message {seq} whole"
            );
            assert!(last < Some(seq), "consumer {i}: {seq} after {last:?}");
            last = Some(seq);
            seen.push(seq);
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "each message exactly once"
    );
    assert_no_payload_memfds("self");
    assert_no_payload_memfds(&broker.pid().to_string());
}

#[test]
fn hostile_segments_and_reference_frames_are_refused_without_harm() {
    let broker = TestBroker::start(&large_topics());
    // A short request timeout bounds the wait for a segment that never comes.
    let options = ShmOptions {
        request_timeout: Duration::from_millis(300),
        ..ShmOptions::default()
    };
    let client = common::shm_connect_with(&broker.socket, options).expect("session");
    let mut sub = client.subscribe("big").expect("subscribe");
    let mut hostile = raw_session(&broker);
    write_frame(
        &mut hostile,
        &Frame::ShmAttach {
            request_id: 1,
            role: ShmRole::Publish,
            topic: "big".into(),
        },
    );
    let (grant, fds) = read_frame(&hostile);
    let Frame::ShmGrant { attachment, .. } = grant else {
        panic!("{grant:?}")
    };
    let ring_fd = fds.into_iter().next().expect("ring fd");
    let send_segment = |stream: &std::os::unix::net::UnixStream, segment: u64, len: u32, fd| {
        let mut bytes = BytesMut::new();
        let frame = Frame::ShmSegment {
            request_id: 10 + segment as u32,
            attachment,
            segment,
            len,
            recipient: mycelium_transport::NO_SLOT,
        };
        encode_frame(&frame, &mut bytes).expect("encode");
        mycelium_transport::shm::send_fds(stream, &bytes, &[fd]).expect("send");
        read_frame(stream).0
    };
    let refused = |answer: Frame| {
        matches!(
            answer,
            Frame::Error {
                code: ErrorCode::ShmRefused,
                fatal: false,
                ..
            }
        )
    };
    // An unsealed memfd: refused.
    let unsealed = nix::sys::memfd::memfd_create("hostile", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .expect("memfd");
    nix::unistd::ftruncate(&unsealed, 1 << 20).expect("size");
    let answer = send_segment(&hostile, 1, 1 << 20, unsealed.as_fd());
    assert!(refused(answer.clone()), "unsealed: {answer:?}");
    // A sealed segment smaller than it claims: refused.
    let mut tiny = mycelium_transport::shm::PayloadWriter::create("tiny", 4096).expect("seg");
    tiny.as_mut_slice().fill(1);
    let tiny = tiny.seal().expect("seal");
    let answer = send_segment(&hostile, 2, 1 << 20, tiny.fd());
    assert!(refused(answer.clone()), "too small: {answer:?}");
    // Not a memfd at all (the ring's own fd has no write seal): refused.
    let answer = send_segment(&hostile, 3, 1 << 20, ring_fd.as_fd());
    assert!(refused(answer.clone()), "ring fd: {answer:?}");
    // Bogus reference frames in the ring: junk bytes, a reference to a segment never sent,
    // and a length the segment does not have. The subscriber reports errors, never reads out
    // of bounds or hangs beyond its request timeout, and the session goes on.
    let segment = mycelium_transport::shm::Segment::from_fd(ring_fd, 1 << 30).expect("map");
    let region = segment.ring_region().expect("region");
    let mut producer = mycelium_transport::shm::RingProducer::adopt(&region).expect("adopt");
    producer.try_push_marked(b"junk", true).expect("push");
    let missing = mycelium_transport::shm::reference::SegmentRef {
        segment: 77,
        len: 1 << 20,
    };
    producer
        .try_push_marked(&missing.encode(), true)
        .expect("push");
    producer.try_push(b"after").expect("push");
    producer.publish_and_wake().expect("publish");
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "the good message never came");
        match recv_within(&mut sub, Duration::from_millis(50)) {
            Ok(Some(message)) => {
                assert_eq!(message, b"after");
                break;
            }
            Ok(None) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(sub.faults(), 2, "one fault per bogus reference frame");
    assert_no_payload_memfds("self");
}

/// Entries of `/proc/<pid>/fd` now.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// The length of message `seq` in the in-flight tests: always above the ring, varied.
fn above_ring(seq: u64) -> usize {
    SMALL_RING + 1 + (seq as usize * 1031) % (2 * SMALL_RING)
}

#[test]
fn a_subscriber_that_stops_reading_pins_at_most_the_in_flight_bound_of_segments_and_reads_on() {
    use mycelium_transport::limits::MAX_SEGMENTS_IN_FLIGHT;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const SENT: u64 = 40;
    const BOUND: u64 = MAX_SEGMENTS_IN_FLIGHT as u64;
    const MORE: u64 = 3;
    let broker = TestBroker::start(&large_topics());
    let broker_pid = broker.pid();
    // The one that stops reading, and one that keeps reading on another session.
    let mut idle = shm_client(&broker).subscribe("big").expect("subscribe");
    let mut reader = shm_client(&broker).subscribe("big").expect("subscribe");
    let client = shm_client(&broker);
    let mut publisher = client.publisher("big").expect("publisher");
    let read = Arc::new(AtomicU64::new(0));
    let reading = {
        let read = Arc::clone(&read);
        std::thread::spawn(move || {
            for seq in 0..SENT + MORE {
                let got = recv(&mut reader);
                assert!(
                    got == large_message(seq, above_ring(seq)),
                    "the reading subscriber, message {seq}: {} bytes",
                    got.len()
                );
                read.store(seq + 1, Ordering::SeqCst);
            }
            reader
        })
    };
    // Everything attached: what the broker holds from now on is for the messages.
    let fds_before = fd_count(broker_pid);
    for seq in 0..SENT {
        // Never let the reading subscriber fall near the bound: it must lose nothing.
        wait_for_progress(
            &read,
            seq.saturating_sub(BOUND / 2),
            "the reading subscriber",
        );
        publisher
            .publish(&large_message(seq, above_ring(seq)))
            .expect("publish");
    }
    wait_for_progress(&read, SENT, "the reading subscriber");
    // The broker dropped what went beyond the bound, for the idle subscriber alone.
    assert_eq!(topic_counter(&broker, "big", "dropped"), SENT - BOUND);
    // The idle subscriber wakes up: the admitted messages whole and in order, then nothing.
    for seq in 0..BOUND {
        let got = recv(&mut idle);
        assert!(
            got == large_message(seq, above_ring(seq)),
            "idle subscriber, message {seq}: {} bytes, expected {}",
            got.len(),
            above_ring(seq)
        );
    }
    assert_eq!(
        recv_within(&mut idle, Duration::from_millis(200)).expect("recv"),
        None,
        "nothing beyond the admitted messages"
    );
    assert_eq!(idle.segments_dropped(), SENT - BOUND);
    // ...and carries on: new messages reach both, nothing else is dropped.
    for seq in SENT..SENT + MORE {
        publisher
            .publish(&large_message(seq, above_ring(seq)))
            .expect("publish");
    }
    for seq in SENT..SENT + MORE {
        assert!(
            recv(&mut idle) == large_message(seq, above_ring(seq)),
            "idle subscriber, message {seq} after the drops"
        );
    }
    let reader = reading.join().expect("the reading subscriber");
    assert_eq!(reader.segments_dropped(), 0);
    assert_eq!(idle.segments_dropped(), SENT - BOUND);
    assert_eq!(topic_counter(&broker, "big", "dropped"), SENT - BOUND);
    // Every segment is closed once read or dropped: in this process and in the broker, which
    // holds no more fds than before the messages (the sessions are all still open).
    assert_no_payload_memfds("self");
    assert_no_payload_memfds(&broker_pid.to_string());
    common::wait_until("the broker's fd count back to where it was", || {
        fd_count(broker_pid) <= fds_before
    });
    drop((idle, reader, publisher, client));
}

#[test]
fn the_brokers_reader_skips_bogus_reference_frames_and_keeps_serving_socket_subscribers() {
    let broker = TestBroker::start(&format!("{}{}", large_topics(), fanout("calm")));
    let big = timed_socket_subscriber(&broker, "big", 3);
    let calm = timed_socket_subscriber(&broker, "calm", 1);
    // A hostile shared-memory publisher on "big", writing raw frames into its ring.
    let mut hostile = raw_session(&broker);
    write_frame(
        &mut hostile,
        &Frame::ShmAttach {
            request_id: 1,
            role: ShmRole::Publish,
            topic: "big".into(),
        },
    );
    let (grant, fds) = read_frame(&hostile);
    let Frame::ShmGrant { attachment, .. } = grant else {
        panic!("{grant:?}")
    };
    let ring_fd = fds.into_iter().next().expect("ring fd");
    let segment = mycelium_transport::shm::Segment::from_fd(ring_fd, 1 << 30).expect("map");
    let region = segment.ring_region().expect("region");
    let mut producer = mycelium_transport::shm::RingProducer::adopt(&region).expect("adopt");
    use mycelium_transport::shm::reference::SegmentRef;
    // A malformed reference body (not 16 bytes), one with a non-zero reserved word, and a
    // well-formed reference to a segment never handed over; then a good message.
    producer.try_push_marked(b"junk", true).expect("push");
    let mut reserved = SegmentRef {
        segment: 5,
        len: 100,
    }
    .encode();
    reserved[12] = 1;
    producer.try_push_marked(&reserved, true).expect("push");
    let missing = SegmentRef {
        segment: 77,
        len: 1 << 20,
    };
    producer
        .try_push_marked(&missing.encode(), true)
        .expect("push");
    producer.try_push(b"after").expect("push");
    producer.publish_and_wake().expect("publish");
    let published = Instant::now();
    // Meanwhile another topic goes on as usual.
    let mut calm_pub = shm_client(&broker).publisher("calm").expect("publisher");
    calm_pub.publish(b"calm").expect("publish");
    // A good large message through a real segment, then a small one: both reach "big"'s
    // socket subscriber after "after", and nothing of the bogus frames does.
    let len = 3 * SMALL_RING;
    let mut writer = mycelium_transport::shm::PayloadWriter::create("good", len).expect("seg");
    writer
        .as_mut_slice()
        .copy_from_slice(&large_message(1, len));
    let sealed = writer.seal().expect("seal");
    let good = SegmentRef {
        segment: 100,
        len: len as u32,
    };
    let mut bytes = BytesMut::new();
    let frame = Frame::ShmSegment {
        request_id: 2,
        attachment,
        segment: good.segment,
        len: good.len,
        recipient: mycelium_transport::NO_SLOT,
    };
    encode_frame(&frame, &mut bytes).expect("encode");
    mycelium_transport::shm::send_fds(&hostile, &bytes, &[sealed.fd()]).expect("send");
    let (answer, _) = read_frame(&hostile);
    assert!(matches!(answer, Frame::Ack { .. }), "{answer:?}");
    drop(sealed);
    producer
        .try_push_marked(&good.encode(), true)
        .expect("push");
    producer.try_push(b"last").expect("push");
    producer.publish_and_wake().expect("publish");
    let calm = calm.join().expect("calm subscriber");
    assert_eq!(calm[0].0, b"calm");
    let big = big.join().expect("big subscriber");
    let messages: Vec<&[u8]> = big.iter().map(|(m, _)| &m[..]).collect();
    assert_eq!(messages[0], b"after");
    assert!(
        messages[1] == large_message(1, len),
        "the good large message"
    );
    assert_eq!(messages[2], b"last");
    // The reader waited for the missing segment (its SEGMENT_WAIT): the other topic's reader
    // did not wait with it.
    assert!(
        calm[0].1 < big[0].1,
        "'calm' got its message {:?} after the bogus frames, 'big' {:?}",
        calm[0].1 - published,
        big[0].1 - published
    );
    // Each bogus frame counted as dropped on its topic, nothing on the other.
    assert_eq!(topic_counter(&broker, "big", "dropped"), 3);
    assert_eq!(topic_counter(&broker, "calm", "dropped"), 0);
    drop((producer, region, segment, hostile, calm_pub));
    assert_no_payload_memfds(&broker.pid().to_string());
    broker.signal(Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "the broker exited with {status}: {log}");
    assert_eq!(
        log.matches("malformed reference frame: skipped").count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("no payload segment for a reference frame: skipped")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn a_large_message_dropped_for_the_brokers_reader_is_counted_once() {
    // The broker's reader (shm publisher -> socket subscribers) held back by a stopped socket
    // subscriber on a `block` topic falls behind by more than MAX_SEGMENTS_IN_FLIGHT
    // segments: the broker drops the rest for it. Each such message is lost once, to the one
    // socket subscriber, and must be counted once in the topic's `dropped`.
    const SENT: usize = 60;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1048576\nbuffer_size = 2\nbackpressure = \"block\"\n\n[shm]\nring_bytes = {SMALL_RING}\n",
        fanout("slowbig")
    ));
    let message = |seq: usize| format!("{seq}:{}", "x".repeat(2 * SMALL_RING));
    let sub = spawn_sub(&broker, "slowbig", &[]);
    let sub_pid = Pid::from_raw(sub.child.id() as i32);
    kill(sub_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let client = shm_client(&broker);
    let mut publisher = client.publisher("slowbig").expect("publisher");
    // Publish until the broker reports drops (the reader, blocked behind the stopped
    // subscriber or simply slower than the publisher, holds the bound), and at least SENT.
    let mut sent = 0;
    while sent < SENT || topic_counter(&broker, "slowbig", "dropped") == 0 {
        assert!(sent < 50 * SENT, "the reader never fell behind the bound");
        for _ in 0..SENT {
            publisher
                .publish(message(sent).as_bytes())
                .expect("publish");
            sent += 1;
        }
    }
    kill(sub_pid, Signal::SIGCONT).expect("SIGCONT");
    let mut lines = Vec::new();
    let mut dropped = 0;
    common::wait_until("every message delivered or counted as dropped", || {
        lines.extend(sub.lines_so_far());
        dropped = topic_counter(&broker, "slowbig", "dropped");
        lines.len() as u64 + dropped >= sent as u64
    });
    assert!(dropped > 0, "the reader fell behind the bound");
    let mut last = None;
    for line in &lines {
        let (seq, _) = line.split_once(':').expect("seq:");
        let seq: usize = seq.parse().expect("seq");
        assert_eq!(*line, message(seq), "message {seq} whole");
        assert!(last < Some(seq), "{seq} after {last:?}");
        last = Some(seq);
    }
    assert_eq!(
        lines.len() as u64 + dropped,
        sent as u64,
        "{} delivered, {dropped} counted as dropped",
        lines.len()
    );
    drop((publisher, client));
    assert_no_payload_memfds(&broker.pid().to_string());
}

/// A `mycelium sub --transport shm` on `topic`, attached, then stopped (SIGSTOP): a reader
/// that holds every ring of the topic where it was.
fn stopped_shm_sub(broker: &TestBroker, topic: &str) -> (common::SubProcess, Pid) {
    let sub = spawn_sub(broker, topic, &["--transport", "shm"]);
    let pid = Pid::from_raw(sub.child.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    (sub, pid)
}

/// What a subscriber of a `drop_newest` topic saw: the messages (sequence numbers) and each
/// gap it was told of, checked as it goes: every message is the one after the previous plus
/// the gap reported just before it.
#[derive(Debug, Default)]
struct Told {
    next: u64,
    received: u64,
    missed: u64,
    gap: u64,
}

impl Told {
    fn lagged(&mut self, skipped: u64) {
        self.gap += skipped;
        self.missed += skipped;
    }

    fn message(&mut self, seq: u64) {
        assert_eq!(
            seq,
            self.next + self.gap,
            "message {seq} after {} with a gap of {} reported",
            self.next,
            self.gap
        );
        self.gap = 0;
        self.next = seq + 1;
        self.received += 1;
    }
}

/// Reads `sub` until message `last` arrives, counting what it is told.
fn take_until_counting(mut sub: blocking::Subscription, last: u64) -> Told {
    let mut told = Told::default();
    let deadline = Instant::now() + DEADLINE;
    while told.next <= last {
        assert!(Instant::now() < deadline, "stuck at {told:?}");
        match recv_within(&mut sub, Duration::from_millis(200)) {
            Ok(Some(message)) => told.message(check_message(&message).expect("intact")),
            Ok(None) => {}
            Err(RecvError::Lagged(skipped)) => told.lagged(skipped),
            Err(error) => panic!("{error}"),
        }
    }
    told
}

#[test]
fn on_a_drop_newest_topic_every_subscriber_is_told_exactly_what_a_shm_publisher_dropped() {
    const TOTAL: u64 = 3000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_newest\"\npublish_deadline_ms = 0\n\n[shm]\nring_bytes = 4096\n",
        fanout("newest")
    ));
    // A socket subscriber, reached through the broker's reader of the publisher's ring.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let socket = broker.socket.clone();
    let over_socket = std::thread::spawn(move || {
        common::block_on(async {
            let client = mycelium_client::Client::connect(&socket)
                .await
                .expect("connect");
            let mut sub = client.subscribe("newest").await.expect("subscribe");
            ready_tx.send(()).expect("ready");
            // Counts, and the order of the messages: a `Lagged` notice comes as soon as the
            // broker's reader finds the drops (before later messages, or, at the end of a
            // burst, with none after it), but over the socket a message that came with a
            // notice may be handed out before it.
            let (mut received, mut missed, mut last) = (0u64, 0u64, None);
            while received + missed < TOTAL || last != Some(TOTAL - 1) {
                match sub.recv().await {
                    Ok(message) => {
                        let seq = check_message(message.payload()).expect("intact");
                        assert!(last < Some(seq), "{seq} after {last:?}");
                        last = Some(seq);
                        received += 1;
                    }
                    Err(RecvError::Lagged(skipped)) => missed += skipped,
                    Err(error) => panic!("{error}"),
                }
            }
            client.close().await.expect("close");
            Told {
                next: TOTAL,
                received,
                missed,
                gap: 0,
            }
        })
    });
    ready_rx.recv_timeout(DEADLINE).expect("socket subscriber");
    let healthy = shm_client(&broker).subscribe("newest").expect("subscribe");
    let stopped = shm_client(&broker).subscribe("newest").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("newest").expect("publisher");
    let readers = [healthy, stopped].map(|sub| {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            go_rx.recv().expect("go");
            take_until_counting(sub, TOTAL - 1)
        });
        (go_tx, reader)
    });
    // The healthy one reads from the start; the other only once the first 2000 were offered:
    // the 4 KiB ring holds a few dozen, so it drops most of them, for every reader alike.
    readers[0].0.send(()).expect("go");
    for seq in 0..2000 {
        publisher
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    let dropped_while_stopped = publisher.dropped();
    assert!(dropped_while_stopped > 1000, "{dropped_while_stopped}");
    readers[1].0.send(()).expect("go");
    // Then paced, so that the readers keep up and the last messages arrive: each gap is
    // told with the message after it.
    for seq in 2000..TOTAL {
        while !publisher
            .try_publish(checked_message(seq).as_bytes())
            .expect("try_publish")
        {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let dropped = publisher.dropped();
    let [(_, healthy), (_, stopped)] = readers;
    let socket_told = over_socket.join().expect("socket subscriber");
    for (who, told) in [
        ("healthy shm", healthy.join().expect("reader")),
        ("stopped shm", stopped.join().expect("reader")),
        ("socket", socket_told),
    ] {
        assert_eq!(told.received + told.missed, TOTAL, "{who}: {told:?}");
        assert!(
            told.missed >= dropped,
            "{who}: told of every drop: {told:?}"
        );
        if who != "socket" {
            assert_eq!(told.missed, dropped, "{who}: exactly the ring's drops");
        }
    }
    assert_eq!(topic_counter(&broker, "newest", "dropped"), dropped);
}

#[test]
fn on_a_drop_newest_topic_a_stopped_shm_subscriber_costs_the_others_messages_only_until_the_deadline(
) {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_newest\"\npublish_deadline_ms = 300\n\n[shm]\nring_bytes = 4096\n",
        fanout("newest")
    ));
    let (mut frozen, frozen_pid) = stopped_shm_sub(&broker, "newest");
    let healthy = shm_client(&broker).subscribe("newest").expect("subscribe");
    let mut publisher = shm_client(&broker).publisher("newest").expect("publisher");
    const TOTAL: u64 = 6000;
    let reader = std::thread::spawn(move || take_until_counting(healthy, TOTAL - 1));
    // One message every 200 us: 1.2 s in all. The stopped subscriber fills the ring at
    // once, and every later message would be dropped for the healthy one too, were the
    // stopped one not detached after 300 ms.
    for seq in 0..TOTAL {
        publisher
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
        std::thread::sleep(Duration::from_micros(200));
    }
    let told = reader.join().expect("reader");
    assert_eq!(told.received + told.missed, TOTAL);
    assert_eq!(told.missed, publisher.dropped());
    assert!(
        told.received > TOTAL / 2,
        "the healthy subscriber lost messages past the deadline: {told:?}"
    );
    assert!(
        topic_counter(&broker, "newest", "dropped") > publisher.dropped(),
        "the detach is counted"
    );
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(
        !frozen.wait().success(),
        "the detached subscriber fails with the reason"
    );
}

#[test]
fn on_a_drop_newest_topic_a_large_message_is_dropped_not_waited_for_when_the_ring_is_full() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 100000\nbackpressure = \"drop_newest\"\npublish_deadline_ms = 0\n\n[shm]\nring_bytes = 4096\n",
        fanout("big")
    ));
    let (mut frozen, frozen_pid) = stopped_shm_sub(&broker, "big");
    let mut publisher = shm_client(&broker).publisher("big").expect("publisher");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The small ones fill the ring; the large ones (payload segments, whose reference
        // frame needs room too) must then be dropped, not waited for.
        for seq in 0..100 {
            publisher.publish(&[b's'; 100]).expect("small");
            if seq % 10 == 0 {
                publisher.publish(&[b'L'; 20_000]).expect("large");
            }
        }
        let _ = done_tx.send(publisher.dropped());
    });
    let dropped = done_rx
        .recv_timeout(DEADLINE)
        .expect("a large message waited on a stopped subscriber");
    // 110 messages, a frame of at least 64 bytes each in a 4 KiB ring.
    assert!(dropped >= 110 - 4096 / 64, "{dropped}");
    assert_eq!(topic_counter(&broker, "big", "dropped"), dropped);
    kill(frozen_pid, Signal::SIGKILL).expect("SIGKILL");
    frozen.wait();
}

#[test]
fn bench_on_a_lossy_or_dropping_topic_counts_what_it_lost_and_finishes() {
    for policy in ["drop_newest", "drop_oldest"] {
        let broker = TestBroker::start(&format!(
            "{}backpressure = \"{policy}\"\n\n[shm]\nring_bytes = 4096\n",
            fanout("bench.fanout")
        ));
        let out = broker
            .cmd()
            .args(["bench", "--transport", "shm", "--count", "300000"])
            .args(["--idle-timeout", "1", "--json"])
            .output()
            .expect("bench ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A subscriber told of a gap goes on (its tally sees the gap) instead of failing.
        let json: serde_json::Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("{policy}: no result\n{stdout}\n{stderr}"));
        let (received, lost) = (json["received"].as_u64(), json["lost"].as_u64());
        assert_eq!(json["reordered"], 0, "{policy}");
        assert!(
            received
                .zip(lost)
                .is_some_and(|(r, l)| r + l == 300_000 && r > 0),
            "{policy}: {json}"
        );
        // A lossy run is reported as such: exit status 1 when anything was lost.
        assert_eq!(out.status.success(), lost == Some(0), "{policy}: {stderr}");
    }
}

/// The messages of a burst, numbered from `first`, as `mycelium pub` reads them from stdin.
fn burst(first: u64, total: u64) -> impl Iterator<Item = String> + Send + 'static {
    (first..first + total).map(checked_message)
}

/// Checks what a `mycelium sub` printed for a burst numbered from `first`: intact messages,
/// in order, starting with `first` (the ring had room for it).
fn check_burst_lines(lines: &[String], first: u64) {
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| check_message(line.as_bytes()).expect("intact"))
        .collect();
    assert_eq!(seqs.first(), Some(&first), "the burst's first message");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
}

#[test]
fn on_a_drop_newest_topic_a_stopped_shm_subscriber_is_told_of_drops_at_the_end_of_a_burst() {
    // Issue 12, defect 6, over shared memory: a burst into a ring that a stopped subscriber
    // holds full ends in drops with nothing published after them. Resumed, the subscriber
    // reads what the ring held and must then be told of the rest at once (it used to be told
    // only with a later message, which never came). The deadline is "for ever", so the
    // watchdog does not detach the stopped subscriber.
    const TOTAL: u64 = 2000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_newest\"\npublish_deadline_ms = 0\n\n[shm]\nring_bytes = 4096\n",
        fanout("burst")
    ));
    let (sub, sub_pid) = stopped_shm_sub(&broker, "burst");
    // 1. `mycelium pub --transport shm`: the whole burst, then it exits (its ring is drained
    //    and dropped by the subscriber).
    let publisher = spawn_pub_with(&broker, "burst", &["--transport", "shm"], burst(0, TOTAL));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "mycelium pub failed: {stderr}");
    assert!(
        stderr.contains(&format!("published {TOTAL} message(s)")),
        "{stderr}"
    );
    let dropped = topic_counter(&broker, "burst", "dropped");
    assert!(
        dropped > TOTAL / 2,
        "a 4 KiB ring cannot hold {TOTAL}: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{dropped} of them dropped")),
        "{stderr}"
    );
    kill(sub_pid, Signal::SIGCONT).expect("SIGCONT");
    let (lines, lagged) = sub.take_lines_and_lagged(TOTAL);
    check_burst_lines(&lines, 0);
    assert_eq!(lines.len() as u64 + lagged, TOTAL, "each message once");
    assert_eq!(lagged, dropped, "told exactly what was dropped");
    // 2. A publisher that stays attached (its ring lives on, nothing more is published).
    kill(sub_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let mut publisher = shm_client(&broker).publisher("burst").expect("publisher");
    for seq in TOTAL..2 * TOTAL {
        publisher
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    let dropped = publisher.dropped();
    assert!(dropped > TOTAL / 2, "{dropped}");
    kill(sub_pid, Signal::SIGCONT).expect("SIGCONT");
    let (lines, lagged) = sub.take_lines_and_lagged(TOTAL);
    check_burst_lines(&lines, TOTAL);
    assert_eq!(lines.len() as u64 + lagged, TOTAL, "each message once");
    assert_eq!(lagged, dropped, "told exactly what was dropped");
    drop(publisher);
    kill(sub_pid, Signal::SIGKILL).expect("SIGKILL");
}

#[test]
fn on_a_drop_newest_topic_socket_subscribers_are_told_of_drops_at_the_end_of_a_shm_burst() {
    // The same loss, heard through the broker's reader of the publisher's ring: a stopped
    // shm subscriber holds the ring full, so the burst's tail is dropped in the ring (not in
    // the socket subscriber's outbox: it receives only what the ring held, a few dozen). The
    // reader keeps up, reads every frame, and must tell the socket subscriber of the drops
    // with no message after them, as soon as it finds the ring empty.
    const TOTAL: u64 = 2000;
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\nbackpressure = \"drop_newest\"\npublish_deadline_ms = 0\n\n[shm]\nring_bytes = 4096\n",
        fanout("burst")
    ));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let socket = broker.socket.clone();
    let over_socket = std::thread::spawn(move || {
        common::block_on(async {
            let client = mycelium_client::Client::connect(&socket)
                .await
                .expect("connect");
            let mut sub = client.subscribe("burst").await.expect("subscribe");
            ready_tx.send(()).expect("ready");
            // Counts only: over the socket a message that came with a notice may be handed
            // out before it.
            let (mut received, mut missed, mut last) = (0u64, 0u64, None);
            // Inside `block_on`'s own deadline, so that a failure says how far it got.
            let deadline = Instant::now() + DEADLINE.saturating_sub(Duration::from_secs(5));
            while received + missed < TOTAL {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, sub.recv()).await {
                    Ok(Ok(message)) => {
                        let seq = check_message(message.payload()).expect("intact");
                        assert!(last < Some(seq), "{seq} after {last:?}");
                        last = Some(seq);
                        received += 1;
                    }
                    Ok(Err(RecvError::Lagged(skipped))) => missed += skipped,
                    Ok(other) => panic!("the subscription ended: {other:?}"),
                    Err(_) => {
                        panic!("told of {received} + {missed} of {TOTAL} messages by the deadline")
                    }
                }
            }
            // Held open until the test has checked the counts (no notice may be pending).
            let _ = done_rx.recv_timeout(DEADLINE);
            client.close().await.expect("close");
            (received, missed)
        })
    });
    ready_rx.recv_timeout(DEADLINE).expect("socket subscriber");
    let (_frozen, frozen_pid) = stopped_shm_sub(&broker, "burst");
    let mut publisher = shm_client(&broker).publisher("burst").expect("publisher");
    for seq in 0..TOTAL {
        publisher
            .publish(checked_message(seq).as_bytes())
            .expect("publish");
    }
    // Nothing more is published; the publisher stays attached (its ring is not drained away).
    let dropped = publisher.dropped();
    assert!(dropped > TOTAL / 2, "{dropped}");
    let _ = done_tx.send(());
    let (received, missed) = over_socket.join().expect("socket subscriber");
    assert_eq!(received + missed, TOTAL);
    assert_eq!(missed, dropped, "exactly the ring's drops");
    assert_eq!(received, TOTAL - dropped);
    drop(publisher);
    kill(frozen_pid, Signal::SIGKILL).expect("SIGKILL");
}
