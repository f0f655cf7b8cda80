//! The topic itself: its settings, its subscribers, and the entry points of routing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use mycelium_config::{Routing, TopicConfig};
use mycelium_transport::MessageRules;
use tokio::sync::Notify;

use crate::core::acl::{Action, PeerIdentity, TopicAcl};
use crate::core::delivery::{Delivery, Ending};
use crate::core::durable::TopicLog;
use crate::core::latency::LatencyRecorder;
use crate::core::relay::Relay;
use crate::core::topic::counters::TopicCounters;
use crate::core::topic::drops::DropReason;
use crate::core::topic::fanout::FanoutSubscriber;
use crate::core::topic::latency::TopicLatency;
use crate::core::topic::queue::{Consumer, QueueRouting, Sink};
use crate::core::topic::usage::TopicUsage;
use crate::core::topic::{Batch, Progress, PublishCursor, StorageRefusal, SubscriberId, TopicId};

/// One topic; see the module docs.
#[derive(Debug)]
pub struct Topic {
    pub(super) id: TopicId,
    /// Fixed for the topic's life, as is `routing`: a reload may change every other setting.
    pub(super) name: String,
    pub(super) routing: Routing,
    /// The settings now; a reload swaps them whole ([`Topic::set_config`]), and each routing
    /// call reads them once, so a batch is never routed on half of an old and half of a new
    /// config.
    pub(super) settings: ArcSwap<TopicConfig>,
    /// The settings' access lists, resolved; replaced with them.
    pub(super) acl: ArcSwap<TopicAcl>,
    /// Set once by [`Topic::remove`]: publishes route nothing, subscribes are refused.
    pub(super) removed: AtomicBool,
    pub(super) counters: TopicCounters,
    /// Fanout subscribers, sorted by id; copied on write so publishers read a snapshot without
    /// holding the lock while they append.
    pub(super) fanout: RwLock<Arc<[FanoutSubscriber]>>,
    pub(super) queue: QueueRouting,
    /// Bumped whenever a subscriber leaves; a publisher blocked on that subscriber watches it.
    pub(super) membership: AtomicU64,
    /// Wakes publishers blocked on a subscriber when any subscriber leaves.
    pub(super) membership_changed: Notify,
    /// Fanout only: subscribers on another path, if any.
    pub(super) relay: RwLock<Option<Arc<dyn Relay>>>,
    /// Whether it was auto-created, its publishers, when it was last used.
    pub(super) usage: TopicUsage,
    /// Its publish-to-deliver latency, and the broker-wide recorder.
    pub(super) latency: TopicLatency,
    /// A durable topic's log: every batch is appended before it is routed. Fixed for the
    /// topic's life (making a topic durable or not takes a restart).
    pub(super) log: Option<Arc<TopicLog>>,
}

impl Topic {
    /// A topic with no subscribers, recording latency nowhere else (and not at all until
    /// told to).
    #[cfg(test)]
    pub(crate) fn new(id: TopicId, config: TopicConfig) -> Topic {
        Topic::with_recorder(id, config, Arc::default())
    }

    /// A topic with no subscribers, whose latency samples also go to `recorder` (the
    /// registry's, which says whether to record).
    pub(crate) fn with_recorder(
        id: TopicId,
        config: TopicConfig,
        recorder: Arc<LatencyRecorder>,
    ) -> Topic {
        Topic {
            id,
            name: config.name.clone(),
            routing: config.routing,
            acl: ArcSwap::from_pointee(resolve_acl(&config)),
            settings: ArcSwap::from_pointee(config),
            removed: AtomicBool::new(false),
            counters: TopicCounters::default(),
            fanout: RwLock::new(Arc::from(Vec::new())),
            queue: QueueRouting::default(),
            membership: AtomicU64::new(0),
            membership_changed: Notify::new(),
            relay: RwLock::new(None),
            usage: TopicUsage::default(),
            latency: TopicLatency::new(recorder),
            log: None,
        }
    }

    /// The topic, keeping its messages in `log` (a durable topic).
    pub(crate) fn with_log(self, log: Arc<TopicLog>) -> Topic {
        Topic {
            log: Some(log),
            ..self
        }
    }

    /// A durable topic's log; `None` for a topic kept in memory only.
    pub fn log(&self) -> Option<&Arc<TopicLog>> {
        self.log.as_ref()
    }

