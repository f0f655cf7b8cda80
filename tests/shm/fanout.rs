//! Fanout topics over shared memory: every subscriber gets every message once, in per-publisher
//! order, whether publishers and subscribers use the socket or shared memory.

use super::*;

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
