//! Queue topics over shared memory: each message goes to exactly one consumer, whichever
//! transport the publishers and consumers use, and a dead consumer's unread share is dealt again.

use super::*;

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
