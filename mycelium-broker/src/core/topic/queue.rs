//! Queue routing: each message to exactly one consumer with credit, dealt round-robin.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use mycelium_config::{Backpressure, Routing, TopicConfig};
use tokio::sync::Notify;

use crate::core::batch::OwnedItem;
use crate::core::delivery::{Delivered, Delivery};
use crate::core::relay::QueueRelay;
use crate::core::topic::backlog::push_copies;
use crate::core::topic::{
    Batch, Blocker, DropReason, Progress, PublishCursor, SubscriberId, Topic, TopicId,
};

/// Where a queue consumer's messages go.
#[derive(Debug)]
pub(super) enum Sink {
    /// A consumer with a [`Delivery`] of its own (socket, in-process): its subscription and
    /// the way to it.
    Direct(SubscriberId, Arc<dyn Delivery>),
    /// A shared-memory consumer reached through the topic's [`QueueRelay`]: its slot there.
    Relayed(u32),
}

#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) sink: Sink,
    /// Direct consumers: granted minus taken, returned by the consumer. Relayed consumers:
    /// recomputed from the relay before each routing call (`refresh_relayed`).
    pub(super) credit: u32,
    /// The most credit this consumer may hold: what it was granted at subscribe.
    pub(super) prefetch: u32,
}

#[derive(Debug, Default)]
pub(super) struct QueueState {
    pub(super) consumers: Vec<Consumer>,
    /// Reaches the [`Sink::Relayed`] consumers; `None` while the topic has none.
    pub(super) relay: Option<Arc<dyn QueueRelay>>,
    /// Index into `consumers` where the next deal starts (round-robin).
    pub(super) next: usize,
    /// Messages published while no consumer had credit, oldest first, each with whether it
    /// carries an envelope.
    pub(super) backlog: VecDeque<OwnedItem>,
    /// A publisher waits for the backlog to shrink.
    pub(super) space_wanted: bool,
}

#[derive(Debug, Default)]
pub(super) struct QueueRouting {
    pub(super) state: Mutex<QueueState>,
    /// Wakes publishers blocked on a full backlog.
    pub(super) space: Notify,
    /// Signalled (one stored permit) whenever messages enter the backlog, for the task that
    /// drains it into the [`QueueRelay`] (`Topic::wait_backlogged`).
    pub(super) backlogged: Notify,
}

impl QueueRouting {
    pub(super) fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every mutation below leaves the state consistent between statements that can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the backlog is below the topic's `buffer_size` (as `settings` says at each
    /// look), or the topic is removed (which empties it).
    pub(super) async fn wait_for_space(&self, settings: &ArcSwap<TopicConfig>) {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.backlog.len() < settings.load().buffer_size {
                    return;
                }
                state.space_wanted = true;
            }
            notified.await;
        }
    }
}

impl Topic {
    /// Sets (or, with `None`, removes) the [`QueueRelay`] that reaches this queue topic's
    /// shared-memory consumers. Ignored on fanout topics.
    pub(crate) fn set_queue_relay(&self, relay: Option<Arc<dyn QueueRelay>>) {
        if self.routing == Routing::Queue {
            self.queue.lock().relay = relay;
        }
    }

    /// Adds the shared-memory consumer holding `slot` of the [`QueueRelay`] to this queue
    /// topic (ignored on fanout topics); the backlog drains into it at once if it can.
    pub(crate) fn subscribe_relayed(&self, slot: u32) {
        if self.routing != Routing::Queue {
            return;
        }
        let prefetch = self.granted_prefetch(0);
        let mut state = self.queue.lock();
        if self.is_removed() {
            return;
        }
        state.consumers.push(Consumer {
            sink: Sink::Relayed(slot),
            credit: 0,
            prefetch,
        });
        self.drain_backlog(&mut state);
    }

    /// Removes the shared-memory consumer holding `slot`; returns whether it was there. Once
    /// this returns, nothing more is dealt to it.
    pub(crate) fn unsubscribe_relayed(&self, slot: u32) -> bool {
        if self.routing != Routing::Queue {
            return false;
        }
        let mut state = self.queue.lock();
        let before = state.consumers.len();
        state
            .consumers
            .retain(|c| !matches!(c.sink, Sink::Relayed(s) if s == slot));
        if state.next >= state.consumers.len() {
            state.next = 0;
        }
        state.consumers.len() != before
    }