    /// The topic's id.
    pub fn id(&self) -> TopicId {
        self.id
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the topic routes: fixed for its life.
    pub fn routing(&self) -> Routing {
        self.routing
    }

    /// The topic's settings now (a reload may replace them at any moment: read them once per
    /// decision).
    pub fn config(&self) -> Arc<TopicConfig> {
        self.settings.load_full()
    }

    /// What the topic asks of messages now (`stamp`, `max_headers`, `max_header_bytes`), as a
    /// `TopicAck` tells publishers and subscribers.
    pub fn message_rules(&self) -> MessageRules {
        let config = self.settings.load();
        MessageRules {
            stamp: config.stamp,
            max_headers: config.max_headers,
            max_header_bytes: config.max_header_bytes,
        }
    }

    /// Replaces the topic's settings, for every message routed from now on (a hot reload).
    /// Messages already queued stay queued, whatever the new `buffer_size`. `name` and
    /// `routing` cannot change: a config naming another routing is refused.
    pub(crate) fn set_config(&self, config: TopicConfig) -> Result<(), Box<TopicConfig>> {
        if config.name != self.name || config.routing != self.routing {
            return Err(Box::new(config));
        }
        if let (Some(log), Some(durability)) = (&self.log, config.durability()) {
            log.reconfigure(&durability);
        }
        self.acl.store(Arc::new(resolve_acl(&config)));
        self.settings.store(Arc::new(config));
        // A publisher waiting for backlog room looks again under the new size.
        if self.routing == Routing::Queue {
            self.queue.space.notify_waiters();
        }
        Ok(())
    }

    /// Whether `peer` may do `action` on this topic now; the refusal's text if not.
    pub fn check_access(&self, action: Action, peer: &PeerIdentity) -> Result<(), String> {
        let acl = self.acl.load();
        if acl.allows(action, peer) {
            Ok(())
        } else {
            Err(acl.refusal(action, &self.name, peer))
        }
    }

    /// Whether `Topic::remove` was called.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Ends the topic (a reload removed it from the config): every subscriber reached through
    /// a [`Delivery`] is told (`TopicRemoved`, non-fatal) after what was already routed to it,
    /// and is dropped; the backlog of a queue topic is dropped (counted); publishers blocked
    /// on it resume and route nothing. Returns the messages dropped. Shared-memory
    /// attachments are ended by their owner (`ShmRings::remove_topic`). Idempotent.
    pub(crate) fn remove(&self) -> u64 {
        if self.removed.swap(true, Ordering::AcqRel) {
            return 0;
        }
        let message = format!(
            "topic '{}' was removed from the broker's config; this subscription has ended",
            self.name
        );
        let notice = Ending::TopicRemoved { message: &message };
        let mut dropped = 0;
        match self.routing {
            Routing::Fanout => {
                let mut guard = self.fanout.write().unwrap_or_else(|p| p.into_inner());
                for sub in guard.iter() {
                    sub.sink.end(self.id, notice);
                }
                *guard = Arc::from(Vec::new());
            }
            Routing::Queue => {
                let mut state = self.queue.lock();
                for consumer in &state.consumers {
                    if let Sink::Direct(_, sink) = &consumer.sink {
                        sink.end(self.id, notice);
                    }
                }
                state.consumers.clear();
                state.next = 0;
                state.relay = None;
                dropped = state.backlog.len() as u64;
                state.backlog.clear();
                state.space_wanted = false;
                drop(state);
                self.queue.space.notify_waiters();
                // Wakes the backlog's drain task, which sees the topic removed and ends.
                self.queue.backlogged.notify_one();
            }
        }
        *self.relay.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.counters.lost(DropReason::TopicRemoved, dropped);
        // SYNC POINT: pairs with the Acquire load in `Blocker::wait`: a publisher blocked on
        // one of the subscribers dropped above resumes, and finds the topic removed.
        self.membership.fetch_add(1, Ordering::Release);
        self.membership_changed.notify_waiters();
        dropped
    }

    /// Current subscribers (fanout) or consumers (queue) reached one by one through a
    /// [`Delivery`] (socket, in-process) (shared-memory consumers of a queue, `Self::subscribe_relayed`, are not
    /// counted here).
    pub fn subscriber_count(&self) -> usize {
        match self.routing {
            Routing::Fanout => self.fanout_snapshot().len(),
            Routing::Queue => self
                .queue
                .lock()
                .consumers
                .iter()
                .filter(|c| matches!(c.sink, Sink::Direct(..)))
                .count(),
        }
    }

    /// Adds a subscriber reached through `sink`. `channel_capacity` caps how many messages of
    /// the topic it may hold queued; `prefetch` is the credit a queue consumer asks for (0 =
    /// the topic's).
    ///
    /// Returns the credit granted (0 for fanout), or `None` when the topic was removed (the
    /// check is made under the lock `Topic::remove` takes, so a subscriber is either refused
    /// or told of the removal, never left waiting on a dead topic).
    pub fn subscribe(
        &self,
        id: SubscriberId,
        sink: Arc<dyn Delivery>,
        channel_capacity: usize,
        prefetch: u32,
    ) -> Option<u32> {
        self.subscribe_skipping(id, sink, channel_capacity, prefetch, 0)
    }

    /// [`Topic::subscribe`], for a fanout subscriber that does not take the batches
    /// published with origin `skip_origin` (see [`PublishCursor::from_origin`]): no echo of
    /// its own publishes. 0 skips nothing; queue topics ignore it (their callers refuse no
    /// echo, which cannot mean anything when each message goes to one consumer).
    pub fn subscribe_skipping(
        &self,
        id: SubscriberId,
        sink: Arc<dyn Delivery>,
        channel_capacity: usize,
        prefetch: u32,
        skip_origin: u64,
    ) -> Option<u32> {
        match self.routing {
            Routing::Fanout => {
                let mut guard = self.fanout.write().unwrap_or_else(|p| p.into_inner());
                if self.is_removed() {
                    return None;
                }
                let mut list: Vec<FanoutSubscriber> = guard.iter().cloned().collect();
                list.push(FanoutSubscriber {
                    id,
                    sink,
                    capacity: channel_capacity,
                    skip_origin,
                });
                list.sort_by_key(|s| s.id);
                *guard = Arc::from(list);
                Some(0)
            }
            Routing::Queue => {
                let granted = self.granted_prefetch(prefetch);
                let mut state = self.queue.lock();
                if self.is_removed() {
                    return None;
                }
                state.consumers.push(Consumer {
                    sink: Sink::Direct(id, sink),
                    credit: granted,
                    prefetch: granted,
                });
                self.drain_backlog(&mut state);
                Some(granted)
            }
        }
    }

    /// Removes a subscription. Returns false if it was not subscribed.
    pub fn unsubscribe(&self, id: SubscriberId) -> bool {
        match self.routing {
            Routing::Fanout => {
                let mut guard = self.fanout.write().unwrap_or_else(|p| p.into_inner());
                if !guard.iter().any(|s| s.id == id) {
                    return false;
                }
                let list: Vec<FanoutSubscriber> =
                    guard.iter().filter(|s| s.id != id).cloned().collect();
                *guard = Arc::from(list);
                drop(guard);
                // SYNC POINT: pairs with the Acquire load in `Blocker::wait`.
                self.membership.fetch_add(1, Ordering::Release);
                self.membership_changed.notify_waiters();
                true
            }
            Routing::Queue => {
                let mut state = self.queue.lock();
                let before = state.consumers.len();
                state
                    .consumers
                    .retain(|c| !matches!(c.sink, Sink::Direct(own, _) if own == id));
                if state.next >= state.consumers.len() {
                    state.next = 0;
                }
                state.consumers.len() != before
            }
        }
    }

    /// Routes `payloads` (already checked against `max_message_size`) from `cursor` on.
    pub fn publish<B: Batch + ?Sized>(
        self: &Arc<Self>,
        payloads: &B,
        cursor: &mut PublishCursor,
    ) -> Progress {
        if self.is_removed() {
            // Nobody is left to route to; the caller tells its publisher (`TopicRemoved`).
            return Progress::Done;
        }
        // A durable topic stores the batch before any of it is routed: what a subscriber got
        // is in the log, and a batch the log refuses reaches nobody.
        if let Some(log) = &self.log {
            if cursor.logged.is_none() {
                match log.append(payloads) {
                    Ok(offsets) => cursor.logged = Some(offsets),
                    Err(error) => {
                        return Progress::Refused(StorageRefusal::new(self.name(), &error));
                    }
                }
            }
        }
        // Read once: the whole call routes on one version of the settings (a guard, which
        // costs no reference count on the routing path).
        let settings = self.settings.load();
        if !cursor.counted {
            cursor.counted = true;
            let batch = payloads.view();
            cursor.bytes = batch.bytes(0..batch.len());
            self.counters.published(batch.len() as u64, cursor.bytes);
            if cursor.skip_relay {
                cursor.relayed = payloads.len();
            }
        }
        // The relay first, as if it were the first subscriber: while it holds the batch back
        // no direct subscriber has any of it, so on resume each gets it once, from the start.
        if cursor.relayed < payloads.len() {
            if let Some(blocker) = self.relay_rest(payloads, cursor, &settings) {
                return Progress::Blocked(blocker);
            }
        }
        match self.routing {
            Routing::Fanout => Self::publish_fanout(self, payloads, cursor, &settings),
            Routing::Queue => self.publish_queue(payloads, cursor, &settings),
        }
    }
}

/// The topic's access lists; lists that cannot be resolved admit nobody (a config is checked
/// with [`TopicAcl::check_all`] before it is put in force, so this is a backstop).
pub(super) fn resolve_acl(config: &TopicConfig) -> TopicAcl {
    TopicAcl::resolve(config).unwrap_or_else(|error| {
        tracing::error!(%error, "access list cannot be resolved: the topic admits nobody");
        TopicAcl::deny_all()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use bytes::Bytes;

    use mycelium_config::{Backpressure, Routing};
    use mycelium_transport::outbox::Outbox;
    use mycelium_transport::ErrorCode;

    use crate::core::batch::OwnedItem;
    use crate::core::topic::test_support::*;
    use crate::core::topic::*;

    #[test]
    fn a_removed_fanout_topic_tells_its_subscribers_after_their_messages_and_routes_nothing() {
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let m = msgs(3);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        assert_eq!(t.remove(), 0);
        let mut expected: Vec<Result<Vec<u8>, ErrorCode>> = m.into_iter().map(Ok).collect();
        expected.push(Err(ErrorCode::TopicRemoved));
        assert_eq!(drain_frames(&a), expected);
        assert!(t.is_removed());
        assert_eq!(t.subscriber_count(), 0);
        assert!(matches!(publish_all(&t, &msgs(2)), Progress::Done));
        assert!(
            drain_frames(&a).is_empty(),
            "nothing routed after the removal"
        );
        assert_eq!(t.subscribe(2, Arc::new(Outbox::new()), 1000, 0), None);
        assert_eq!(t.remove(), 0, "removing twice is harmless");
    }

    #[test]
    fn a_removed_queue_topic_drops_its_backlog_counted_and_tells_its_consumers() {
        let t = topic(Routing::Queue, 100, Backpressure::Block, 2);
        let c = Arc::new(Outbox::new());
        assert_eq!(t.subscribe(1, c.clone(), 1000, 2), Some(2));
        assert!(matches!(publish_all(&t, &msgs(5)), Progress::Done));
        assert_eq!(t.backlog_len(), 3, "two dealt within credit, three wait");
        assert_eq!(t.remove(), 3);
        assert_eq!(t.backlog_len(), 0);
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 3);
        let frames = drain_frames(&c);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2], Err(ErrorCode::TopicRemoved));
        assert!(!t.add_credit(1, 2), "the consumer is gone");
        t.requeue_front(vec![OwnedItem::new(Bytes::from_static(b"late"), false)]);
        assert_eq!(
            t.backlog_len(),
            0,
            "nothing re-enters a removed topic's backlog"
        );
    }

