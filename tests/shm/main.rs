//! The shared-memory data path end to end: a real broker process hands out rings; publishers
//! and subscribers in separate processes (the `mycelium` CLI) or in this test process (the
//! synchronous and async clients) exchange messages through them, one hop.
//!
//! Crashes are real: publishers are SIGKILLed in the middle of a stream, subscribers are
//! SIGKILLed while a publisher waits on them, and a hostile client scribbles random bytes
//! over a ring the broker gave it. Every wait is on a condition with a deadline.
//!
//! # Layout
//! - `fanout`: every subscriber of a fanout topic gets every message, in order, whichever
//!   transport each side uses (the socket side through the broker's relay ring).
//! - `queue`: a queue topic gives each message to exactly one consumer, over either transport.
//! - `request_reply`: request/reply over shared memory (replies, error replies, no responders at
//!   once, timeouts, a socket responder answering a shared-memory requester).
//! - `backpressure`: `block` and `disconnect` topics: how long a stopped reader may hold a
//!   publisher back, and that nothing is lost meanwhile.
//! - `lossy_topics`: `drop_newest` and `drop_oldest` topics: what is dropped, and that every
//!   subscriber is told exactly how much.
//! - `large_messages`: messages larger than a ring travel as payload segments.
//! - `envelopes`: stamps and headers across the rings (shm and socket ends, the relay ring,
//!   payload segments), no echo, and ring frames that claim an envelope they do not have.
//! - `patterns`: wildcard subscriptions over shared memory: which topics' rings a pattern
//!   reads (now, later, after a reload, after a reclaim), the concrete topic of each message,
//!   no echo, the async and `Auto` clients, the raw grant, `mycelium sub --transport shm`.
//! - `crashes`: SIGKILLed publishers and subscribers, and what their sessions leave behind.
//! - `session_end`: how each kind of client learns that the broker ended its session or
//!   attachment (broker killed, topic removed, detached while stopped).
//! - `hostile_peers`: raw sessions that scribble over rings or send bogus segments.
//! - `async_client`: the async subscription and publisher on a tokio runtime.
//! - `limits`: refusals with clear errors: unknown topics, oversized messages, shared memory
//!   disabled, attachment and publisher limits.
//! - `bench`: `mycelium bench` over shared memory.

#[path = "../common/mod.rs"]
mod common;

mod async_client;
mod backpressure;
mod bench;
mod crashes;
mod envelopes;
mod fanout;
mod hostile_peers;
mod large_messages;
mod limits;
mod lossy_topics;
mod patterns;
mod queue;
mod request_reply;
mod session_end;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::pubsub_support::{spawn_pub, spawn_pub_with, stats_json, topic_counter};
use common::raw::RawConnection;
use common::{fanout, spawn_sub, wait_until, TestBroker, DEADLINE};
use mycelium_client::blocking;
use mycelium_client::{PublishError, RecvError, RecvTimeoutError, ShmOptions};
use mycelium_transport::{ErrorCode, Frame, ShmRole};
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

fn queue(name: &str) -> String {
    format!("[[topics]]\nname = \"{name}\"\nrouting = \"queue\"\n")
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

/// A `mycelium sub --transport shm` on `topic`, attached, then stopped (SIGSTOP): a reader
/// that holds every ring of the topic where it was.
fn stopped_shm_sub(broker: &TestBroker, topic: &str) -> (common::SubProcess, Pid) {
    let sub = spawn_sub(broker, topic, &["--transport", "shm"]);
    let pid = Pid::from_raw(sub.child.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    (sub, pid)
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
