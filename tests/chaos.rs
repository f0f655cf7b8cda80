//! Chaos: publishers and subscribers on fanout and queue topics keep going while a driver
//! SIGKILLs client processes (over the socket and over shared memory, in turn), sends garbage on fresh connections and connects past
//! the connection limit. At the end every surviving subscriber has exactly its expected
//! messages (none missing, none twice, per-publisher order kept, and of every killed
//! publisher a gap-free prefix), and the broker's memory stayed bounded.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::pubsub_support::{spawn_pub, spawn_pub_with, PubProcess};
use common::{block_on, rss_kib, spawn_sub, wait_until, SubProcess, TestBroker, DEADLINE};
use mycelium_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Lines each surviving publisher sends.
const N: usize = 20_000;

/// Rounds of the chaos driver (each kills what the last one started).
const ROUNDS: usize = 12;

/// A small deterministic generator (xorshift): the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Splits `p<publisher>-<seq>`.
fn parse(line: &str) -> (String, usize) {
    let (publisher, seq) = line
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("a foreign line {line:?}"));
    let seq = seq
        .parse()
        .unwrap_or_else(|_| panic!("a foreign line {line:?}"));
    (publisher.to_owned(), seq)
}

/// Checks that `message` is the next of its publisher for subscriber `n`, and counts it.
fn take_in_order(next: &mut BTreeMap<String, usize>, n: usize, message: &mycelium_client::Message) {
    let line = std::str::from_utf8(message.payload()).expect("utf-8");
    let (publisher, seq) = parse(line);
    let expected = next.entry(publisher.clone()).or_insert(0);
    assert_eq!(
        seq, *expected,
        "subscriber {n}: {publisher} out of order or repeated"
    );
    *expected += 1;
}

/// `n` clients of `broker`, each subscribed to `topic` (the clients must outlive the
/// subscriptions).
async fn subscribers(
    broker: &TestBroker,
    topic: &str,
    n: usize,
) -> (Vec<Client>, Vec<mycelium_client::Subscription>) {
    let (mut clients, mut subs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let client = Client::connect(&broker.socket).await.expect("connect");
        subs.push(client.subscribe(topic).await.expect("subscribe"));
        clients.push(client);
    }
    (clients, subs)
}

