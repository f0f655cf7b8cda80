//! A queue topic's backlog: messages published while no consumer had credit, oldest first.

use std::collections::VecDeque;
use std::ops::Range;

use mycelium_config::Routing;

use crate::core::batch::{Item, OwnedItem};
use crate::core::topic::drops::DropReason;
use crate::core::topic::queue::{refresh_relayed, QueueState};
use crate::core::topic::{Batch, Topic};

impl Topic {
    /// Messages waiting in the backlog for a consumer (always 0 for fanout).
    pub(crate) fn backlog_len(&self) -> usize {
        match self.routing {
            Routing::Fanout => 0,
            Routing::Queue => self.queue.lock().backlog.len(),
        }
    }

    /// Puts `messages` (dealt to a consumer that left before reading them, oldest first) back
    /// at the head of the backlog, ahead of everything queued (which is younger: messages are
    /// dealt only while the backlog is empty, or from its head), and deals them again. They
    /// may take the backlog beyond `buffer_size` for a moment: they were accepted already.
    /// Each keeps its envelope, if it has one.
    pub(crate) fn requeue_front(&self, messages: Vec<OwnedItem>) {
        if self.routing != Routing::Queue || messages.is_empty() {
            return;
        }
        let mut state = self.queue.lock();
        if self.is_removed() {
            // Nobody is left to deal them to (the removal counted the backlog it dropped).
            self.counters
                .lost(DropReason::TopicRemoved, messages.len() as u64);
            return;
        }
        for message in messages.into_iter().rev() {
            state.backlog.push_front(message);
        }
        self.queue.backlogged.notify_one();
        self.drain_backlog(&mut state);
    }

    /// Deals what the backlog holds to consumers with credit now: for shared-memory
    /// consumers, whose reads the topic does not hear about.
    pub(crate) fn drain_backlog_now(&self) {
        if self.routing == Routing::Queue {
            let mut state = self.queue.lock();
            if !state.backlog.is_empty() {
                self.drain_backlog(&mut state);
            }
        }
    }

    /// Resolves once messages have entered the backlog since the last call (or right away if
    /// some are waiting there). For the single task that drains it into the relay.
    pub(crate) async fn wait_backlogged(&self) {
        let notified = self.queue.backlogged.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.backlog_len() > 0 {
            return;
        }
        notified.await;
    }

    /// Moves backlog messages to consumers with credit, oldest first, a run per consumer.
    pub(super) fn drain_backlog(&self, state: &mut QueueState) {
        refresh_relayed(state, false);
        let before = state.backlog.len();
        let (mut delivered, mut bytes) = (0u64, 0u64);
        let QueueState {
            consumers,
            next,
            backlog,
            relay,
            ..
        } = state;
        loop {
            let credit: usize = consumers.iter().map(|c| c.credit as usize).sum();
            let placed = {
                let run: Vec<Item<'_>> = backlog.iter().take(credit).map(OwnedItem::item).collect();
                Self::deal_to(
                    consumers,
                    next,
                    relay.as_deref(),
                    self.id,
                    run.as_slice(),
                    0,
                )
            };
            let Some(placed) = placed else {
                break;
            };
            bytes += backlog
                .drain(..placed)
                .fold(0u64, |n, m| n + m.bytes.len() as u64);
            delivered += placed as u64;
        }
        self.counters.add(delivered, bytes);
        if state.backlog.len() < before && std::mem::take(&mut state.space_wanted) {
            self.queue.space.notify_waiters();
        }
    }
}

/// Copies `payloads[range]` into one allocation and queues a zero-copy slice of it per
/// message (with whether it is enveloped), so a burst that lands in the backlog costs one
/// allocation, not one per message. (The backlog copies even a shared run: it may wait long,
/// and must not pin read buffers.)
pub(super) fn push_copies<B: Batch + ?Sized>(
    backlog: &mut VecDeque<OwnedItem>,
    payloads: &B,
    range: Range<usize>,
) {
    let total = range.clone().map(|i| payloads.item(i).bytes.len()).sum();
    let mut block = bytes::BytesMut::with_capacity(total);
    for i in range.clone() {
        block.extend_from_slice(payloads.item(i).bytes);
    }
    let block = block.freeze();
    let mut at = 0;
    for i in range {
        let item = payloads.item(i);
        let len = item.bytes.len();
        backlog.push_back(OwnedItem::new(block.slice(at..at + len), item.enveloped));
        at += len;
    }
}

#[cfg(test)]
mod tests {

    use std::sync::Arc;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;

    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[test]
    fn the_backlog_drains_in_order_across_consumers_as_credit_returns() {
        let t = topic(Routing::Queue, 1000, Backpressure::Block, 10);
        let m = msgs(100);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        assert_eq!(t.backlog_len(), 100);
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, a.clone(), 1000, 0);
        t.subscribe(2, b.clone(), 1000, 0);
        let mut got = Vec::new();
        while got.len() < 100 {
            let (from_a, from_b) = (drain(&a), drain(&b));
            assert!(from_a.len() <= 10 && from_b.len() <= 10, "credit exceeded");
            assert!(
                !from_a.is_empty() || !from_b.is_empty(),
                "stalled at {}",
                got.len()
            );
            t.add_credit(1, from_a.len() as u32);
            t.add_credit(2, from_b.len() as u32);
            got.extend(from_a);
            got.extend(from_b);
        }
        got.sort();
        let mut expected = m.clone();
        expected.sort();
        assert_eq!(got, expected);
        assert_eq!(t.backlog_len(), 0);
    }

    #[test]
    fn queue_backlog_waits_for_the_first_consumer_and_blocks_when_full() {
        let t = topic(Routing::Queue, 3, Backpressure::Block, 10);
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Backlog(_))
        ));
        assert_eq!(t.backlog_len(), 3);
        let c = Arc::new(Outbox::new());
        t.subscribe(1, c.clone(), 1000, 0);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(drain(&c), m, "backlog first, in publish order");
    }

    #[test]
    fn the_backlog_keeps_each_message_enveloped_or_plain_also_when_requeued() {
        use crate::core::batch::{Item, OwnedItem};
        use mycelium_transport::frame::kind;
        let t = topic(Routing::Queue, 100, Backpressure::Block, 10);
        let items = [
            Item::plain(b"p"),
            Item {
                bytes: b"\x00e",
                enveloped: true,
            },
        ];
        assert!(matches!(
            t.publish(&items[..], &mut PublishCursor::default()),
            Progress::Done
        ));
        assert_eq!(t.backlog_len(), 2);
        t.requeue_front(vec![OwnedItem::new(
            bytes::Bytes::from_static(b"\x00back"),
            true,
        )]);
        let c = Arc::new(Outbox::new());
        t.subscribe(1, c.clone(), 1000, 0);
        assert_eq!(
            drain_kinds(&c),
            vec![
                (kind::DELIVER_ENVELOPE, b"\x00back".to_vec()),
                (kind::DELIVER, b"p".to_vec()),
                (kind::DELIVER_ENVELOPE, b"\x00e".to_vec()),
            ]
        );
    }
}
