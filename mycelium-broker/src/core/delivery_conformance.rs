//! One test suite that every [`Delivery`] passes, whatever it carries: each sink's tests run
//! it with a way to read back what the sink queued.

use std::sync::Arc;
use std::time::Duration;

use crate::core::batch::BatchRef;
use crate::core::delivery::{Delivered, Delivery, Ending};

/// What a subscriber reads from a sink, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A message's payload.
    Message(Vec<u8>),
    /// A notice that this many were lost here.
    Lagged(u64),
    /// The end of the subscription.
    End,
}

/// A sink under test, and how its subscriber reads everything queued so far.
pub(crate) trait Reader: Delivery + Sized + 'static {
    /// A fresh, open sink for a subscriber of `topic`.
    fn open(topic: u32) -> Self;
    /// Takes everything queued, as its subscriber would.
    fn read_all(&self) -> Vec<Seen>;
}

const TOPIC: u32 = 7;

fn deliver<S: Delivery>(sink: &S, payloads: &[&[u8]], limit: Option<usize>) -> Delivered {
    sink.deliver(
        TOPIC,
        BatchRef::Payloads(payloads),
        0..payloads.len(),
        limit,
    )
}

fn message(payload: &[u8]) -> Seen {
    Seen::Message(payload.to_vec())
}

/// Runs every case against `S`.
pub(crate) async fn run<S: Reader + Send + Sync>() {
    a_limit_stops_deliveries_and_an_empty_sink_takes_one::<S>();
    credited_deliveries_ignore_the_limit::<S>();
    losses_are_told_in_place_and_merged::<S>();
    evicting_tells_the_gap_before_the_newest_kept::<S>();
    a_slow_consumer_ends_after_what_was_queued_and_refuses_more::<S>();
    a_publisher_waiting_for_room_is_woken_when_the_subscriber_reads::<S>().await;
}

fn a_limit_stops_deliveries_and_an_empty_sink_takes_one<S: Reader>() {
    let sink = S::open(TOPIC);
    assert_eq!(
        deliver(&sink, &[b"a", b"b", b"c", b"d"], Some(3)),
        Delivered::Queued(3)
    );
    assert!(!sink.has_room(TOPIC, 3));
    assert_eq!(deliver(&sink, &[b"e"], Some(3)), Delivered::Queued(0));
    assert_eq!(
        sink.read_all(),
        vec![message(b"a"), message(b"b"), message(b"c")]
    );
    assert!(sink.has_room(TOPIC, 3));
    assert_eq!(
        deliver(&sink, &[b"f", b"g"], Some(0)),
        Delivered::Queued(1),
        "an empty sink takes one whatever the limit"
    );
}

fn credited_deliveries_ignore_the_limit<S: Reader>() {
    let sink = S::open(TOPIC);
    let payloads: Vec<&[u8]> = vec![b"x"; 100];
    assert_eq!(deliver(&sink, &payloads, None), Delivered::Queued(100));
    assert_eq!(sink.read_all().len(), 100);
}

fn losses_are_told_in_place_and_merged<S: Reader>() {
    let sink = S::open(TOPIC);
    deliver(&sink, &[b"a"], Some(10));
    sink.report_lost(TOPIC, 2);
    sink.report_lost(TOPIC, 1);
    deliver(&sink, &[b"b"], Some(10));
    assert_eq!(
        sink.read_all(),
        vec![message(b"a"), Seen::Lagged(3), message(b"b")]
    );
    sink.report_lost(TOPIC, 4);
    assert_eq!(
        sink.read_all(),
        vec![Seen::Lagged(4)],
        "a loss nothing follows is told at the next read"
    );
}

fn evicting_tells_the_gap_before_the_newest_kept<S: Reader>() {
    let sink = S::open(TOPIC);
    deliver(&sink, &[b"a", b"b", b"c"], Some(10));
    assert_eq!(sink.evict_oldest(TOPIC, 2), 2);
    assert_eq!(
        sink.evict_oldest(TOPIC + 1, 2),
        0,
        "no message of that topic"
    );
    assert_eq!(sink.read_all(), vec![Seen::Lagged(2), message(b"c")]);
    assert_eq!(sink.evict_oldest(TOPIC, 1), 0, "nothing left to evict");
}

fn a_slow_consumer_ends_after_what_was_queued_and_refuses_more<S: Reader>() {
    let sink = S::open(TOPIC);
    deliver(&sink, &[b"a"], Some(10));
    sink.end(
        TOPIC,
        Ending::SlowConsumer {
            message: "too slow",
        },
    );
    assert_eq!(deliver(&sink, &[b"b"], Some(10)), Delivered::Closed);
    assert!(sink.has_room(TOPIC, 1), "closed: nothing to wait for");
    assert_eq!(sink.read_all(), vec![message(b"a"), Seen::End]);
}

async fn a_publisher_waiting_for_room_is_woken_when_the_subscriber_reads<
    S: Reader + Send + Sync,
>() {
    let sink = Arc::new(S::open(TOPIC));
    deliver(&*sink, &[b"a"], Some(1));
    let waiter = {
        let sink = sink.clone();
        tokio::spawn(async move { sink.wait_for_room(TOPIC, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished(), "full: the publisher waits");
    assert_eq!(sink.read_all(), vec![message(b"a")]);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken by the read")
        .expect("no panic");
}