    /// The credit a queue consumer asking for `requested` gets: the topic's `prefetch` when it
    /// asks for 0 or more, never less than 1.
    pub(crate) fn granted_prefetch(&self, requested: u32) -> u32 {
        let prefetch = self.settings.load().prefetch;
        let granted = if requested == 0 {
            prefetch
        } else {
            requested.min(prefetch)
        };
        granted.max(1)
    }

    /// A queue consumer returns `credit` after processing messages; the backlog drains into it.
    /// Returns false if `id` is not a consumer of this topic. Credit never exceeds what was
    /// granted at subscribe, so a peer cannot make the broker queue unboundedly toward it.
    pub fn add_credit(&self, id: SubscriberId, credit: u32) -> bool {
        if self.routing != Routing::Queue {
            return false;
        }
        let mut state = self.queue.lock();
        let Some(consumer) = state
            .consumers
            .iter_mut()
            .find(|c| matches!(c.sink, Sink::Direct(own, _) if own == id))
        else {
            return false;
        };
        consumer.credit = consumer
            .credit
            .saturating_add(credit)
            .min(consumer.prefetch);
        self.drain_backlog(&mut state);
        true
    }

    pub(super) fn publish_queue<B: Batch + ?Sized>(
        self: &Arc<Self>,
        payloads: &B,
        cursor: &mut PublishCursor,
        settings: &TopicConfig,
    ) -> Progress {
        let mut state = self.queue.lock();
        if self.is_removed() {
            // Removed since `publish` looked: the backlog must stay empty.
            return Progress::Done;
        }
        // Messages the broker's reader took from a shared-memory publisher's ring were dealt
        // to the broker for its socket consumers: they go to those, not back to shared memory.
        refresh_relayed(&mut state, cursor.skip_relay);
        let (mut delivered, mut bytes) = (0u64, 0u64);
        let (mut dropped_oldest, mut dropped_newest) = (0u64, 0u64);
        let from = cursor.offset.min(payloads.len());
        let mut i = from;
        let mut progress = Progress::Done;
        while i < payloads.len() {
            if state.backlog.is_empty() {
                if let Some(dealt) = Self::deal(&mut state, self.id, payloads, i) {
                    delivered += dealt as u64;
                    bytes += payloads.view().bytes(i..i + dealt);
                    i += dealt;
                    continue;
                }
            }
            let room = settings.buffer_size.saturating_sub(state.backlog.len());
            if room > 0 {
                let end = payloads.len().min(i + room);
                push_copies(&mut state.backlog, payloads, i..end);
                self.queue.backlogged.notify_one();
                i = end;
                continue;
            }
            match settings.backpressure {
                Backpressure::Block => {
                    cursor.offset = i;
                    progress = Progress::Blocked(Blocker::Backlog(self.clone()));
                    break;
                }
                Backpressure::DropOldest => {
                    // The oldest waiting message makes room for this one: the backlog holds
                    // the newest `buffer_size`. Each message still goes to at most one
                    // consumer; a dropped one goes to none, and is counted.
                    if state.backlog.pop_front().is_some() {
                        dropped_oldest += 1;
                    }
                    let end = i + 1;
                    push_copies(&mut state.backlog, payloads, i..end);
                    i = end;
                }
                Backpressure::DropNewest | Backpressure::Disconnect => {
                    dropped_newest += 1;
                    i += 1;
                }
            }
        }
        // Dealt, backlogged, or dropped by the policy, as any message of the topic may be.
        cursor.routed += i - from;
        drop(state);
        self.counters.add(delivered, bytes);
        self.counters.lost(DropReason::DropOldest, dropped_oldest);
        self.counters.lost(DropReason::DropNewest, dropped_newest);
        progress
    }

    /// Hands a leading run of `payloads[from..]` to the next consumer with credit,
    /// round-robin, at most an even share of the run so that one batch is spread over every
    /// ready consumer. Returns how many were placed, or None when no consumer has credit.
    pub(super) fn deal<B: Batch + ?Sized>(
        state: &mut QueueState,
        topic_id: TopicId,
        payloads: &B,
        from: usize,
    ) -> Option<usize> {
        Self::deal_to(
            &mut state.consumers,
            &mut state.next,
            state.relay.as_deref(),
            topic_id,
            payloads,
            from,
        )
    }