    #[test]
    fn new_settings_apply_to_the_next_message_and_keep_what_is_queued() {
        let t = topic(Routing::Fanout, 5, Backpressure::DropNewest, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        assert!(matches!(publish_all(&t, &msgs(4)), Progress::Done));
        let mut smaller = (*t.config()).clone();
        smaller.buffer_size = 2;
        t.set_config(smaller).expect("same name and routing");
        // Four queued stay queued; the next one finds the subscriber over its new size.
        assert!(matches!(
            publish_all(&t, &[b"new".to_vec()]),
            Progress::Done
        ));
        let mut expected: Vec<_> = msgs(4).into_iter().map(Ok).collect();
        expected.push(Err(ErrorCode::Other(1)));
        assert_eq!(drain_frames(&a), expected, "the loss told after the four");
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 1);
        let mut larger = (*t.config()).clone();
        larger.buffer_size = 10;
        t.set_config(larger).expect("same name and routing");
        assert!(matches!(publish_all(&t, &msgs(8)), Progress::Done));
        assert_eq!(drain(&a), msgs(8));
    }

    #[test]
    fn a_config_with_another_routing_or_name_is_refused() {
        let t = topic(Routing::Fanout, 5, Backpressure::Block, 1);
        let mut queue = (*t.config()).clone();
        queue.routing = Routing::Queue;
        assert!(t.set_config(queue).is_err());
        let mut renamed = (*t.config()).clone();
        renamed.name = "other".into();
        assert!(t.set_config(renamed).is_err());
        assert_eq!(t.config().routing, Routing::Fanout);
    }
}
