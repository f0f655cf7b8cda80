//! Queue topics over the socket: each message goes to exactly one consumer, shared fairly, and
//! messages published before any consumer wait for one, in order.

use super::*;

#[test]
fn a_queue_topic_gives_each_message_to_exactly_one_of_three_consumers_and_shares_them_fairly() {
    const TOTAL: usize = 9000;
    let broker =
        TestBroker::start("[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\nprefetch = 16\n");
    let consumers: Vec<SubProcess> = (0..3).map(|_| spawn_sub(&broker, "jobs", &[])).collect();
    // The broker queues a TopicAck just before it registers the consumer; wait for all three.
    wait_until("three consumers on jobs", || {
        topic_counter(&broker, "jobs", "subscribers") == 3
    });
    let publisher = spawn_pub(&broker, "jobs", (0..TOTAL).map(|i| format!("job-{i}")));
    let mut got: Vec<Vec<String>> = vec![Vec::new(); consumers.len()];
    wait_until("every job to reach some consumer", || {
        for (consumer, lines) in consumers.iter().zip(&mut got) {
            lines.extend(consumer.lines_so_far());
        }
        got.iter().map(Vec::len).sum::<usize>() >= TOTAL
    });
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "mycelium pub failed: {stderr}");
    // The publisher has exited after its flush, so everything it sent is routed: the broker has
    // nothing left to hand out, and `delivered` can no longer grow.
    assert_eq!(topic_counter(&broker, "jobs", "published"), TOTAL as u64);
    assert_eq!(topic_counter(&broker, "jobs", "delivered"), TOTAL as u64);
    assert_eq!(topic_counter(&broker, "jobs", "queued"), 0);
    // End the consumers and read their output to its end: whatever they printed is in `got`.
    for (consumer, lines) in consumers.iter().zip(&mut got) {
        signal(&consumer.child, Signal::SIGKILL);
        lines.extend(consumer.lines_until_exit());
    }

    let total: usize = got.iter().map(Vec::len).sum();
    assert_eq!(total, TOTAL, "messages received across consumers");
    let distinct: BTreeSet<&String> = got.iter().flatten().collect();
    assert_eq!(distinct.len(), TOTAL, "some message was received twice");
    let expected: BTreeSet<String> = (0..TOTAL).map(|i| format!("job-{i}")).collect();
    assert!(
        distinct.iter().all(|m| expected.contains(*m)),
        "a consumer got a message nobody published"
    );
    for (n, lines) in got.iter().enumerate() {
        let seqs: Vec<usize> = lines
            .iter()
            .map(|l| l["job-".len()..].parse().expect("job number"))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "consumer {n} got its messages out of publish order"
        );
    }
    // Identical consumers read at the same speed, and each can hold at most `prefetch` (16)
    // unacknowledged messages, so none can take more than its pace allows: the fair share is a
    // third (3000). 15% (1350) is under half of that, which tolerates one consumer being
    // descheduled for a good part of the run on a busy 2-core machine, yet fails if credit or
    // round-robin dealing is broken (e.g. one consumer taking everything).
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    for (n, &count) in counts.iter().enumerate() {
        assert!(
            count * 100 >= TOTAL * 15,
            "consumer {n} got only {count} of {TOTAL} (counts: {counts:?})"
        );
    }
}

#[test]
fn a_queue_topic_keeps_messages_published_before_any_consumer_and_delivers_them_in_order() {
    const TOTAL: usize = 1000;
    let broker =
        TestBroker::start("[[topics]]\nname = \"jobs\"\nrouting = \"queue\"\nprefetch = 16\n");
    let publisher = spawn_pub(&broker, "jobs", (0..TOTAL).map(|i| format!("job-{i}")));
    let (status, stderr) = publisher.finish();
    assert!(status.success(), "mycelium pub failed: {stderr}");
    assert_eq!(topic_counter(&broker, "jobs", "queued"), TOTAL as u64);
    assert_eq!(topic_counter(&broker, "jobs", "delivered"), 0);

    // More messages than the consumer's credit (16): the backlog drains as credit comes back.
    let mut consumer = spawn_sub(&broker, "jobs", &["--count", &TOTAL.to_string()]);
    assert_eq!(consumer.take_lines(TOTAL), numbered("job-", 0..TOTAL));
    assert!(consumer.wait().success());
    assert_eq!(consumer.lines_until_exit(), Vec::<String>::new());
    // A message leaves the backlog before it is written to the consumer.
    assert_eq!(topic_counter(&broker, "jobs", "queued"), 0);
    assert_eq!(topic_counter(&broker, "jobs", "delivered"), TOTAL as u64);
    assert_eq!(topic_counter(&broker, "jobs", "published"), TOTAL as u64);
}