    /// [`Self::deal`] over the parts of the state it needs, so that the payloads may borrow
    /// the backlog.
    pub(super) fn deal_to<B: Batch + ?Sized>(
        consumers: &mut [Consumer],
        next: &mut usize,
        relay: Option<&dyn QueueRelay>,
        topic_id: TopicId,
        payloads: &B,
        from: usize,
    ) -> Option<usize> {
        let left = payloads.len().saturating_sub(from);
        loop {
            let ready = consumers.iter().filter(|c| c.credit > 0).count();
            if ready == 0 || left == 0 {
                return None;
            }
            let share = left.div_ceil(ready);
            let n = consumers.len();
            let start = *next % n;
            let index = (0..n)
                .map(|k| (start + k) % n)
                .find(|&k| consumers[k].credit > 0)?;
            *next = (index + 1) % n;
            let consumer = &mut consumers[index];
            let take = share.min(consumer.credit as usize).min(left);
            let sink = match &consumer.sink {
                Sink::Direct(_, sink) => sink,
                Sink::Relayed(slot) => {
                    let placed = relay.map_or(0, |relay| {
                        let mut each = (from..from + take).map(|i| payloads.item(i));
                        relay.deal(*slot, &mut each)
                    });
                    // Fewer than asked: its ring is full (a slower shared-memory consumer
                    // holds it). No more for it in this call; the rest goes elsewhere.
                    consumer.credit = if placed < take {
                        0
                    } else {
                        // `placed` == `take` ≤ credit.
                        consumer.credit - placed as u32
                    };
                    if placed > 0 {
                        return Some(placed);
                    }
                    continue;
                }
            };
            // Credit, not the sink's message limit, bounds what a consumer may hold: it was granted
            // for exactly this, and refusing here would strand the backlog.
            match sink.deliver(topic_id, payloads.view(), from..from + take, None) {
                Delivered::Queued(placed) => {
                    // `placed` == `take` ≤ credit, so this cannot underflow.
                    consumer.credit -= placed as u32;
                    return Some(placed);
                }
                Delivered::Closed => {
                    // The consumer's connection is gone; its cleanup will unsubscribe it, but it
                    // must not take messages meanwhile.
                    consumer.credit = 0;
                }
            }
        }
    }
}

