//! What a topic counts, and the plain report of it ([`TopicStatistics`]).
//!
//! - Counted per routing call (a batch, or what of it one call routed), never per message:
//!   relaxed adds, and zeros skipped, since an atomic add costs even when it adds nothing.
//! - Bytes are the messages' bytes as routed: the payload, with its envelope when it has one
//!   (frame headers not included).

use std::sync::atomic::{AtomicU64, Ordering};

use mycelium_config::Routing;

use crate::core::topic::drops::{DropReason, DroppedBy};
use crate::core::topic::Topic;

/// What a topic counts as it routes; relaxed atomics, since they order nothing. Read through
/// [`Topic::statistics`].
#[derive(Debug, Default)]
pub(crate) struct TopicCounters {
    /// Messages accepted from publishers.
    pub(crate) published: AtomicU64,
    /// Copies handed to subscribers.
    pub(crate) delivered: AtomicU64,
    /// Bytes of the messages accepted from publishers.
    pub(crate) bytes_in: AtomicU64,
    /// Bytes of the copies handed to subscribers.
    pub(crate) bytes_out: AtomicU64,
    /// Copies lost, whatever the reason: the sum of `dropped_by`.
    pub(crate) dropped: AtomicU64,
    /// Copies lost, by [`DropReason::index`].
    dropped_by: [AtomicU64; DropReason::ALL.len()],
}

