//! One topic: its settings, its counters and how it hands messages to subscribers.
//!
//! - [`Topic::publish`] routes a *batch* of payloads, taking each subscriber's lock once per
//!   batch rather than once per message.
//! - Fanout: every subscriber gets every message, in publish order. Queue: each message goes to
//!   exactly one consumer with credit, dealt round-robin; while no consumer has credit, messages
//!   wait in the topic's backlog (at most `buffer_size`).
//! - When a subscriber's outbox (fanout) or the backlog (queue) is full, the topic's
//!   [`Backpressure`] policy decides: `block` returns [`Progress::Blocked`] with a
//!   [`PublishCursor`] to resume from once [`Blocker::wait`] resolves, so nothing is delivered
//!   twice or skipped; `drop_newest` drops the new messages and counts them; `drop_oldest`
//!   drops the subscriber's oldest queued messages of the topic to make room (fanout), or the
//!   oldest of the backlog (queue), and counts them, so what is kept is always the newest;
//!   `disconnect` closes the slow subscriber with a `SlowConsumer` error (fanout; on a queue
//!   topic it drops like `drop_newest`, since no single consumer is at fault).
//! - Per publisher order holds because one publisher's batches are routed one after another and
//!   each subscriber's frames are appended in order.
//! - A hot reload may replace every setting but the name and the routing
//!   ([`Topic::set_config`]); each routing call reads the settings once, so a batch is routed
//!   wholly on the old or wholly on the new ones, and messages already queued are never
//!   dropped for a smaller `buffer_size` (it applies to the next message). A reload may also
//!   end the topic ([`Topic::remove`]): its subscribers are told (`TopicRemoved`), then
//!   dropped, and publishes route nothing from then on.
//! - A fanout topic may also have a [`Relay`]: it receives every batch once, before the
//!   topic's outbox subscribers, for subscribers on another path (the shared-memory relay
//!   ring). When it cannot take all of a batch (its ring is full), the policy decides as for
//!   an outbox: `block` and `disconnect` return [`Progress::Blocked`] ([`Blocker::Relay`]) and
//!   the relay is handed only the rest on resume; `drop_newest` and `drop_oldest` drop the
//!   rest for the relay's readers and count it.
//! - `publish_deadline_ms` bounds how long one batch waits on one reader ([`HeldBack`] keeps
//!   the clock across every wake-up of that wait, [`Topic::wait_or_give_up`] applies it):
//!   past it [`Topic::give_up`] disconnects the full subscriber, detaches the shared-memory
//!   readers that hold the relay full ([`Relay::detach_laggards`]), or drops the rest of a
//!   queue batch.
//! - A queue topic may also have a [`QueueRelay`]: its shared-memory consumers
//!   ([`Topic::subscribe_relayed`]) take part in the deal beside the socket consumers, each
//!   with credit = `prefetch` minus what was dealt to it and not yet read. A message the relay
//!   cannot take (its ring is full) goes to another consumer or to the backlog, under the
//!   topic's policy; it is never dropped for that alone. Nothing tells the topic when a
//!   shared-memory consumer reads, so whoever installs the relay drains the backlog into it
//!   ([`Topic::drain_backlog_now`], [`Topic::wait_backlogged`]).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use mycelium_config::{Backpressure, Routing, TopicConfig};
use tokio::sync::Notify;

use crate::core::acl::{Action, PeerIdentity, TopicAcl};
pub use crate::core::batch::Batch;
use crate::core::delivery::{Delivered, Delivery, Ending};
pub use crate::core::ids::{SubscriberId, TopicId};

/// How long a publisher held back by a full [`Relay`] waits before it offers the rest of its
/// batch again ([`Blocker::Relay`]).
///
/// A poll rather than a wake-up: the relay's readers (shared-memory subscribers) read without
/// telling the broker, and the transport's way to hear of room (a thread asleep on the ring's
/// `producer_parked` futex, woken by the reader that makes room) would cost a thread per relay
/// ring plus a hand-over to tokio, and a `FUTEX_WAKE` syscall from readers on every read while
/// it sleeps. The poll costs nothing while the relay has room (it runs only while a batch is
/// held back, and only for that publisher), adds at most about a millisecond to a wait that a
/// reader a whole ring behind has already made long, and mirrors how a queue topic's backlog
/// is offered to the same ring (`server/shm_rings.rs`).
pub const RELAY_ROOM_POLL: Duration = Duration::from_millis(1);

/// Counters reported by `mycelium stats`; relaxed atomics, since they order nothing.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Messages accepted from publishers.
    pub published: AtomicU64,
    /// Copies handed to subscribers' outboxes.
    pub delivered: AtomicU64,
    /// Copies discarded by the backpressure policy.
    pub dropped: AtomicU64,
}