#[test]
fn survivors_get_exactly_their_messages_while_clients_are_killed_and_garbage_arrives() {
    let broker = TestBroker::start_with(
        "max_connections = 40",
        "[[topics]]\nname = \"chaos.fan\"\nrouting = \"fanout\"\nbuffer_size = 100000\n\
         [[topics]]\nname = \"chaos.q\"\nrouting = \"queue\"\nbuffer_size = 100000\n",
    );
    let rss_before = rss_kib(broker.pid());
    block_on(async {
        // Survivors: two fanout subscribers and two queue consumers in this process.
        let (_fan_clients, mut fan_subs) = subscribers(&broker, "chaos.fan", 2).await;
        let (_q_clients, mut q_subs) = subscribers(&broker, "chaos.q", 2).await;

        // Surviving publishers: two on the fanout topic, one on the queue, separate processes.
        // They connect at once but publish only once all are connected (their stdin waits on
        // `gate`), so the crowding below never refuses one of them.
        let gate = Arc::new(Barrier::new(4));
        let gated = |topic: &str, prefix: String| {
            let gate = gate.clone();
            let lines = std::iter::once_with(move || {
                gate.wait();
            })
            .flat_map(move |()| {
                let prefix = prefix.clone();
                (0..N).map(move |i| format!("{prefix}-{i}"))
            });
            spawn_pub(&broker, topic, lines)
        };
        let survivors: Vec<PubProcess> = vec![
            gated("chaos.fan", "s0".into()),
            gated("chaos.fan", "s1".into()),
            gated("chaos.q", "q".into()),
        ];
        wait_until("the surviving publishers to connect", || {
            // 4 clients here, 3 publishers, and the stats request itself.
            common::pubsub_support::stats_json(&broker)["connections"]
                .as_u64()
                .is_some_and(|c| c >= 8)
        });
        gate.wait();

        // The driver: each round starts victims, sends garbage, crowds the limit, then kills.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut victim_publishers = 0usize;
        for round in 0..ROUNDS {
            // Every other round the victims use shared memory: a publisher killed while
            // writing its ring, a subscriber killed while holding slots.
            let transport: &[&str] = if round % 2 == 1 {
                &["--transport", "shm"]
            } else {
                &[]
            };
            let victim_sub: SubProcess = spawn_sub(&broker, "chaos.fan", transport);
            let name = format!("v{round}");
            victim_publishers += 1;
            let victim_pub = spawn_pub_with(
                &broker,
                "chaos.fan",
                transport,
                (0..N).map(move |i| format!("{name}-{i}")),
            );
            // Wait until the victim publisher's messages flow (its own subscriber has one),
            // so that every round really kills a publisher mid-stream; the crowd below would
            // otherwise refuse its connection.
            let mine = format!("v{round}-");
            let started = Instant::now();
            while !victim_sub
                .lines_so_far()
                .iter()
                .any(|l| l.starts_with(&mine))
            {
                assert!(
                    started.elapsed() < DEADLINE,
                    "victim {round} never published"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Garbage on fresh connections: random bytes, then gone.
            for _ in 0..3 {
                if let Ok(mut raw) = UnixStream::connect(&broker.socket) {
                    let garbage: Vec<u8> =
                        (0..rng.below(300) + 1).map(|_| rng.next() as u8).collect();
                    let _ = raw.write_all(&garbage);
                }
            }
            // A crowd: hold more silent sockets than max_connections (they count against
            // max_pending_handshakes, not against the clients), then let go.
            let crowd: Vec<UnixStream> = (0..45)
                .filter_map(|_| UnixStream::connect(&broker.socket).ok())
                .collect();
            tokio::time::sleep(Duration::from_millis(rng.below(40) + 10)).await;
            drop(crowd);
            kill(Pid::from_raw(victim_pub.pid()), Signal::SIGKILL).expect("kill a publisher");
            kill(Pid::from_raw(victim_sub.child.id() as i32), Signal::SIGKILL)
                .expect("kill a subscriber");
            drop(victim_pub);
            drop(victim_sub);
        }
        for publisher in survivors {
            let (status, stderr) = publisher.finish();
            assert!(status.success(), "a surviving publisher failed: {stderr}");
        }

        // Every surviving fanout subscriber: all of both survivors, in order, once; and of
        // each killed publisher a gap-free prefix in order.
        for (n, sub) in fan_subs.iter_mut().enumerate() {
            let mut next: BTreeMap<String, usize> = BTreeMap::new();
            let started = Instant::now();
            while next.get("s0").copied().unwrap_or(0) < N
                || next.get("s1").copied().unwrap_or(0) < N
            {
                assert!(
                    started.elapsed() < DEADLINE,
                    "subscriber {n} stalled: {next:?}"
                );
                let message = tokio::time::timeout(DEADLINE, sub.recv())
                    .await
                    .expect("a message in time")
                    .expect("the subscription goes on");
                take_in_order(&mut next, n, &message);
            }
            // What else arrived (the killed publishers' last messages): still in order.
            while let Ok(message) = sub.try_recv() {
                take_in_order(&mut next, n, &message);
            }
            let victims = next.keys().filter(|k| k.starts_with('v')).count();
            assert!(victims <= victim_publishers);
        }
        // The queue's consumers together: every message exactly once.
        let mut seen = HashSet::new();
        let started = Instant::now();
        'outer: loop {
            for sub in q_subs.iter_mut() {
                while let Ok(message) = sub.try_recv() {
                    let line = std::str::from_utf8(message.payload())
                        .expect("utf-8")
                        .to_owned();
                    assert!(seen.insert(line.clone()), "{line} dealt twice");
                }
                if seen.len() == N {
                    break 'outer;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the queue stalled at {}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.len(), N);
    });
    // Every killed client was cleaned up, and memory did not run away.
    wait_until("the killed clients' connections to be closed", || {
        common::pubsub_support::stats_json(&broker)["connections"]
            .as_u64()
            .is_some_and(|c| c <= 1)
    });
    let rss_after = rss_kib(broker.pid());
    assert!(
        rss_after < rss_before + 256 * 1024,
        "broker RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}
