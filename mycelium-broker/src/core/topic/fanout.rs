//! Fanout: every subscriber gets every message, in publish order.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mycelium_config::{Backpressure, Routing, TopicConfig};

use crate::core::delivery::{Delivered, Delivery, Ending};
use crate::core::topic::{
    Batch, Blocker, DropReason, Progress, PublishCursor, SubscriberId, Topic,
};

#[derive(Debug, Clone)]
pub(super) struct FanoutSubscriber {
    pub(super) id: SubscriberId,
    /// The way to the subscriber; also tells it what it lost.
    pub(super) sink: Arc<dyn Delivery>,
    /// The connection's `channel_capacity` when it subscribed: caps the topic's `buffer_size`
    /// (read at each publish, so a reload's new size applies to the next message).
    pub(super) capacity: usize,
    /// No echo: batches published with this origin are not for this subscriber (0: it takes
    /// every batch). A skipped batch is neither delivered nor dropped for it.
    pub(super) skip_origin: u64,
}

impl FanoutSubscriber {
    /// Messages this subscriber may hold queued of the topic under `settings`.
    pub(super) fn limit(&self, settings: &TopicConfig) -> usize {
        settings.buffer_size.min(self.capacity).max(1)
    }
}

impl Topic {
    /// `count` messages that reached the broker over shared memory were lost before it could
    /// route them (their publisher dropped them under `drop_newest`, or lapped the broker's
    /// reader under `drop_oldest`): every fanout subscriber is told at once (a `Lagged`
    /// notice before its next message, or as soon as its writer takes what is queued), as
    /// for the messages its own sink dropped. Counting them is the caller's business.
    /// Nothing happens on a queue topic: a message lost before it was dealt was no
    /// consumer's in particular.
    pub(crate) fn report_missed(&self, count: u64) {
        if self.routing != Routing::Fanout || count == 0 {
            return;
        }
        for sub in self.fanout_snapshot().iter() {
            sub.sink.report_lost(self.id, count);
        }
    }