impl TopicCounters {
    /// Adds a routing call's results, skipping zeros: an atomic add costs even when it adds
    /// nothing, and most calls drop nothing.
    fn add(&self, delivered: u64, dropped: u64) {
        if delivered > 0 {
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// Where a blocked publish resumes. Start each new batch from `PublishCursor::default()`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishCursor {
    /// Fanout: subscribers with a smaller id have the whole batch. Queue: unused.
    subscriber: SubscriberId,
    /// Fanout: messages of the batch that `subscriber` already has. Queue: messages placed.
    offset: usize,
    /// Whether the batch was counted as published yet.
    counted: bool,
    /// Fanout: messages of the batch the relay has dealt with (taken, or dropped by policy);
    /// the outbox subscribers get the batch once this reaches its length.
    relayed: usize,
    /// The batch came from the topic's relay's own path (shared-memory publishers): it is not
    /// handed back to the relay.
    skip_relay: bool,
    /// How many messages of the batch, from its start, the topic has routed to every reader
    /// it has: see [`PublishCursor::routed`].
    routed: usize,
}

impl PublishCursor {
    /// How many messages of the batch, from its start, were routed: on a fanout topic, handed
    /// to every subscriber (the relay and every outbox; a subscriber's backpressure may drop
    /// its copy, as for any message), on a queue topic dealt to a consumer or put in the
    /// backlog. Less than the batch only while it is held back, or if the topic was removed
    /// (then the rest never will be) or [`Topic::give_up`] dropped the rest. A message that
    /// some fanout subscribers got and others not (held back by a later one) is not routed:
    /// the topic's removal ends those subscriptions without it.
    pub fn routed(&self) -> usize {
        self.routed
    }

    /// A cursor for a batch that came from the relay's own path: routed to the topic's
    /// subscribers, but not handed to the relay again.
    pub fn from_relay_path() -> PublishCursor {
        PublishCursor {
            skip_relay: true,
            ..PublishCursor::default()
        }
    }
}

/// What a publish call achieved.
#[derive(Debug)]
pub enum Progress {
    /// The whole batch was routed (or dropped by policy).
    Done,
    /// A `block` policy stopped the batch; wait on the blocker, then call `publish` again with
    /// the same cursor.
    Blocked(Blocker),
}

/// What a blocked publisher waits for.
#[derive(Debug)]
pub enum Blocker {
    /// A fanout subscriber to take messages, until fewer than `limit` are queued for it.
    Subscriber {
        /// The full subscriber.
        subscriber: SubscriberId,
        /// The way to it.
        sink: Arc<dyn Delivery>,
        /// The topic whose messages fill it; the wait also ends when its subscribers change.
        topic: Arc<Topic>,
        /// The topic's membership generation when the publish blocked.
        generation: u64,
        /// The message limit it must drop below.
        limit: usize,
    },
    /// A queue topic's backlog to shrink.
    Backlog(Arc<Topic>),
    /// The topic's [`Relay`] to have room (a shared-memory subscriber to read); waits
    /// [`RELAY_ROOM_POLL`], then the publish offers the rest of the batch again.
    Relay,
}

/// Who holds a batch back, for [`HeldBack`]: the same reader across wake-ups keeps one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A fanout subscriber.
    Subscriber(SubscriberId),
    Backlog,
    Relay,
}

/// The `publish_deadline_ms` clock of one batch's routing.
///
/// A held-back batch wakes up often without having been let through: [`Blocker::Relay`]
/// every [`RELAY_ROOM_POLL`], [`Blocker::Subscriber`] whenever any subscriber of the topic
/// leaves, [`Blocker::Backlog`] whenever a reload touches the topic. Were the deadline taken
/// afresh at each wake-up, a reader that never reads would hold the batch for ever. So the
/// clock starts when the batch is first held back by a reader and keeps running while that
/// same reader holds it, whatever wakes the publisher in between; it starts again only for
/// another reader (the first one made room and the batch moved on to the next full one), or
/// once [`Topic::give_up`] dealt with the reader. Start one per batch.
#[derive(Debug, Default)]
pub struct HeldBack {
    since: Option<(Holder, Instant)>,
}

impl HeldBack {
    /// When the wait on `blocker` must end, under a deadline of `deadline_ms` (0: never),
    /// counted from when this reader first held the batch back. Read at each wake-up, so a
    /// reload's new deadline applies to a wait already under way.
    pub fn deadline(&mut self, blocker: &Blocker, deadline_ms: u64) -> Option<Instant> {
        let holder = blocker.holder();
        let since = match self.since {
            Some((held_by, since)) if held_by == holder => since,
            _ => {
                let now = Instant::now();
                self.since = Some((holder, now));
                now
            }
        };
        if deadline_ms == 0 {
            return None;
        }
        // Far enough that no deadline overflows the clock (a config allows any u64).
        Some(
            since
                .checked_add(Duration::from_millis(deadline_ms))
                .unwrap_or_else(|| since + Duration::from_secs(365 * 24 * 3600)),
        )
    }

    /// The reader that held the batch was dealt with: the next one gets a deadline of its own.
    pub fn reset(&mut self) {
        self.since = None;
    }
}

/// What [`Topic::give_up`] did when a publish waited past the topic's `publish_deadline_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp {
    /// The subscriber that held the publish back was disconnected (`SlowConsumer`); the
    /// publish goes on to the others.
    Disconnected,
    /// The rest of the batch was dropped for the readers it waited on (a full queue backlog,
    /// or a full relay whose readers could not be detached), counted; the publisher should be
    /// told. Holds how many.
    Dropped(usize),
}

impl Blocker {
    fn holder(&self) -> Holder {
        match self {
            Blocker::Subscriber { subscriber, .. } => Holder::Subscriber(*subscriber),
            Blocker::Backlog(_) => Holder::Backlog,
            Blocker::Relay => Holder::Relay,
        }
    }

    /// Resolves when publishing may make progress again (or the subscriber went away).
    pub async fn wait(&self) {
        match self {
            Blocker::Subscriber {
                sink,
                topic,
                generation,
                limit,
                ..
            } => {
                // The blocking subscriber may leave rather than drain: then the publish must
                // resume (and skip it) instead of waiting on an outbox nobody reads for it.
                let left = async {
                    loop {
                        let changed = topic.membership_changed.notified();
                        tokio::pin!(changed);
                        changed.as_mut().enable();
                        // SYNC POINT: pairs with the Release increment in `unsubscribe`.
                        if topic.membership.load(Ordering::Acquire) != *generation {
                            return;
                        }
                        changed.await;
                    }
                };
                tokio::select! {
                    _ = sink.wait_for_room(topic.id, *limit) => {}
                    _ = left => {}
                }
            }
            Blocker::Backlog(topic) => {
                if let Routing::Queue = topic.routing {
                    // The topic's size now: a reload may have changed it meanwhile.
                    topic.queue.wait_for_space(&topic.settings).await
                }
            }
            Blocker::Relay => tokio::time::sleep(RELAY_ROOM_POLL).await,
        }
    }
}

#[derive(Debug, Clone)]
struct FanoutSubscriber {
    id: SubscriberId,
    /// The way to the subscriber; also tells it what it lost.
    sink: Arc<dyn Delivery>,
    /// The connection's `channel_capacity` when it subscribed: caps the topic's `buffer_size`
    /// (read at each publish, so a reload's new size applies to the next message).
    capacity: usize,
}

impl FanoutSubscriber {
    /// Messages this subscriber may hold queued of the topic under `settings`.
    fn limit(&self, settings: &TopicConfig) -> usize {
        settings.buffer_size.min(self.capacity).max(1)
    }
}

