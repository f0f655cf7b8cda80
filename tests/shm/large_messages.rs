//! Messages larger than a ring travel as payload segments: whole and in order to shm and socket
//! subscribers, once on queues, with a bounded number of segments pinned by a slow reader, and
//! no segment left behind.

use super::*;

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
