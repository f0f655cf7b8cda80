//! Fanout topics over the socket: every subscriber gets every message of every publisher, in
//! per-publisher order, and never a message of another topic.

use super::*;

#[test]
fn every_fanout_subscriber_gets_every_line_of_two_publishers_in_per_publisher_order() {
    const PER_PUBLISHER: usize = 5000;
    const TOTAL: usize = 2 * PER_PUBLISHER;
    let broker = TestBroker::start(&fanout("ticks"));
    let subs: Vec<SubProcess> = (0..3)
        .map(|_| spawn_sub(&broker, "ticks", &["--count", &TOTAL.to_string()]))
        .collect();
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let lines = (0..PER_PUBLISHER).map(move |i| format!("p{p}-{i}"));
            spawn_pub(&broker, "ticks", lines)
        })
        .collect();
    for publisher in publishers {
        let (status, stderr) = publisher.finish();
        assert!(status.success(), "mycelium pub failed: {stderr}");
        assert!(
            stderr.contains(&format!("published {PER_PUBLISHER} message(s) to ticks")),
            "{stderr}"
        );
    }
    for (n, mut sub) in subs.into_iter().enumerate() {
        let lines = sub.take_lines(TOTAL);
        assert!(sub.wait().success(), "subscriber {n} failed");
        assert_eq!(
            sub.lines_until_exit(),
            Vec::<String>::new(),
            "subscriber {n} printed extra lines"
        );
        let mut per_publisher: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for line in &lines {
            let (p, seq) = line
                .strip_prefix('p')
                .and_then(|rest| rest.split_once('-'))
                .unwrap_or_else(|| panic!("subscriber {n} got a foreign line {line:?}"));
            let p: usize = p.parse().expect("publisher number");
            per_publisher[p].push(seq.parse().expect("sequence number"));
        }
        for (p, seqs) in per_publisher.iter().enumerate() {
            assert!(
                seqs.iter().copied().eq(0..PER_PUBLISHER),
                "subscriber {n}: publisher {p}'s {} lines are not exactly 0..{PER_PUBLISHER} in order",
                seqs.len()
            );
        }
    }
    assert_eq!(topic_counter(&broker, "ticks", "published"), TOTAL as u64);
    assert_eq!(
        topic_counter(&broker, "ticks", "delivered"),
        3 * TOTAL as u64
    );
    assert_eq!(topic_counter(&broker, "ticks", "dropped"), 0);
}

#[test]
fn subscribers_of_one_topic_never_see_messages_of_another() {
    const EACH: usize = 200;
    let broker = TestBroker::start(&format!("{}{}", fanout("alpha"), fanout("beta")));
    let count = (EACH + 1).to_string();
    let mut alpha = spawn_sub(&broker, "alpha", &["--count", &count]);
    let mut beta = spawn_sub(&broker, "beta", &["--count", &count]);
    // One connection interleaves both topics; a final `end` on each topic comes after every
    // other message, and the broker writes to a subscriber in the order it routed, so a
    // misrouted message would show up among the first EACH + 1 lines.
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        for i in 0..EACH {
            client
                .publish("alpha", format!("alpha-{i}").as_bytes())
                .await
                .expect("publish alpha");
            client
                .publish("beta", format!("beta-{i}").as_bytes())
                .await
                .expect("publish beta");
        }
        client
            .publish("alpha", b"end")
            .await
            .expect("publish alpha end");
        client
            .publish("beta", b"end")
            .await
            .expect("publish beta end");
        client.close().await.expect("close");
    });
    for (sub, name) in [(&mut alpha, "alpha"), (&mut beta, "beta")] {
        let mut expected = numbered(&format!("{name}-"), 0..EACH);
        expected.push("end".to_owned());
        assert_eq!(
            sub.take_lines(EACH + 1),
            expected,
            "what the {name} subscriber got"
        );
        assert!(sub.wait().success());
        assert_eq!(sub.lines_until_exit(), Vec::<String>::new());
        assert_eq!(topic_counter(&broker, name, "delivered"), EACH as u64 + 1);
    }
}