/// Where a queue consumer's messages go.
#[derive(Debug)]
enum Sink {
    /// A consumer with a [`Delivery`] of its own (socket, in-process): its subscription and
    /// the way to it.
    Direct(SubscriberId, Arc<dyn Delivery>),
    /// A shared-memory consumer reached through the topic's [`QueueRelay`]: its slot there.
    Relayed(u32),
}

#[derive(Debug)]
struct Consumer {
    sink: Sink,
    /// Outbox consumers: granted minus taken, returned by the consumer. Relayed consumers:
    /// recomputed from the relay before each routing call (`refresh_relayed`).
    credit: u32,
    /// The most credit this consumer may hold: what it was granted at subscribe.
    prefetch: u32,
}

#[derive(Debug, Default)]
struct QueueState {
    consumers: Vec<Consumer>,
    /// Reaches the [`Sink::Relayed`] consumers; `None` while the topic has none.
    relay: Option<Arc<dyn QueueRelay>>,
    /// Index into `consumers` where the next deal starts (round-robin).
    next: usize,
    /// Messages published while no consumer had credit, oldest first.
    backlog: VecDeque<Bytes>,
    /// A publisher waits for the backlog to shrink.
    space_wanted: bool,
}

#[derive(Debug, Default)]
struct QueueRouting {
    state: Mutex<QueueState>,
    /// Wakes publishers blocked on a full backlog.
    space: Notify,
    /// Signalled (one stored permit) whenever messages enter the backlog, for the task that
    /// drains it into the [`QueueRelay`] (`Topic::wait_backlogged`).
    backlogged: Notify,
}

impl QueueRouting {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every mutation below leaves the state consistent between statements that can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the backlog is below the topic's `buffer_size` (as `settings` says at each
    /// look), or the topic is removed (which empties it).
    async fn wait_for_space(&self, settings: &ArcSwap<TopicConfig>) {
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

/// Takes a copy of every message routed on a topic, for subscribers that are not reached
/// through outboxes (the shared-memory relay ring).
pub trait Relay: std::fmt::Debug + Send + Sync {
    /// Takes messages of a batch, in order, without waiting, and stops at the first that
    /// does not fit now (its readers must make room first). The topic hands over each
    /// message once: after a short return it offers only the messages after `passed`.
    fn relay(&self, payloads: &mut dyn Iterator<Item = &[u8]>) -> Relayed;

    /// The topic dropped the next `count` messages for the relay's readers after a short
    /// [`relay`](Self::relay) (`drop_newest`): the relay tells its readers how many they
    /// missed, with the next message they get or, if none comes, as soon as they have read
    /// the messages before the gap.
    fn dropped(&self, count: u64);

    /// A publish waited on the relay for longer than the topic's `publish_deadline_ms`:
    /// detach the readers that hold it full (`SlowConsumer`, with `why` in the reason), so
    /// that the publish goes on and the relay's other readers keep getting messages. Returns
    /// how many were detached (0: none could be, and the topic drops the rest instead).
    fn detach_laggards(&self, why: &str) -> usize;
}

/// How far a [`Relay`] got with the messages it was offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Leading messages dealt with: each taken, or dropped for good (one the relay can never
    /// take). Fewer than offered means the next one did not fit now.
    pub passed: usize,
    /// Of `passed`, those dropped for good.
    pub dropped: usize,
    /// Readers each message taken reaches (and each dropped one misses), for the counters.
    pub readers: u64,
}

/// Deals queue messages to shared-memory consumers (the broker's relay ring), each message
/// addressed to one consumer.
pub trait QueueRelay: std::fmt::Debug + Send + Sync {
    /// Messages dealt to the consumer in `slot` that it has not read yet, or `None` when no
    /// consumer holds the slot.
    fn unread(&self, slot: u32) -> Option<usize>;
    /// Writes `payloads` addressed to the consumer in `slot`, in order, without waiting;
    /// stops at the first that does not fit. Returns how many were written: exactly those
    /// are the consumer's now.
    fn deal(&self, slot: u32, payloads: &mut dyn Iterator<Item = &[u8]>) -> usize;
    /// A publish waited on the backlog for longer than the topic's `publish_deadline_ms`:
    /// detach the consumers that hold the relay ring full, if any do (`SlowConsumer`, with
    /// `why` in the reason). Returns how many were detached (0: the ring is not what holds
    /// the backlog up).
    fn detach_laggards(&self, why: &str) -> usize;
}

/// One topic; see the module docs.
#[derive(Debug)]
pub struct Topic {
    id: TopicId,
    /// Fixed for the topic's life, as is `routing`: a reload may change every other setting.
    name: String,
    routing: Routing,
    /// The settings now; a reload swaps them whole ([`Topic::set_config`]), and each routing
    /// call reads them once, so a batch is never routed on half of an old and half of a new
    /// config.
    settings: ArcSwap<TopicConfig>,
    /// The settings' access lists, resolved; replaced with them.
    acl: ArcSwap<TopicAcl>,
    /// Set once by [`Topic::remove`]: publishes route nothing, subscribes are refused.
    removed: AtomicBool,
    counters: TopicCounters,
    /// Fanout subscribers, sorted by id; copied on write so publishers read a snapshot without
    /// holding the lock while they append.
    fanout: RwLock<Arc<[FanoutSubscriber]>>,
    queue: QueueRouting,
    /// Bumped whenever a subscriber leaves; a publisher blocked on that subscriber watches it.
    membership: AtomicU64,
    /// Wakes publishers blocked on a subscriber when any subscriber leaves.
    membership_changed: Notify,
    /// Fanout only: subscribers on another path, if any.
    relay: RwLock<Option<Arc<dyn Relay>>>,
}

impl Topic {
    /// A topic with no subscribers.
    pub fn new(id: TopicId, config: TopicConfig) -> Topic {
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
        }
    }

