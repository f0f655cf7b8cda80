//! `drop_newest` and `drop_oldest` topics over shared memory: a slow reader never holds a
//! publisher back; what it loses is dropped whole, and every subscriber is told exactly how many
//! messages it missed (`Lagged`).

use super::*;

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
    // A burst into a ring that a stopped subscriber holds full ends in drops with nothing
    // published after them. Resumed, the subscriber reads what the ring held and must then be
    // told of the rest at once, not only with a later message, which may never come. The deadline is "for ever", so the
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