impl TopicCounters {
    /// Counts `count` messages of `bytes` accepted from a publisher.
    #[inline]
    pub(super) fn published(&self, count: u64, bytes: u64) {
        if count > 0 {
            self.published.fetch_add(count, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts `delivered` copies of `bytes` handed to subscribers by one routing call.
    #[inline]
    pub(super) fn add(&self, delivered: u64, bytes: u64) {
        if delivered > 0 {
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts `count` copies lost for `reason`; most calls lose nothing, and add nothing.
    #[inline]
    pub(crate) fn lost(&self, reason: DropReason, count: u64) {
        if count > 0 {
            self.dropped.fetch_add(count, Ordering::Relaxed);
            self.dropped_by[reason.index()].fetch_add(count, Ordering::Relaxed);
        }
    }

    /// The losses per reason now.
    pub(crate) fn dropped_by(&self) -> DroppedBy {
        let mut by = DroppedBy::default();
        for reason in DropReason::ALL {
            by.add(
                reason,
                self.dropped_by[reason.index()].load(Ordering::Relaxed),
            );
        }
        by
    }
}

/// A topic's figures at one moment, as [`Topic::statistics`] reports them; each front end
/// presents them its own way (the socket server as a `TopicStats` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStatistics {
    /// The topic's name.
    pub name: String,
    /// How it routes.
    pub routing: Routing,
    /// Subscribers (fanout) or consumers (queue) reached one by one, through a
    /// [`Delivery`](crate::core::delivery::Delivery); the shared-memory relay's readers are
    /// not counted here.
    pub subscribers: usize,
    /// Messages accepted from publishers.
    pub published: u64,
    /// Copies handed to subscribers.
    pub delivered: u64,
    /// Copies discarded by the backpressure policy (or lost before they could be routed).
    pub dropped: u64,
    /// `dropped`, by reason (shared-memory publishers' own ring drops not included: the
    /// broker's metrics add them, as `drop_newest`).
    pub dropped_by: DroppedBy,
    /// Bytes of the messages accepted from publishers (payloads with their envelopes).
    pub bytes_in: u64,
    /// Bytes of the copies handed to subscribers (each copy counted; a copy evicted later
    /// under `drop_oldest` stays counted).
    pub bytes_out: u64,
    /// Messages waiting in a queue topic's backlog (always 0 for fanout).
    pub queued: usize,
    /// Auto-created, and removed once idle ([`Topic::is_dynamic`]).
    pub dynamic: bool,
}

impl Topic {
    /// The topic's counters, for the parts of the broker that count on its behalf.
    pub(crate) fn counters(&self) -> &TopicCounters {
        &self.counters
    }

    /// The topic's figures now.
    pub fn statistics(&self) -> TopicStatistics {
        TopicStatistics {
            name: self.name().to_owned(),
            routing: self.routing(),
            subscribers: self.subscriber_count(),
            published: self.counters.published.load(Ordering::Relaxed),
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            dropped_by: self.counters.dropped_by(),
            bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.counters.bytes_out.load(Ordering::Relaxed),
            queued: self.backlog_len(),
            dynamic: self.is_dynamic(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing, TopicDefaults};
    use mycelium_transport::outbox::Outbox;

    use crate::core::local::LocalBroker;
    use crate::core::topic::test_support::{msgs, publish_all, topic};
    use crate::core::topic::{DropReason, Topic};
    use mycelium_transport::Broker;

    fn broker_with(
        routing: Routing,
        buffer_size: usize,
        backpressure: Backpressure,
    ) -> LocalBroker {
        let broker = LocalBroker::new(TopicDefaults::default());
        let mut config = TopicDefaults::default().topic("t");
        config.routing = routing;
        config.buffer_size = buffer_size;
        config.backpressure = backpressure;
        broker.create_topic(config).expect("created");
        broker
    }

    fn the_topic(broker: &LocalBroker) -> Arc<Topic> {
        broker.registry().get_by_name("t").expect("the topic")
    }

    /// Only `reason` counted, `count` of it, and the total agrees.
    fn assert_dropped(topic: &Topic, reason: DropReason, count: u64) {
        let s = topic.statistics();
        for (r, n) in s.dropped_by.iter() {
            assert_eq!(n, if r == reason { count } else { 0 }, "{r:?}: {s:?}");
        }
        assert_eq!(s.dropped, count);
        assert_eq!(s.dropped_by.total(), count);
    }

    #[tokio::test]
    async fn bytes_in_count_each_message_once_and_bytes_out_each_copy() {
        let broker = broker_with(Routing::Fanout, 64, Backpressure::Block);
        let _a = broker.subscribe("t").expect("a");
        let _b = broker.subscribe("t").expect("b");
        let publisher = broker.publisher("t").expect("publisher");
        publisher
            .publish_batch(&[b"12345", b"1234567", b"12345678901"])
            .await
            .expect("published");
        publisher.publish(b"").await.expect("published");
        let s = the_topic(&broker).statistics();
        assert_eq!((s.published, s.bytes_in), (4, 23));
        assert_eq!((s.delivered, s.bytes_out), (8, 46));
        assert_eq!(s.dropped, 0);
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_loses_messages_by_the_topics_policy() {
        let cases = [
            (Backpressure::DropNewest, DropReason::DropNewest),
            (Backpressure::DropOldest, DropReason::DropOldest),
        ];
        for (policy, reason) in cases {
            let broker = broker_with(Routing::Fanout, 4, policy);
            let _sub = broker.subscribe("t").expect("sub");
            for i in 0..10u32 {
                broker
                    .publish("t", &i.to_le_bytes())
                    .await
                    .expect("published");
            }
            let topic = the_topic(&broker);
            assert_dropped(&topic, reason, 6);
            let s = topic.statistics();
            assert_eq!((s.published, s.bytes_in), (10, 40), "{policy:?}");
            // drop_oldest counted ten copies handed over, then took six back.
            assert_eq!(s.delivered, 4, "{policy:?}");
            let handed = if policy == Backpressure::DropOldest {
                10
            } else {
                4
            };
            assert_eq!(s.bytes_out, handed * 4, "{policy:?}");
        }
    }

    #[test]
    fn a_slow_subscriber_detached_loses_the_rest_of_the_batch_as_slow_consumer() {
        let t = topic(Routing::Fanout, 4, Backpressure::Disconnect, 1);
        t.subscribe(1, Arc::new(Outbox::new()), 1000, 0);
        assert!(matches!(
            publish_all(&t, &msgs(10)),
            crate::core::topic::Progress::Done
        ));
        assert_dropped(&t, DropReason::SlowConsumer, 6);
    }

    #[test]
    fn a_full_backlog_drops_by_policy_and_a_removal_drops_what_it_held() {
        let t = topic(Routing::Queue, 4, Backpressure::DropNewest, 1);
        publish_all(&t, &msgs(10));
        assert_dropped(&t, DropReason::DropNewest, 6);
        assert_eq!(t.remove(), 4);
        let by = t.statistics().dropped_by;
        assert_eq!(by.get(DropReason::TopicRemoved), 4);
        assert_eq!(by.get(DropReason::DropNewest), 6);
        assert_eq!(by.total(), 10);

        let t = topic(Routing::Queue, 4, Backpressure::DropOldest, 1);
        publish_all(&t, &msgs(10));
        assert_dropped(&t, DropReason::DropOldest, 6);
        assert_eq!(t.backlog_len(), 4);
    }
}