/// Sets each shared-memory consumer's credit from what it has still to read (0 with `skip`,
/// or without a relay, or when its slot is no longer held).
pub(super) fn refresh_relayed(state: &mut QueueState, skip: bool) {
    let QueueState {
        consumers, relay, ..
    } = state;
    for consumer in consumers.iter_mut() {
        if let Sink::Relayed(slot) = consumer.sink {
            let unread = match relay {
                Some(relay) if !skip => relay.unread(slot),
                _ => None,
            };
            consumer.credit = unread.map_or(0, |unread| {
                consumer
                    .prefetch
                    .saturating_sub(u32::try_from(unread).unwrap_or(u32::MAX))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;

    use crate::core::batch::OwnedItem;
    use crate::core::relay::QueueRelay;
    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[test]
    fn drop_oldest_on_a_queue_topic_keeps_the_newest_in_the_backlog() {
        let t = topic(Routing::Queue, 3, Backpressure::DropOldest, 10);
        let m = msgs(8);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        assert_eq!(t.backlog_len(), 3);
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 5);
        let c = Arc::new(Outbox::new());
        t.subscribe(1, c.clone(), 1000, 0);
        assert_eq!(drain(&c), m[5..].to_vec(), "each once, oldest first");
    }

    #[test]
    fn queue_gives_each_message_to_exactly_one_consumer_within_credit() {
        let t = topic(Routing::Queue, 100, Backpressure::Block, 4);
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        assert_eq!(t.subscribe(1, a.clone(), 1000, 0), Some(4));
        assert_eq!(t.subscribe(2, b.clone(), 1000, 0), Some(4));
        let m = msgs(20);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        let (got_a, got_b) = (drain(&a), drain(&b));
        assert_eq!(got_a.len(), 4);
        assert_eq!(got_b.len(), 4);
        assert_eq!(t.backlog_len(), 12);
        assert!(t.add_credit(1, 4));
        assert!(t.add_credit(2, 1000), "credit is capped at the prefetch");
        let (more_a, more_b) = (drain(&a), drain(&b));
        assert_eq!(more_a.len() + more_b.len(), 8);
        let mut all: Vec<Vec<u8>> = got_a
            .into_iter()
            .chain(got_b)
            .chain(more_a)
            .chain(more_b)
            .collect();
        all.sort();
        let mut expected = m[..16].to_vec();
        expected.sort();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_queue_consumer_whose_outbox_is_byte_full_still_gets_what_its_credit_allows() {
        // Credit, not the byte limit, bounds a queue consumer: a byte-full outbox that refused
        // credited deliveries would leave the publish looping, placing nothing, under the
        // topic's lock.
        let t = topic(Routing::Queue, 100, Backpressure::Block, 4);
        let c = Arc::new(Outbox::new());
        let other_topic = vec![0u8; mycelium_transport::outbox::OUTBOX_MAX_BYTES];
        c.append_messages(99, &[&other_topic], 10);
        t.subscribe(1, c.clone(), 1000, 0);
        assert!(matches!(publish_all(&t, &msgs(3)), Progress::Done));
        assert_eq!(t.backlog_len(), 0);
        assert_eq!(c.queued_messages(), 4);
    }

    /// A relay whose consumers read nothing: `room` messages fit in all, then it is full.
    #[derive(Debug, Default)]
    struct FakeQueueRelay {
        got: Mutex<Vec<(u32, Vec<u8>)>>,
        room: usize,
    }

    impl QueueRelay for FakeQueueRelay {
        fn detach_laggards(&self, _why: &str) -> usize {
            0
        }

        fn unread(&self, slot: u32) -> Option<usize> {
            Some(
                self.got
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(s, _)| *s == slot)
                    .count(),
            )
        }

        fn deal(
            &self,
            slot: u32,
            messages: &mut dyn Iterator<Item = crate::core::batch::Item<'_>>,
        ) -> usize {
            let mut got = self.got.lock().unwrap();
            let mut taken = 0;
            for payload in messages.map(|item| item.bytes) {
                if got.len() >= self.room {
                    break;
                }
                got.push((slot, payload.to_vec()));
                taken += 1;
            }
            taken
        }
    }

    #[test]
    fn relayed_consumers_share_the_queue_and_a_full_relay_sends_the_rest_elsewhere() {
        let t = topic(Routing::Queue, 1000, Backpressure::Block, 4);
        let relay = Arc::new(FakeQueueRelay {
            room: 6,
            ..FakeQueueRelay::default()
        });
        t.set_queue_relay(Some(relay.clone()));
        t.subscribe_relayed(0);
        t.subscribe_relayed(1);
        let socket = Arc::new(Outbox::new());
        t.subscribe(9, socket.clone(), 1000, 0);
        assert_eq!(
            t.subscriber_count(),
            1,
            "only the socket consumer counts there"
        );
        let m = msgs(20);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        let relayed = relay.got.lock().unwrap().clone();
        assert_eq!(relayed.len(), 6, "the relay took what fit");
        for slot in [0, 1] {
            let mine = relayed.iter().filter(|(s, _)| *s == slot).count();
            assert!(
                (1..=4).contains(&mine),
                "slot {slot}: {mine}, within its credit"
            );
        }
        let from_socket = drain(&socket);
        assert_eq!(from_socket.len(), 4, "the socket consumer's credit");
        assert_eq!(t.backlog_len(), 10, "the rest waits");
        let requeued: Vec<OwnedItem> = relay
            .got
            .lock()
            .unwrap()
            .drain(..)
            .filter(|(slot, _)| *slot == 1)
            .map(|(_, p)| OwnedItem::new(Bytes::from(p), false))
            .collect();
        // Consumer 1 leaves with what it had: dealt again, first, to whoever has credit.
        assert!(t.unsubscribe_relayed(1));
        t.requeue_front(requeued.clone());
        let again: Vec<Vec<u8>> = relay
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        assert!(relay.got.lock().unwrap().iter().all(|(slot, _)| *slot == 0));
        assert_eq!(
            again[..requeued.len().min(again.len())],
            requeued[..requeued.len().min(again.len())]
                .iter()
                .map(|b| b.bytes.to_vec())
                .collect::<Vec<_>>(),
            "requeued messages go first"
        );
        assert_eq!(
            t.counters().dropped.load(Ordering::Relaxed),
            0,
            "nothing dropped for a full relay"
        );
    }
}