    /// Sets (or, with `None`, removes) the topic's [`Relay`]. Ignored on queue topics.
    pub fn set_relay(&self, relay: Option<Arc<dyn Relay>>) {
        if self.routing == Routing::Fanout {
            *self.relay.write().unwrap_or_else(|p| p.into_inner()) = relay;
        }
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

    /// Replaces the topic's settings, for every message routed from now on (a hot reload).
    /// Messages already queued stay queued, whatever the new `buffer_size`. `name` and
    /// `routing` cannot change: a config naming another routing is refused.
    pub fn set_config(&self, config: TopicConfig) -> Result<(), TopicConfig> {
        if config.name != self.name || config.routing != self.routing {
            return Err(config);
        }
        self.acl.store(Arc::new(resolve_acl(&config)));
        self.settings.store(Arc::new(config));
        // A publisher waiting for backlog room looks again under the new size.
        if self.routing == Routing::Queue {
            self.queue.space.notify_waiters();
        }
        Ok(())
    }

    /// Stops waiting on `blocker`, which held a `block` publish of `payloads` (at `cursor`)
    /// for longer than the topic's `publish_deadline_ms`: one slow reader may not stall the
    /// others any longer. A full subscriber is disconnected with a fatal `SlowConsumer`; the
    /// shared-memory readers that hold a full relay ring are detached (`SlowConsumer`), or,
    /// if none can be, the rest of the batch is dropped for the relay; a full queue backlog
    /// gets the shared-memory consumers that hold its relay ring full detached, or if none
    /// do, the rest of the batch dropped (counted). Call `publish` again with the same cursor
    /// afterwards.
    pub fn give_up<B: Batch + ?Sized>(
        &self,
        blocker: &Blocker,
        payloads: &B,
        cursor: &mut PublishCursor,
    ) -> GaveUp {
        let waited = self.settings.load().publish_deadline_ms;
        match blocker {
            Blocker::Subscriber { sink, .. } => {
                tracing::warn!(topic = %self.name, waited_ms = waited, "disconnecting a subscriber that held a publisher back past publish_deadline_ms");
                let message = format!(
                    "subscriber held publishers of topic '{}' back for more than {waited} ms \
                     (backpressure = block, publish_deadline_ms = {waited})",
                    self.name
                );
                sink.end(self.id, Ending::SlowConsumer { message: &message });
                self.counters.add(0, 1);
                GaveUp::Disconnected
            }
            Blocker::Backlog(_) => {
                // A shared-memory consumer that stopped reading holds the relay ring full for
                // every other one (they all read every frame): then it, not the backlog, is the
                // slow reader, and detaching it (what it left unread is dealt again) lets the
                // backlog drain into the ring again.
                let relay = self.queue.lock().relay.clone();
                if let Some(relay) = relay {
                    let why = format!(
                        "backpressure = {}, held a publisher back longer than publish_deadline_ms = {waited}",
                        self.settings.load().backpressure
                    );
                    if relay.detach_laggards(&why) > 0 {
                        tracing::warn!(topic = %self.name, waited_ms = waited, "detached the shared-memory consumers that held the relay ring full past publish_deadline_ms");
                        return GaveUp::Disconnected;
                    }
                }
                let rest = payloads.len().saturating_sub(cursor.offset);
                cursor.offset = payloads.len();
                self.counters.add(0, rest as u64);
                GaveUp::Dropped(rest)
            }
            Blocker::Relay => {
                let relay = self.relay.read().unwrap_or_else(|p| p.into_inner()).clone();
                let Some(relay) = relay else {
                    // Its readers have all left since: the publish goes on, dropping nothing.
                    return GaveUp::Disconnected;
                };
                let why = format!(
                    "backpressure = {}, held a publisher back longer than publish_deadline_ms = {waited}",
                    self.settings.load().backpressure
                );
                if relay.detach_laggards(&why) > 0 {
                    tracing::warn!(topic = %self.name, waited_ms = waited, "detached the shared-memory subscribers that held the relay ring full past publish_deadline_ms");
                    return GaveUp::Disconnected;
                }
                let rest = payloads.len().saturating_sub(cursor.relayed);
                cursor.relayed = payloads.len();
                self.counters.add(0, rest as u64);
                GaveUp::Dropped(rest)
            }
        }
    }

    /// Waits on `blocker` (which held back a publish of `payloads` at `cursor`) until the
    /// publish may go on: `None` when the reader made room (or left), or what
    /// [`give_up`](Self::give_up) did once the reader has held the batch back for the topic's
    /// `publish_deadline_ms`, counted by `held` over every wake-up of the wait. Call
    /// `publish` again with the same cursor afterwards, either way.
    pub async fn wait_or_give_up<B: Batch + ?Sized>(
        &self,
        blocker: &Blocker,
        payloads: &B,
        cursor: &mut PublishCursor,
        held: &mut HeldBack,
    ) -> Option<GaveUp> {
        let deadline = held.deadline(blocker, self.settings.load().publish_deadline_ms);
        let past_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = blocker.wait() => None,
            _ = past_deadline => {
                held.reset();
                Some(self.give_up(blocker, payloads, cursor))
            }
        }
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

    /// Whether [`Topic::remove`] was called.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Ends the topic (a reload removed it from the config): every subscriber reached through
    /// an outbox gets a non-fatal `TopicRemoved` error after what was already routed to it,
    /// and is dropped; the backlog of a queue topic is dropped (counted); publishers blocked
    /// on it resume and route nothing. Returns the messages dropped. Shared-memory
    /// attachments are ended by their owner (`ShmRings::remove_topic`). Idempotent.
    pub fn remove(&self) -> u64 {
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
        self.counters.add(0, dropped);
        // SYNC POINT: pairs with the Acquire load in `Blocker::wait`: a publisher blocked on
        // one of the subscribers dropped above resumes, and finds the topic removed.
        self.membership.fetch_add(1, Ordering::Release);
        self.membership_changed.notify_waiters();
        dropped
    }

    /// The topic's counters.
    pub fn counters(&self) -> &TopicCounters {
        &self.counters
    }

    /// Current subscribers (fanout) or consumers (queue) reached through outboxes: the
    /// socket path (shared-memory consumers of a queue, [`Self::subscribe_relayed`], are not
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

    /// `count` messages that reached the broker over shared memory were lost before it could
    /// route them (their publisher dropped them under `drop_newest`, or lapped the broker's
    /// reader under `drop_oldest`): every fanout subscriber is told at once (a `Lagged`
    /// notice before its next message, or as soon as its writer takes what is queued), as
    /// for the messages its own outbox dropped. Counting them is the caller's business.
    /// Nothing happens on a queue topic: a message lost before it was dealt was no
    /// consumer's in particular.
    pub fn report_missed(&self, count: u64) {
        if self.routing != Routing::Fanout || count == 0 {
            return;
        }
        for sub in self.fanout_snapshot().iter() {
            sub.sink.report_lost(self.id, count);
        }
    }

    /// Messages waiting in the backlog for a consumer (always 0 for fanout).
    pub fn backlog_len(&self) -> usize {
        match self.routing {
            Routing::Fanout => 0,
            Routing::Queue => self.queue.lock().backlog.len(),
        }
    }

    fn fanout_snapshot(&self) -> Arc<[FanoutSubscriber]> {
        self.fanout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a subscriber reached through `sink`. `channel_capacity` caps how many messages of
    /// the topic it may hold queued; `prefetch` is the credit a queue consumer asks for (0 =
    /// the topic's).
    ///
    /// Returns the credit granted (0 for fanout), or `None` when the topic was removed (the
    /// check is made under the lock [`Topic::remove`] takes, so a subscriber is either refused
    /// or told of the removal, never left waiting on a dead topic).
    pub fn subscribe(
        &self,
        id: SubscriberId,
        sink: Arc<dyn Delivery>,
        channel_capacity: usize,
        prefetch: u32,
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

    /// Sets (or, with `None`, removes) the [`QueueRelay`] that reaches this queue topic's
    /// shared-memory consumers. Ignored on fanout topics.
    pub fn set_queue_relay(&self, relay: Option<Arc<dyn QueueRelay>>) {
        if self.routing == Routing::Queue {
            self.queue.lock().relay = relay;
        }
    }

    /// Adds the shared-memory consumer holding `slot` of the [`QueueRelay`] to this queue
    /// topic (ignored on fanout topics); the backlog drains into it at once if it can.
    pub fn subscribe_relayed(&self, slot: u32) {
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
    pub fn unsubscribe_relayed(&self, slot: u32) -> bool {
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

    /// Puts `messages` (dealt to a consumer that left before reading them, oldest first) back
    /// at the head of the backlog, ahead of everything queued (which is younger: messages are
    /// dealt only while the backlog is empty, or from its head), and deals them again. They
    /// may take the backlog beyond `buffer_size` for a moment: they were accepted already.
    pub fn requeue_front(&self, messages: Vec<Bytes>) {
        if self.routing != Routing::Queue || messages.is_empty() {
            return;
        }
        let mut state = self.queue.lock();
        if self.is_removed() {
            // Nobody is left to deal them to (the removal counted the backlog it dropped).
            self.counters.add(0, messages.len() as u64);
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
    pub fn drain_backlog_now(&self) {
        if self.routing == Routing::Queue {
            let mut state = self.queue.lock();
            if !state.backlog.is_empty() {
                self.drain_backlog(&mut state);
            }
        }
    }

    /// Resolves once messages have entered the backlog since the last call (or right away if
    /// some are waiting there). For the single task that drains it into the relay.
    pub async fn wait_backlogged(&self) {
        let notified = self.queue.backlogged.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.backlog_len() > 0 {
            return;
        }
        notified.await;
    }

    /// The credit a queue consumer asking for `requested` gets: the topic's `prefetch` when it
    /// asks for 0 or more, never less than 1.
    pub fn granted_prefetch(&self, requested: u32) -> u32 {
        let prefetch = self.settings.load().prefetch;
        let granted = if requested == 0 {
            prefetch
        } else {
            requested.min(prefetch)
        };
        granted.max(1)
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
        // Read once: the whole call routes on one version of the settings (a guard, which
        // costs no reference count on the routing path).
        let settings = self.settings.load();
        if !cursor.counted {
            cursor.counted = true;
            self.counters
                .published
                .fetch_add(payloads.len() as u64, Ordering::Relaxed);
            if cursor.skip_relay {
                cursor.relayed = payloads.len();
            }
        }
        // The relay first, as if it were the first subscriber: while it holds the batch back
        // no outbox subscriber has any of it, so on resume each gets it once, from the start.
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

    /// Offers the relay the messages of the batch it has not dealt with yet; `Some` when a
    /// `block` or `disconnect` policy must wait for it to have room.
    fn relay_rest<B: Batch + ?Sized>(
        &self,
        payloads: &B,
        cursor: &mut PublishCursor,
        settings: &TopicConfig,
    ) -> Option<Blocker> {
        let relay = self.relay.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(relay) = relay else {
            // No relay (any more): nobody on the other path to wait for.
            cursor.relayed = payloads.len();
            return None;
        };
        let from = cursor.relayed;
        let mut each = (from..payloads.len()).map(|i| payloads.payload(i));
        let relayed = relay.relay(&mut each);
        // A relay that claims more than it was offered is taken at its word for what exists.
        let passed = relayed.passed.min(payloads.len() - from);
        let dropped = relayed.dropped.min(passed);
        cursor.relayed = from + passed;
        let readers = relayed.readers;
        let delivered = (passed - dropped) as u64 * readers;
        let mut lost = dropped as u64 * readers;
        let rest = payloads.len() - cursor.relayed;
        let blocker = if rest == 0 {
            None
        } else {
            match settings.backpressure {
                // `disconnect`: the shared-memory watchdog detaches the reader that holds the
                // relay full (`ShmRings`), and the wait ends.
                Backpressure::Block | Backpressure::Disconnect => {
                    // The outbox subscribers get the batch only once the relay has all of it.
                    let outboxes = !self
                        .fanout
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_empty();
                    cursor.routed = if outboxes { 0 } else { cursor.relayed };
                    Some(Blocker::Relay)
                }
                // A lossy relay (`drop_oldest`) never stops short; should one, drop as
                // `drop_newest` does rather than wait under a policy that promises not to.
                Backpressure::DropNewest | Backpressure::DropOldest => {
                    lost += rest as u64 * readers;
                    cursor.relayed = payloads.len();
                    relay.dropped(rest as u64);
                    None
                }
            }
        };
        self.counters.add(delivered, lost);
        blocker
    }

    fn publish_fanout<B: Batch + ?Sized>(
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
        let (mut delivered, mut dropped) = (0u64, 0u64);
        // drop_oldest: messages taken back out of outboxes after they were counted delivered.
        let mut evicted = 0u64;
        let mut progress = Progress::Done;
        for sub in subscribers.iter().filter(|s| s.id >= cursor.subscriber) {
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
                    // topic in the outbox (which may include the head of this very batch);
                    // the outbox tells the subscriber of them where they were.
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
        self.counters.add(delivered, dropped);
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

    fn publish_queue<B: Batch + ?Sized>(
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
        let (mut delivered, mut dropped) = (0u64, 0u64);
        let from = cursor.offset.min(payloads.len());
        let mut i = from;
        let mut progress = Progress::Done;
        while i < payloads.len() {
            if state.backlog.is_empty() {
                if let Some(dealt) = Self::deal(&mut state, self.id, payloads, i) {
                    delivered += dealt as u64;
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
                        dropped += 1;
                    }
                    let end = i + 1;
                    push_copies(&mut state.backlog, payloads, i..end);
                    i = end;
                }
                Backpressure::DropNewest | Backpressure::Disconnect => {
                    dropped += 1;
                    i += 1;
                }
            }
        }
        // Dealt, backlogged, or dropped by the policy, as any message of the topic may be.
        cursor.routed += i - from;
        drop(state);
        self.counters.add(delivered, dropped);
        progress
    }

    /// Hands a leading run of `payloads[from..]` to the next consumer with credit,
    /// round-robin, at most an even share of the run so that one batch is spread over every
    /// ready consumer. Returns how many were placed, or None when no consumer has credit.
    fn deal<B: Batch + ?Sized>(
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
    fn deal_to<B: Batch + ?Sized>(
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
                        let mut each = (from..from + take).map(|i| payloads.payload(i));
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
            // Credit, not the outbox limit, bounds what a consumer may hold: it was granted
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

    /// Moves backlog messages to consumers with credit, oldest first, a run per consumer.
    fn drain_backlog(&self, state: &mut QueueState) {
        refresh_relayed(state, false);
        let before = state.backlog.len();
        let mut delivered = 0u64;
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
                let run: Vec<&[u8]> = backlog.iter().take(credit).map(|b| b.as_ref()).collect();
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
            backlog.drain(..placed);
            delivered += placed as u64;
        }
        self.counters.add(delivered, 0);
        if state.backlog.len() < before && std::mem::take(&mut state.space_wanted) {
            self.queue.space.notify_waiters();
        }
    }
}

/// The topic's access lists; lists that cannot be resolved admit nobody (a config is checked
/// with [`TopicAcl::check_all`] before it is put in force, so this is a backstop).
fn resolve_acl(config: &TopicConfig) -> TopicAcl {
    TopicAcl::resolve(config).unwrap_or_else(|error| {
        tracing::error!(%error, "access list cannot be resolved: the topic admits nobody");
        TopicAcl::deny_all()
    })
}

/// Sets each shared-memory consumer's credit from what it has still to read (0 with `skip`,
/// or without a relay, or when its slot is no longer held).
fn refresh_relayed(state: &mut QueueState, skip: bool) {
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

/// Copies `payloads[range]` into one allocation and queues a zero-copy slice of it per
/// message, so a burst that lands in the backlog costs one allocation, not one per message.
/// (The backlog copies even a shared run: it may wait long, and must not pin read buffers.)
fn push_copies<B: Batch + ?Sized>(
    backlog: &mut VecDeque<Bytes>,
    payloads: &B,
    range: Range<usize>,
) {
    let total = range.clone().map(|i| payloads.payload(i).len()).sum();
    let mut block = bytes::BytesMut::with_capacity(total);
    for i in range.clone() {
        block.extend_from_slice(payloads.payload(i));
    }
    let block = block.freeze();
    let mut at = 0;
    for i in range {
        let len = payloads.payload(i).len();
        backlog.push_back(block.slice(at..at + len));
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mycelium_transport::outbox::Outbox;
    use mycelium_transport::{peek_frame, ErrorCode, Frame};

    fn topic(
        routing: Routing,
        buffer_size: usize,
        backpressure: Backpressure,
        prefetch: u32,
    ) -> Arc<Topic> {
        let mut config = mycelium_config::TopicDefaults::default().topic("t");
        config.routing = routing;
        config.buffer_size = buffer_size;
        config.backpressure = backpressure;
        config.prefetch = prefetch;
        Arc::new(Topic::new(7, config))
    }

    fn drain(outbox: &Outbox) -> Vec<Vec<u8>> {
        drain_frames(outbox)
            .into_iter()
            .map(|frame| frame.expect("a deliver frame"))
            .collect()
    }

    fn msgs(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("m{i}").into_bytes()).collect()
    }

    fn publish_all(topic: &Arc<Topic>, payloads: &[Vec<u8>]) -> Progress {
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        topic.publish(refs.as_slice(), &mut PublishCursor::default())
    }

    /// Every frame in the outbox: `Ok(payload)` for a message, `Err(code)` for an error, and
    /// `Err(Other(skipped))` for a `Lagged` notice.
    fn drain_frames(outbox: &Outbox) -> Vec<Result<Vec<u8>, ErrorCode>> {
        let mut out = Vec::new();
        let mut drained = mycelium_transport::outbox::Drained::default();
        if outbox.take(&mut drained) {
            let buf = drained.flatten();
            let mut rest: &[u8] = &buf;
            while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
                out.push(match view.message() {
                    Some((_, payload)) => Ok(payload.to_vec()),
                    None => match view.to_frame() {
                        Ok(Frame::Error { code, .. }) => Err(code),
                        Ok(Frame::Lagged { skipped, .. }) => {
                            Err(ErrorCode::Other(u16::try_from(skipped).expect("small")))
                        }
                        other => panic!("unexpected frame {other:?}"),
                    },
                });
                rest = &rest[used..];
            }
        }
        out
    }

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
    fn a_batch_held_back_counts_as_routed_only_what_every_subscriber_has() {
        // The slow subscriber first: the one after it has none of the held batch.
        let t = topic(Routing::Fanout, 3, Backpressure::Block, 1);
        let (slow, other) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, slow.clone(), 1000, 0);
        t.subscribe(2, other.clone(), 1000, 0);
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(_)
        ));
        assert_eq!(cursor.routed(), 0);
        assert_eq!(drain(&slow).len(), 3);
        assert!(drain(&other).is_empty());
        t.remove();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(cursor.routed(), 0, "nothing more once removed");

        // The slow subscriber last (it alone holds 3 at most): what it has, every subscriber
        // has.
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let (other, slow) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        t.subscribe(1, other.clone(), 1000, 0);
        t.subscribe(2, slow.clone(), 3, 0);
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(_)
        ));
        assert_eq!(cursor.routed(), 3);
        assert_eq!(drain(&slow).len(), 3);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(_)
        ));
        assert_eq!(cursor.routed(), 6);
        drain(&slow);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(cursor.routed(), 8);
    }

    #[test]
    fn a_queue_batch_counts_as_routed_what_was_dealt_or_backlogged_not_what_was_given_up() {
        let t = topic(Routing::Queue, 3, Backpressure::Block, 2);
        let c = Arc::new(Outbox::new());
        assert_eq!(t.subscribe(1, c.clone(), 1000, 2), Some(2));
        let m = msgs(10);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) else {
            panic!("a full backlog holds the batch back");
        };
        assert_eq!(cursor.routed(), 5, "two dealt, three backlogged");
        assert_eq!(
            t.give_up(&blocker, refs.as_slice(), &mut cursor),
            GaveUp::Dropped(5)
        );
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(cursor.routed(), 5, "the rest was dropped, not routed");
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
        t.requeue_front(vec![Bytes::from_static(b"late")]);
        assert_eq!(
            t.backlog_len(),
            0,
            "nothing re-enters a removed topic's backlog"
        );
    }

    #[tokio::test]
    async fn a_publisher_blocked_on_a_full_subscriber_resumes_when_the_topic_is_removed() {
        let t = topic(Routing::Fanout, 2, Backpressure::Block, 1);
        let slow = Arc::new(Outbox::new());
        t.subscribe(1, slow.clone(), 1000, 0);
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) else {
            panic!("a buffer of 2 must hold back 5 messages");
        };
        let remover = {
            let t = t.clone();
            tokio::spawn(async move { t.remove() })
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), blocker.wait())
            .await
            .expect("the removal wakes the blocked publisher");
        remover.await.expect("remove");
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
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

    /// A relay whose ring holds `room` more messages until a test makes more room.
    #[derive(Debug, Default)]
    struct RecordingRelay {
        got: Mutex<Vec<Vec<u8>>>,
        room: Mutex<usize>,
        /// Messages the topic said it dropped for the relay's readers.
        told_dropped: Mutex<u64>,
        /// Readers `detach_laggards` may detach; each one detached frees this much room.
        laggards: Mutex<usize>,
    }

    impl RecordingRelay {
        fn with_room(room: usize) -> Arc<RecordingRelay> {
            Arc::new(RecordingRelay {
                room: Mutex::new(room),
                ..RecordingRelay::default()
            })
        }

        fn make_room(&self, more: usize) {
            *self.room.lock().unwrap() += more;
        }
    }

    impl Relay for RecordingRelay {
        fn relay(&self, payloads: &mut dyn Iterator<Item = &[u8]>) -> Relayed {
            let mut got = self.got.lock().unwrap();
            let mut room = self.room.lock().unwrap();
            let mut passed = 0;
            for payload in payloads {
                if *room == 0 {
                    break;
                }
                *room -= 1;
                got.push(payload.to_vec());
                passed += 1;
            }
            Relayed {
                passed,
                dropped: 0,
                readers: 1,
            }
        }

        fn dropped(&self, count: u64) {
            *self.told_dropped.lock().unwrap() += count;
        }

        fn detach_laggards(&self, _why: &str) -> usize {
            let detached = std::mem::take(&mut *self.laggards.lock().unwrap());
            self.make_room(detached * 100);
            detached
        }
    }

    /// Routes `m` as a connection does, waiting with [`Topic::wait_or_give_up`]; returns what
    /// each give-up did. Fails if the batch is still held back after five seconds.
    async fn route_with_deadline(t: &Arc<Topic>, m: &[Vec<u8>]) -> Vec<GaveUp> {
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let mut held = HeldBack::default();
        let mut gave_up = Vec::new();
        let routed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) {
                gave_up.extend(
                    t.wait_or_give_up(&blocker, refs.as_slice(), &mut cursor, &mut held)
                        .await,
                );
            }
        })
        .await;
        assert!(routed.is_ok(), "the batch was held back past its deadline");
        gave_up
    }

    fn with_deadline(t: &Topic, ms: u64) {
        let mut config = (*t.config()).clone();
        config.publish_deadline_ms = ms;
        t.set_config(config).expect("same name and routing");
    }

    #[tokio::test]
    async fn a_relay_that_stays_full_is_given_up_on_after_the_deadline_despite_its_polls() {
        // Regression: the relay's blocker resolves every poll, and the deadline was taken
        // afresh at each, so it never passed.
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        with_deadline(&t, 50);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(3);
        *relay.laggards.lock().unwrap() = 1;
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        assert_eq!(
            route_with_deadline(&t, &m).await,
            vec![GaveUp::Disconnected]
        );
        assert_eq!(
            *relay.got.lock().unwrap(),
            m,
            "the reader's detach made room"
        );
        assert_eq!(drain(&a), m, "the outbox subscriber gets the whole batch");
        // With no reader to detach, the rest is dropped for the relay, counted, instead.
        let relay = RecordingRelay::with_room(3);
        t.set_relay(Some(relay.clone()));
        assert_eq!(route_with_deadline(&t, &m).await, vec![GaveUp::Dropped(5)]);
        assert_eq!(
            *relay.told_dropped.lock().unwrap(),
            0,
            "a block relay is not told"
        );
        assert_eq!(drain(&a), m);
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn the_deadline_runs_across_wake_ups_while_the_same_subscriber_holds_the_batch() {
        // Regression: a subscriber leaving wakes every publisher blocked on the topic, and
        // the deadline was taken afresh at each wake-up, so churn kept a stopped reader's
        // publisher waiting for ever.
        let t = topic(Routing::Fanout, 2, Backpressure::Block, 1);
        with_deadline(&t, 200);
        let stuck = Arc::new(Outbox::new());
        t.subscribe(1000, stuck.clone(), 1000, 0);
        // Full, and never drained.
        assert!(matches!(publish_all(&t, &msgs(2)), Progress::Done));
        // Subscribers that come and go, each taking the batch whole (it is as large as their
        // limit), so that only the stopped one holds it back.
        let churn = {
            let t = t.clone();
            tokio::spawn(async move {
                for id in 1..1000 {
                    t.subscribe(id, Arc::new(Outbox::new()), 1000, 0);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    t.unsubscribe(id);
                }
            })
        };
        let gave_up = route_with_deadline(&t, &msgs(2)).await;
        churn.abort();
        assert_eq!(gave_up, vec![GaveUp::Disconnected]);
        assert!(stuck.is_closed(), "the stopped subscriber was disconnected");
    }

    #[test]
    fn a_full_relay_holds_a_block_publish_back_and_resumes_without_duplicates_or_gaps() {
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(5);
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        assert!(
            drain(&a).is_empty(),
            "outbox subscribers wait behind the relay, as behind a first subscriber"
        );
        // Still full: nothing moves, nothing is handed over twice.
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        relay.make_room(1);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        relay.make_room(100);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(*relay.got.lock().unwrap(), m, "once each, in order");
        assert_eq!(drain(&a), m);
        let c = t.counters();
        assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(c.published.load(Ordering::Relaxed), 8, "counted once");
        assert_eq!(c.delivered.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn the_relay_gets_each_batch_once_even_when_a_subscriber_blocks_it() {
        let t = topic(Routing::Fanout, 3, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(100);
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let mut got = Vec::new();
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            got.extend(drain(&a));
        }
        got.extend(drain(&a));
        assert_eq!(got, m);
        assert_eq!(*relay.got.lock().unwrap(), m, "once, in order");
        // A batch from the relay's own path is not handed back to it.
        let mut cursor = PublishCursor::from_relay_path();
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            drain(&a);
        }
        assert_eq!(relay.got.lock().unwrap().len(), 8);
        // Removed: nothing more reaches it.
        t.set_relay(None);
        let mut cursor = PublishCursor::default();
        while let Progress::Blocked(_) = t.publish(refs.as_slice(), &mut cursor) {
            drain(&a);
        }
        assert_eq!(relay.got.lock().unwrap().len(), 8);
    }

    #[test]
    fn a_publish_blocked_on_the_relay_goes_on_when_the_relay_is_removed() {
        let t = topic(Routing::Fanout, 100, Backpressure::Block, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        t.set_relay(Some(RecordingRelay::with_room(2)));
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Blocked(Blocker::Relay)
        ));
        t.set_relay(None);
        assert!(matches!(
            t.publish(refs.as_slice(), &mut cursor),
            Progress::Done
        ));
        assert_eq!(drain(&a), m);
    }

    #[test]
    fn drop_newest_drops_what_a_full_relay_cannot_take_and_counts_it() {
        let t = topic(Routing::Fanout, 100, Backpressure::DropNewest, 1);
        let a = Arc::new(Outbox::new());
        t.subscribe(1, a.clone(), 1000, 0);
        let relay = RecordingRelay::with_room(5);
        t.set_relay(Some(relay.clone()));
        let m = msgs(8);
        assert!(matches!(publish_all(&t, &m), Progress::Done));
        assert_eq!(*relay.got.lock().unwrap(), m[..5].to_vec());
        assert_eq!(drain(&a), m, "the outbox subscriber is not held back");
        assert_eq!(t.counters().dropped.load(Ordering::Relaxed), 3);
        assert_eq!(
            *relay.told_dropped.lock().unwrap(),
            3,
            "its readers are told"
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

    #[tokio::test]
    async fn a_relay_blocker_resolves_after_the_poll_period() {
        let started = std::time::Instant::now();
        Blocker::Relay.wait().await;
        assert!(started.elapsed() >= RELAY_ROOM_POLL);
    }

    #[tokio::test]
    async fn a_publisher_blocked_on_a_subscriber_resumes_when_that_subscriber_leaves() {
        let t = topic(Routing::Fanout, 2, Backpressure::Block, 1);
        let stuck = Arc::new(Outbox::new());
        let live = Arc::new(Outbox::new());
        t.subscribe(1, stuck.clone(), 1000, 0);
        t.subscribe(2, live.clone(), 1000, 0);
        let m = msgs(5);
        let refs: Vec<&[u8]> = m.iter().map(|p| p.as_slice()).collect();
        let mut cursor = PublishCursor::default();
        let Progress::Blocked(blocker) = t.publish(refs.as_slice(), &mut cursor) else {
            panic!("the stuck subscriber's outbox is full: the publish must block");
        };
        let waiter = tokio::spawn(async move { blocker.wait().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing changed yet");
        assert!(t.unsubscribe(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends when the blocking subscriber leaves")
            .expect("no panic");
        let mut got = Vec::new();
        loop {
            let progress = t.publish(refs.as_slice(), &mut cursor);
            got.extend(drain(&live));
            if matches!(progress, Progress::Done) {
                break;
            }
        }
        assert_eq!(got, m, "the remaining subscriber gets every message once");
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
    fn a_busy_topic_does_not_use_up_a_quiet_topics_room_on_the_same_connection() {
        // Regression: the limit once counted every message in the connection's outbox.
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
        // Regression: the byte limit once refused credited deliveries, and the publish looped
        // forever placing zero messages while holding the topic's lock.
        let t = topic(Routing::Queue, 100, Backpressure::Block, 4);
        let c = Arc::new(Outbox::new());
        let other_topic = vec![0u8; mycelium_transport::outbox::OUTBOX_MAX_BYTES];
        c.append_messages(99, &[&other_topic], 10);
        t.subscribe(1, c.clone(), 1000, 0);
        assert!(matches!(publish_all(&t, &msgs(3)), Progress::Done));
        assert_eq!(t.backlog_len(), 0);
        assert_eq!(c.queued_messages(), 4);
    }

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

        fn deal(&self, slot: u32, payloads: &mut dyn Iterator<Item = &[u8]>) -> usize {
            let mut got = self.got.lock().unwrap();
            let mut taken = 0;
            for payload in payloads {
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
        let requeued: Vec<Bytes> = relay
            .got
            .lock()
            .unwrap()
            .drain(..)
            .filter(|(slot, _)| *slot == 1)
            .map(|(_, p)| Bytes::from(p))
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
                .map(|b| b.to_vec())
                .collect::<Vec<_>>(),
            "requeued messages go first"
        );
        assert_eq!(
            t.counters().dropped.load(Ordering::Relaxed),
            0,
            "nothing dropped for a full relay"
        );
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
}
