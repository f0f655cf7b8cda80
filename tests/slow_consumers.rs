//! Slow consumers over the socket: under `drop_newest` and `drop_oldest` a subscriber whose
//! buffer is full loses messages, counted, and is told exactly how many (`Lagged`); other
//! subscribers and topics are not held up.

mod common;

use common::pubsub_support::topic_counter;
use common::{block_on, TestBroker};
use mycelium::Client;

const N: u64 = 300_000;

fn lossy(policy: &str) -> String {
    format!(
        "[[topics]]\nname = \"lossy\"\nrouting = \"fanout\"\nbuffer_size = 16\nbackpressure = \"{policy}\"\n"
    )
}

/// A subscriber that reads nothing while `N` messages are published loses some; it then gets
/// every message that was kept, in order, and a `Lagged` count such that the two add up to
/// everything published.
fn a_stalled_subscriber_is_told_exactly_how_many_it_missed(policy: &str) {
    let broker = TestBroker::start(&lossy(policy));
    block_on(async {
        let slow = Client::connect(&broker.socket).await.expect("connect");
        let mut sub = slow.subscribe("lossy").await.expect("subscribe");
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        let p = publisher.publisher("lossy").await.expect("publisher");
        for i in 0..N {
            p.publish(&i.to_le_bytes()).await.expect("publish");
        }
        publisher.flush().await.expect("every publish accepted");
        let dropped = topic_counter(&broker, "lossy", "dropped");
        assert!(dropped > 0, "the stalled subscriber must have lost some");
        // Take everything that was kept, in order.
        let mut last: Option<u64> = None;
        let mut received = 0u64;
        while received + dropped < N {
            let message = sub.recv().await.expect("a message").expect("not an error");
            let seq = u64::from_le_bytes(message.payload()[..8].try_into().expect("8 bytes"));
            assert!(
                last.is_none_or(|l| seq > l),
                "{seq} after {last:?}: out of order"
            );
            last = Some(seq);
            received += 1;
        }
        // The next message carries the notice of the gap.
        p.publish(b"marker").await.expect("publish");
        publisher.flush().await.expect("accepted");
        let marker = sub.recv().await.expect("the marker").expect("not an error");
        assert_eq!(&marker.payload()[..], b"marker");
        assert_eq!(sub.missed(), dropped, "told exactly what was dropped");
        assert_eq!(received + sub.missed(), N, "nothing lost uncounted");
        slow.close().await.expect("close");
        publisher.close().await.expect("close");
    });
}

#[test]
fn drop_newest_tells_a_stalled_subscriber_exactly_how_many_it_missed() {
    a_stalled_subscriber_is_told_exactly_how_many_it_missed("drop_newest");
}

#[test]
fn drop_oldest_tells_a_stalled_subscriber_exactly_how_many_it_missed() {
    a_stalled_subscriber_is_told_exactly_how_many_it_missed("drop_oldest");
}