    pub(super) fn fanout_snapshot(&self) -> Arc<[FanoutSubscriber]> {
        self.fanout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a subscriber that keeps the topic in use is attached (not only patterns).
    pub(crate) fn has_direct_subscriber(&self) -> bool {
        self.fanout_snapshot()
            .iter()
            .any(|s| s.sink.counts_as_use())
    }

    pub(super) fn publish_fanout<B: Batch + ?Sized>(
        self: &Arc<Self>,
        payloads: &B,
        cursor: &mut PublishCursor,
        settings: &TopicConfig,
    ) -> Progress {
        let batch = payloads.view();
        // The read guard is held while appending (no await happens here): cheaper than cloning
        // the snapshot's Arc, and it only delays a concurrent subscribe by one batch.
        let subscribers = self.fanout.read().unwrap_or_else(|p| p.into_inner());
        if self.is_removed() {
            // Removed since `publish` looked (its subscribers are gone or about to be, after
            // their notice): nothing more of the batch is routed.
            return Progress::Done;
        }
        let (mut delivered, mut dropped, mut bytes) = (0u64, 0u64, 0u64);
        // drop_oldest: messages taken back out of sinks after they were counted delivered.
        let mut evicted = 0u64;
        let mut progress = Progress::Done;
        for sub in subscribers.iter().filter(|s| s.id >= cursor.subscriber) {
            if sub.skip_origin == cursor.origin && sub.skip_origin != 0 {
                continue;
            }
            let start = if sub.id == cursor.subscriber {
                cursor.offset.min(payloads.len())
            } else {
                0
            };
            let rest = payloads.len() - start;
            let limit = sub.limit(settings);
            let queued = match sub
                .sink
                .deliver(self.id, batch, start..payloads.len(), Some(limit))
            {
                Delivered::Closed => continue,
                Delivered::Queued(n) => n,
            };
            delivered += queued as u64;
            bytes += if queued == payloads.len() {
                cursor.bytes
            } else {
                batch.bytes(start..start + queued)
            };
            if queued == rest {
                continue;
            }
            match settings.backpressure {
                Backpressure::Block => {
                    cursor.subscriber = sub.id;
                    cursor.offset = start + queued;
                    // The subscribers after this one have none of the batch yet.
                    let last = subscribers.last().map(|s| s.id) == Some(sub.id);
                    cursor.routed = if last { cursor.offset } else { 0 };
                    progress = Progress::Blocked(Blocker::Subscriber {
                        subscriber: sub.id,
                        sink: sub.sink.clone(),
                        topic: self.clone(),
                        generation: self.membership.load(Ordering::Acquire),
                        limit,
                    });
                    break;
                }
                Backpressure::DropNewest => {
                    let lost = (rest - queued) as u64;
                    sub.sink.report_lost(self.id, lost);
                    dropped += lost;
                }
                Backpressure::DropOldest => {
                    let from = start + queued;
                    let missing = payloads.len() - from;
                    // Room for the rest of the batch, taken from the oldest messages of this
                    // topic queued for the subscriber (which may include the head of this very
                    // batch); the sink tells the subscriber of them where they were.
                    let cut = sub.sink.evict_oldest(self.id, missing);
                    // Only the newest `cut` of the rest can use the room; older ones of the
                    // batch would only be evicted again: lost after everything queued.
                    let first = payloads.len() - cut.min(missing);
                    sub.sink.report_lost(self.id, (first - from) as u64);
                    let more =
                        match sub
                            .sink
                            .deliver(self.id, batch, first..payloads.len(), Some(limit))
                        {
                            Delivered::Closed => 0,
                            Delivered::Queued(n) => n,
                        };
                    delivered += more as u64;
                    bytes += batch.bytes(first..first + more);
                    evicted += cut as u64;
                    // And (the byte limit held by other topics) the newest not queued.
                    let unqueued = payloads.len() - first - more;
                    sub.sink.report_lost(self.id, unqueued as u64);
                    // Evicted, skipped, not queued.
                    dropped += (cut + (first - from) + unqueued) as u64;
                }
                Backpressure::Disconnect => {
                    dropped += (rest - queued) as u64;
                    tracing::warn!(topic = %self.name, subscriber = sub.id, "disconnecting a slow subscriber");
                    let message = format!(
                        "subscriber fell {} messages behind on topic '{}' (backpressure = disconnect)",
                        limit, self.name
                    );
                    sub.sink
                        .end(self.id, Ending::SlowConsumer { message: &message });
                }
            }
        }
        if let Progress::Done = progress {
            cursor.routed = payloads.len();
        }
        self.counters.add(delivered, bytes);
        // One policy per call: every copy this call lost, it lost for the same reason.
        self.counters.lost(
            match settings.backpressure {
                Backpressure::DropOldest => DropReason::DropOldest,
                Backpressure::Disconnect => DropReason::SlowConsumer,
                Backpressure::Block | Backpressure::DropNewest => DropReason::DropNewest,
            },
            dropped,
        );
        if evicted > 0 {
            // Counted as delivered when queued (by this call, above, or an earlier one), so
            // the counter does not go below 0; saturating in case a concurrent publisher's
            // add has not landed yet.
            let _ =
                self.counters
                    .delivered
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(evicted))
                    });
        }
        progress
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;
    use mycelium_transport::{peek_frame, ErrorCode, Frame};

    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[test]
    fn fanout_gives_every_subscriber_every_message_in_order() {
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, a.clone(), 1000, 0);
        t.subscribe(2, b.clone(), 1000, 0);
        let m = msgs(10);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        assert_eq!(drain(&a), m);
        assert_eq!(drain(&b), m);
        assert_eq!(t.counters().published.load(Ordering::Relaxed), 10);
        assert_eq!(t.counters().delivered.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn a_blocked_fanout_publish_resumes_without_duplicates_or_gaps() {
        let t = topic(Routing::Fanout, 3, Backpressure::Block, 1);
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, a.clone(), 1000, 0);
        t.subscribe(2, b.clone(), 1000, 0);
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        let mut rounds = 0;
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            got_a.extend(drain(&a));
            got_b.extend(drain(&b));
            rounds += 1;
            assert!(rounds < 20, "publish never completed");
        }
        got_a.extend(drain(&a));
        got_b.extend(drain(&b));
        assert_eq!(got_a, m);
        assert_eq!(got_b, m);
        assert_eq!(
            t.counters().published.load(Ordering::Relaxed),
            8,
            "counted once"
        );
    }

    #[test]
    fn messages_lost_over_shared_memory_are_reported_to_each_fanout_subscriber_not_counted() {
        let t = topic(Routing::Fanout, 100, Backpressure::DropNewest, 1);
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, a.clone(), 1000, 0);
        t.subscribe(2, b.clone(), 1000, 0);
        t.report_missed(4);
        t.report_missed(2);
        let m = msgs(1);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        for outbox in [&a, &b] {
            let frames = drain_frames(outbox);
            assert_eq!(frames.len(), 2, "{frames:?}");
            assert_eq!(frames[0], Err(ErrorCode::Other(6)), "a Lagged notice first");
            assert_eq!(frames[1], Ok(m[0].clone()));
        }
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 0);
        // A loss that nothing follows is told as soon as the writer takes.
        t.report_missed(3);
        assert_eq!(drain_frames(&a), vec![Err(ErrorCode::Other(3))]);
        // A queue consumer is told nothing.
        let q = topic(Routing::Queue, 100, Backpressure::DropNewest, 1);
        let c = Arc::new(Outbox::new());
        q.subscribe(1, c.clone(), 1000, 0);
        q.report_missed(4);
        assert!(matches!(publish_all(&q, &m), Progress::Done));
        assert_eq!(drain_frames(&c), vec![Ok(m[0].clone())]);
    }

    #[test]
    fn drop_newest_drops_only_for_the_full_subscriber() {
        let t = topic(Routing::Fanout, 2, Backpressure::DropNewest, 1);
        let (slow, fast) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, slow.clone(), 1000, 0);
        t.subscribe(2, fast.clone(), 1000, 0);
        let m = msgs(5);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        // The loss is told at once, where the gap is: nothing has to follow it.
        let kept_then_told = vec![Ok(m[0].clone()), Ok(m[1].clone()), Err(ErrorCode::Other(3))];
        assert_eq!(drain_frames(&slow), kept_then_told);
        assert_eq!(
            drain_frames(&fast),
            kept_then_told,
            "the fast one also has limit 2 within one batch"
        );
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_messages_for_a_full_subscriber() {
        let t = topic(Routing::Fanout, 3, Backpressure::DropOldest, 1);
        let (slow, fast) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, slow.clone(), 1000, 0);
        t.subscribe(2, fast.clone(), 1000, 0);
        let m = msgs(20);
        let mut got_fast = Vec::new();
        // In batches of different sizes, the fast subscriber draining after each, the slow one
        // never.
        let cuts = [0, 2, 5, 6, 9, 12, 15, 18, 20];
        for batch in cuts.windows(2).map(|w| &m[w[0]..w[1]]) {
            let refs: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
            assert!(matches!(
                t.publish(refs.as_slice(), &mut PublishCursor::default()),
                Progress::Done
            ));
            got_fast.extend(drain(&fast));
        }
        assert_eq!(got_fast, m, "the subscriber that keeps up loses nothing");
        // The newest three, after one notice of everything evicted before them, however many
        // evictions it took.
        let mut expected = vec![Err(ErrorCode::Other(17))];
        expected.extend(m[17..].iter().cloned().map(Ok));
        assert_eq!(drain_frames(&slow), expected);
        let c = t.counters();
        let (delivered, dropped) = (
            c.delivered.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
        );
        assert_eq!(dropped, 17, "every message the slow subscriber lost");
        assert_eq!(
            delivered,
            20 + 3,
            "what reached the outboxes and stayed there"
        );
        assert_eq!(delivered + dropped, 2 * 20);
        // A batch larger than the limit: its own newest messages are kept.
        let t = topic(Routing::Fanout, 3, Backpressure::DropOldest, 1);
        let one = Arc::new(Outbox::new());
        t.subscribe(1, one.clone(), 1000, 0);
        assert!(matches!(publish_all(&t, &m[..2]), Progress::Done));
        assert!(matches!(publish_all(&t, &m[2..12]), Progress::Done));
        // Three evicted (told where they were), six of the batch skipped, both before m9.
        let mut expected = vec![Err(ErrorCode::Other(3)), Err(ErrorCode::Other(6))];
        expected.extend(m[9..12].iter().cloned().map(Ok));
        assert_eq!(drain_frames(&one), expected);
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 9);
        assert_eq!(t.counters().delivered.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_busy_topic_does_not_use_up_a_quiet_topics_room_on_the_same_connection() {
        // The limit counts this topic's messages in the outbox, not the connection's.
        let connection = Arc::new(Outbox::new());
        let busy = topic(Routing::Fanout, 1000, Backpressure::Block, 1);
        let quiet = Arc::new(Topic::new(8, {
            let mut c = mycelium_config::TopicDefaults::default().topic("quiet");
            c.buffer_size = 10;
            c.backpressure = Backpressure::DropNewest;
            c
        }));
        busy.subscribe(1, connection.clone(), 1000, 0);
        quiet.subscribe(2, connection.clone(), 1000, 0);
        assert!(matches!(publish_all(&busy, &msgs(20)), Progress::Done));
        assert!(matches!(publish_all(&quiet, &msgs(1)), Progress::Done));
        assert_eq!(quiet.counters().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(quiet.counters().delivered.load(Ordering::Relaxed), 1);
        assert!(matches!(publish_all(&quiet, &msgs(12)), Progress::Done));
        assert_eq!(
            quiet.counters().dropped.load(Ordering::Relaxed),
            3,
            "its own limit still holds"
        );
    }

    #[test]
    fn disconnect_closes_the_slow_subscriber_with_an_error() {
        let t = topic(Routing::Fanout, 1, Backpressure::Disconnect, 1);
        let slow = Arc::new(Outbox::new());
        t.subscribe(1, slow.clone(), 1000, 0);
        publish_all(&t, &msgs(3));
        assert!(slow.is_closed());
        let mut drained = mycelium_transport::outbox::Drained::default();
        assert!(slow.take(&mut drained), "message and error queued");
        let buf = drained.flatten();
        let (first, used) = peek_frame(&buf, usize::MAX).expect("valid").expect("whole");
        assert!(first.message().is_some());
        let (second, _) = peek_frame(&buf[used..], usize::MAX)
            .expect("valid")
            .expect("whole");
        assert!(matches!(
            second.to_frame(),
            Ok(Frame::Error {
                code: ErrorCode::SlowConsumer,
                fatal: true,
                ..
            })
        ));
    }

    #[test]
    fn a_no_echo_subscriber_skips_its_own_origin_without_counting_a_drop() {
        let t = topic(Routing::Fanout, 100, Backpressure::DropNewest, 1);
        let (mine, other) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe_skipping(1, mine.clone(), 1000, 0, 42);
        t.subscribe(2, other.clone(), 1000, 0);
        let m = msgs(3);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let own = PublishCursor::from_origin(42);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut own.clone()),
            Progress::Done
        ));
        assert!(drain(&mine).is_empty(), "its own messages skip it");
        assert_eq!(drain(&other), m);
        for mut cursor in [PublishCursor::from_origin(7), PublishCursor::default()] {
            assert!(matches!(
                t.publish(refs.as_slice(), &mut cursor),
                Progress::Done
            ));
            assert_eq!(drain(&mine), m, "others' messages reach it");
        }
        let c = t.counters();
        assert_eq!(
            c.dropped.load(Ordering::Relaxed),
            0,
            "a skipped copy is no drop"
        );
        assert_eq!(c.delivered.load(Ordering::Relaxed), 3 + 2 * 6);
    }

    #[test]
    fn enveloped_items_reach_a_socket_subscriber_as_deliver_envelope_frames() {
        use crate::core::batch::Item;
        use mycelium_transport::frame::kind;
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let items = [
            Item::plain(b"plain"),
            Item {
                bytes: b"\x00enveloped",
                enveloped: true,
            },
        ];
        assert!(matches!(
            t.publish(&items[..], &mut PublishCursor::default()),
            Progress::Done
        ));
        assert_eq!(
            drain_kinds(&a),
            vec![
                (kind::DELIVER, b"plain".to_vec()),
                (kind::DELIVER_ENVELOPE, b"\x00enveloped".to_vec())
            ]
        );
    }
}
