//! [`ShmRings`]: which shared-memory rings each topic has, and who holds which slot in them.
//!
//! - The broker creates every ring (a sealed memfd, `docs/shm-layout.md`) and stays on the
//!   control path only: it never reads or writes a frame of a publisher's ring.
//! - A shared-memory publisher gets a fresh ring of its own per topic: one writer per ring, so
//!   a publisher killed mid-write leaves at most an unpublished frame nobody will read.
//! - A shared-memory subscriber gets a consumer slot in every publisher ring of its topic, plus
//!   one in the topic's relay ring. The broker writes into the relay ring every message that
//!   socket publishers publish on the topic (the topic's [`Relay`]), so shared-memory
//!   subscribers hear them too; and it raises the notice in a subscriber's relay slot when it
//!   has news for it. On a queue topic the relay ring carries queue frames instead: the topic
//!   deals each socket publisher's message to one consumer, and a shared-memory consumer's
//!   share is written into the relay ring addressed to its slot (the topic's [`QueueRelay`]);
//!   see [`RelayRing`] for who gets what and what survives a consumer's death. Slots are
//!   reserved by the broker *before* a
//!   ring's fd leaves it, so a subscriber never misses a frame published after it attached,
//!   even one published before it has mapped the ring.
//! - When a publisher leaves, its subscribers are told to drain its ring and drop it; when a
//!   subscriber leaves (or its process dies), the broker frees its slots, so a lossless ring
//!   never waits on a dead reader.
//! - The topic's `backpressure` decides each ring's mode when it is created: `drop_oldest`
//!   makes the publisher rings and the relay ring lossy (the oldest frames are overwritten
//!   and a lapped subscriber is told how many it missed); `drop_newest` marks publisher rings
//!   so that their publisher drops a message that does not fit (counted in the ring, read
//!   here for the stats); `block` and `disconnect` rings are lossless and wait. On a fanout
//!   relay ring the topic applies the policy ([`Relay`]): a full relay ring holds the socket
//!   publisher back under `block` and `disconnect`, and drops the rest under `drop_newest`.
//!   Under `disconnect` the watchdog detaches a subscriber that holds a waiting publisher
//!   back, in a publisher ring or in the relay ring alike. A queue topic
//!   with `drop_oldest` is refused shared memory: an overwritten frame would be a message no
//!   consumer gets, with no one to count it.
//! - One lock over the whole directory: attach and detach are rare control operations, and a
//!   single lock makes "reserve slots for every subscriber, then hand out the ring" atomic
//!   against a subscriber attaching at the same moment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use mycelium_config::{Backpressure, Routing, ShmConfig};

/// How often the watchdog of `disconnect` topics looks at the rings.
const WATCHDOG_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

/// Watchdog rounds in a row a subscriber must hold a waiting publisher back before it is
/// disconnected (a subscriber that is merely slow for a moment catches up in between).
const STRIKES: u8 = 5;

/// How often a queue topic's backlog is offered to its shared-memory consumers while it is
/// not empty: they read without telling the broker, so it looks. Only while messages wait in
/// the backlog (every consumer was out of credit); an empty backlog costs nothing.
const RELAY_DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// Longest wait of a queue topic's drain task for the backlog to fill, before it checks that
/// its relay ring still exists.
const RELAY_DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(200);
use mycelium_transport::shm::{
    max_payload, producer_dropped, producer_waiting, release_slot, reserve_slot,
    set_drop_when_full, slot_backlog, wake_consumer, PushError, RingError, RingProducer,
    RingRegion, Segment, SegmentError,
};
use mycelium_transport::{ShmRing, NO_SLOT};
use tokio::sync::mpsc;

use crate::core::topic::{QueueRelay, Relay, Relayed, Topic, TopicId};
use crate::server::shm_reader::{ReaderCommand, ShmRingReader};
use mycelium_transport::shm::queue::{self, QUEUE_PREFIX};
use mycelium_transport::shm::RingConsumer;

/// Identifies one session (one shared-memory control connection) within a broker run.
pub type SessionId = u64;

/// One ring the broker created.
#[derive(Clone)]
pub struct Ring {
    /// Unique within the broker run.
    pub id: u32,
    /// The memfd, whose fd is handed to peers.
    pub segment: Arc<Segment>,
    /// The broker's own view of the ring, for reserving and releasing slots.
    region: Arc<RingRegion>,
}

impl Ring {
    /// The broker's view of the ring.
    pub(crate) fn region(&self) -> &Arc<RingRegion> {
        &self.region
    }

    /// Wakes the consumer in `slot` if it sleeps on this ring.
    pub fn wake_consumer(&self, slot: u32) {
        wake_consumer(&self.region, slot as usize);
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("id", &self.id).finish()
    }
}

/// Something a session must tell its client, sent by another session's attach or detach.
#[derive(Debug)]
pub enum SessionEvent {
    /// A publisher joined the topic of `attachment`: hand over its ring, with the slot reserved.
    RingAdded {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring and the slot reserved in it.
        ring: Ring,
        /// The reserved slot.
        slot: u32,
        /// The subscriber's relay ring and slot: woken once the frame is sent, so that a
        /// subscriber asleep on its rings looks at its control socket and finds the frame.
        wake: Option<(Ring, u32)>,
    },
    /// The broker ended `attachment` (a slow subscriber on a `disconnect` topic).
    Detached {
        /// The subscriber's attachment.
        attachment: u32,
        /// Why, for the client.
        message: String,
    },
    /// The publisher of `ring_id` left.
    RingRemoved {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring to drain and drop.
        ring_id: u32,
    },
}

/// Why an attach was refused; the message goes to the client in an `Error` frame.
#[derive(Debug, thiserror::Error)]
pub enum ShmRefusal {
    /// A configured limit is reached.
    #[error("{0}")]
    Limit(String),
    /// The topic's settings cannot be kept over shared memory.
    #[error("{0}")]
    Policy(String),
    /// Creating or initialising a segment failed.
    #[error("cannot create a shared-memory ring: {0}")]
    Segment(#[from] SegmentError),
    /// A ring the broker created is inconsistent (a peer scribbled over it).
    #[error("shared-memory ring unusable: {0}")]
    Ring(#[from] RingError),
}

/// What a granted attachment holds.
#[derive(Debug)]
pub struct Grant {
    /// The attachment id.
    pub attachment: u32,
    /// The rings with, for a subscriber, the slot reserved in each (for a publisher: one ring,
    /// slot [`NO_SLOT`]).
    pub rings: Vec<(Ring, u32)>,
}

impl Grant {
    /// The rings as carried in a `ShmGrant` frame.
    pub fn wire_rings(&self) -> Vec<ShmRing> {
        self.rings
            .iter()
            .map(|(ring, slot)| ShmRing {
                ring_id: ring.id,
                slot: *slot,
            })
            .collect()
    }
}

struct Subscriber {
    session: SessionId,
    attachment: u32,
    events: mpsc::UnboundedSender<SessionEvent>,
    /// Slot held in the topic's relay ring.
    relay_slot: u32,
    /// Slot held in each publisher ring, by ring id.
    slots: HashMap<u32, u32>,
    /// Consecutive watchdog rounds that found this subscriber holding a waiting publisher back
    /// (`disconnect` topics).
    strikes: u8,
}

struct Publisher {
    session: SessionId,
    attachment: u32,
    ring: Ring,
}

/// The broker's side of a topic's relay ring: the topic's [`Relay`] (fanout) or
/// [`QueueRelay`] (queue) while the topic has shared-memory subscribers.
///
/// On a queue topic every frame is addressed to one consumer's relay slot
/// (`mycelium_transport::shm::queue`), and the ring remembers, per slot, where each frame
/// addressed to it ends: a consumer whose `read_pos` has passed an end has read that frame, so
/// what it has still to read is exact, and the topic gives it credit (`prefetch` minus that),
/// as socket consumers get. When a consumer leaves or dies, the broker reads what was
/// addressed to its slot and not read (from the slot itself, before freeing it) and puts it
/// back at the head of the topic's backlog: such messages are dealt again, to someone else.
/// A consumer that had copied a message out but died before its `read_pos` said so (a batch
/// receive stores it once, after the batch) gets it dealt again too: at least once, for
/// messages the dead consumer had not marked read; what it had marked read and not yet
/// processed is lost with it (at most once, as on the socket path).
struct RelayRing {
    producer: Mutex<RingProducer>,
    /// Queue topics: per relay slot, the end positions of the frames addressed to it that its
    /// consumer has not passed yet, oldest first. Locked after `producer`.
    addressed: Mutex<HashMap<u32, VecDeque<u64>>>,
    /// Shared-memory subscribers reading the ring, for the topic's `delivered` counter (and,
    /// on a queue topic, whether the drain task has anyone to feed).
    readers: std::sync::atomic::AtomicU64,
    /// Queue topics: set once the task that drains the backlog into this ring runs.
    drainer: AtomicBool,
    /// Fanout topics: [`Relay::relay`] calls that stopped at a message that did not fit. A
    /// publisher held back by the relay ring (`block`, `disconnect`) offers the rest again
    /// every `RELAY_ROOM_POLL` (1 ms), so while one waits this grows between two watchdog
    /// rounds: the watchdog's counterpart of a publisher ring's `producer_parked`. A count
    /// rather than a flag, so that a publisher that gives up (its connection closes) stops
    /// counting as waiting.
    short_calls: AtomicU64,
}

impl RelayRing {
    fn new(producer: RingProducer) -> RelayRing {
        RelayRing {
            producer: Mutex::new(producer),
            addressed: Mutex::default(),
            readers: std::sync::atomic::AtomicU64::new(0),
            drainer: AtomicBool::new(false),
            short_calls: AtomicU64::new(0),
        }
    }

    fn addressed(&self) -> MutexGuard<'_, HashMap<u32, VecDeque<u64>>> {
        self.addressed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what was addressed to `slot` (its consumer is gone; the broker has taken back
    /// what it had not read).
    fn forget(&self, slot: u32) {
        self.addressed().remove(&slot);
    }
}

impl QueueRelay for RelayRing {
    fn unread(&self, slot: u32) -> Option<usize> {
        let producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (_, read_pos) = producer
            .active_consumers()
            .find(|&(index, _)| index == slot as usize)?;
        let mut addressed = self.addressed();
        let ends = addressed.entry(slot).or_default();
        // `read_pos` comes from shared memory: a consumer that fakes it only gets more of its
        // own work sooner; it cannot make the broker index or size anything with it.
        while ends.front().is_some_and(|&end| end <= read_pos) {
            ends.pop_front();
        }
        Some(ends.len())
    }

    fn deal(&self, slot: u32, payloads: &mut dyn Iterator<Item = &[u8]>) -> usize {
        let mut producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let mut addressed = self.addressed();
        let ends = addressed.entry(slot).or_default();
        let mut frame = Vec::new();
        let mut taken = 0;
        for payload in payloads {
            queue::address(&mut frame, slot as usize, payload);
            // Full: a consumer (maybe another one: all read every frame) is a ring behind.
            // TooLarge cannot happen (rings hold `max_message_size` plus the address), and
            // would only leave the message to the socket consumers or the backlog.
            if producer.try_push(&frame).is_err() {
                break;
            }
            ends.push_back(producer.position());
            taken += 1;
        }
        drop(addressed);
        if let Err(error) = producer.publish_and_wake() {
            tracing::warn!(%error, "waking shared-memory consumers of the relay ring failed");
        }
        taken
    }
}

impl std::fmt::Debug for RelayRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayRing")
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

impl Relay for RelayRing {
    fn relay(&self, payloads: &mut dyn Iterator<Item = &[u8]>) -> Relayed {
        let mut producer = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (mut passed, mut dropped) = (0, 0);
        let mut full = false;
        for payload in payloads {
            match producer.try_push(payload) {
                Ok(()) => passed += 1,
                // The slowest shared-memory subscriber is a whole ring behind: stop here (never
                // a later message before an earlier); the topic's policy waits or drops.
                Err(PushError::Full) => {
                    full = true;
                    break;
                }
                Err(error) => {
                    // Cannot happen: the ring holds `max_message_size`, checked before routing.
                    // Waiting would not help such a message: drop it alone, counted.
                    tracing::warn!(%error, "a message does not fit the relay ring at all: dropped for shared-memory subscribers");
                    passed += 1;
                    dropped += 1;
                }
            }
        }
        if full {
            self.short_calls.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = producer.publish_and_wake() {
            tracing::warn!(%error, "waking shared-memory subscribers of the relay ring failed");
        }
        Relayed {
            passed,
            dropped,
            readers: self.readers.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct TopicRings {
    /// Written by the broker; created with the topic's first shared-memory subscriber.
    relay: Option<Ring>,
    /// The broker's producer of `relay`, installed as the topic's relay while there are
    /// shared-memory subscribers.
    relay_sink: Option<Arc<RelayRing>>,
    /// The topic, to remove its relay when the last shared-memory subscriber leaves.
    topic: Option<Arc<Topic>>,
    /// While the topic has socket subscribers: the slot the broker's reader holds in each
    /// publisher ring, by ring id.
    reader_slots: HashMap<u32, u32>,
    /// This topic's reader thread, started the first time the topic needs one: one per topic,
    /// so that a slow socket subscriber (which stops its topic's reader under `block`) never
    /// holds up another topic.
    reader: Option<ShmRingReader>,
    publishers: Vec<Publisher>,
    subscribers: Vec<Subscriber>,
    /// Messages dropped (`drop_newest`) by publishers that have left, as their rings last
    /// said; the live publishers' counts are read from their rings when asked.
    retired_dropped: u64,
    /// The relay ring's `short_calls` as the watchdog last read it.
    relay_short_calls_seen: u64,
}

/// Every topic's rings and attachments.
pub struct ShmRings {
    config: ShmConfig,
    /// Set once the watchdog of `disconnect` topics runs.
    watchdog: std::sync::OnceLock<()>,
    topics: Mutex<HashMap<TopicId, TopicRings>>,
    next_ring: AtomicU32,
    next_attachment: AtomicU32,
}

impl std::fmt::Debug for ShmRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmRings")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ShmRings {
    /// An empty directory for rings shaped by `config`.
    pub fn new(config: ShmConfig) -> ShmRings {
        ShmRings {
            config,
            watchdog: std::sync::OnceLock::new(),
            topics: Mutex::default(),
            next_ring: AtomicU32::new(1),
            next_attachment: AtomicU32::new(1),
        }
    }

    /// Whether clients may ask for shared memory at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicId, TopicRings>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Data bytes of a ring for `topic`: the configured size, or the next power of two whose
    /// half holds the topic's largest message (with a queue frame's address).
    pub fn ring_capacity(&self, topic: &Topic) -> u64 {
        let mut capacity = self.config.ring_bytes;
        let largest = topic.config().max_message_size + QUEUE_PREFIX;
        while max_payload(capacity) < largest {
            capacity *= 2;
        }
        capacity
    }

    /// A new ring for `topic`, and its producer (dropped for a publisher's ring: the
    /// publisher process adopts the ring instead).
    ///
    /// The ring is lossy under `drop_oldest`. The mode is fixed for the ring's life: the
    /// topic's settings do not change while the broker runs (there is no config reload).
    fn create_ring(&self, topic: &Topic, role: &str) -> Result<(Ring, RingProducer), ShmRefusal> {
        let id = self.next_ring.fetch_add(1, Ordering::Relaxed);
        let name = format!("mycelium:{}:{role}:{id}", topic.name());
        let lossy = topic.config().backpressure == Backpressure::DropOldest;
        let (segment, producer) = Segment::create_ring_with_mode(
            &name,
            self.ring_capacity(topic),
            self.config.max_subscribers,
            lossy,
        )?;
        let region = Arc::clone(producer.region());
        let ring = Ring {
            id,
            segment: Arc::new(segment),
            region,
        };
        Ok((ring, producer))
    }

    /// Refuses shared memory to a queue topic with `drop_oldest`: its rings would be lossy,
    /// and a frame overwritten before its one addressee read it would be a message nobody
    /// gets, uncounted. Such a topic works over the socket (where the backlog drops its
    /// oldest, counted).
    fn check_policy(topic: &Topic) -> Result<(), ShmRefusal> {
        let config = topic.config();
        if config.routing == Routing::Queue && config.backpressure == Backpressure::DropOldest {
            return Err(ShmRefusal::Policy(format!(
                "queue topic '{}' has backpressure = drop_oldest, which shared memory cannot \
                 keep without losing messages uncounted; use the socket",
                topic.name()
            )));
        }
        Ok(())
    }

    /// Gives session `session` a ring of its own to publish on `topic`, and reserves a slot in
    /// it for every shared-memory subscriber of the topic (telling each through its session).
    pub fn attach_publisher(
        &self,
        topic: &Arc<Topic>,
        session: SessionId,
    ) -> Result<Grant, ShmRefusal> {
        Self::check_policy(topic)?;
        let mut topics = self.lock();
        let rings = topics.entry(topic.id()).or_default();
        let max = self.config.max_publishers_per_topic as usize;
        if rings.publishers.len() >= max {
            return Err(ShmRefusal::Limit(format!(
                "topic '{}' already has {max} shared-memory publishers (shm.max_publishers_per_topic)",
                topic.name()
            )));
        }
        let (ring, _) = self.create_ring(topic, "pub")?;
        if topic.config().backpressure == Backpressure::DropNewest {
            // Before the fd leaves: the publisher reads the policy when it adopts the ring.
            set_drop_when_full(&ring.region);
        }
        for subscriber in &mut rings.subscribers {
            // A fresh ring has a free slot for every subscriber: there are at most
            // `max_subscribers` of them, and that is the ring's slot count.
            let slot = reserve_slot(&ring.region)?;
            let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
            subscriber.slots.insert(ring.id, slot);
            let added = SessionEvent::RingAdded {
                attachment: subscriber.attachment,
                ring: ring.clone(),
                slot,
                wake: rings
                    .relay
                    .clone()
                    .map(|relay| (relay, subscriber.relay_slot)),
            };
            // A session that is gone has its attachments ended by its own task.
            let _ = subscriber.events.send(added);
        }
        rings.topic.get_or_insert_with(|| Arc::clone(topic));
        if !rings.reader_slots.is_empty() || topic.subscriber_count() > 0 {
            // Socket subscribers are there: the broker reads this ring for them too.
            start_reading(topic, &ring, rings);
        }
        let attachment = self.next_attachment.fetch_add(1, Ordering::Relaxed);
        rings.publishers.push(Publisher {
            session,
            attachment,
            ring: ring.clone(),
        });
        Ok(Grant {
            attachment,
            rings: vec![(ring, NO_SLOT)],
        })
    }

    /// Subscribes session `session` to `topic` over shared memory: a slot in the relay ring
    /// and in every publisher ring, each starting at what is published now.
    pub fn attach_subscriber(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        session: SessionId,
        events: mpsc::UnboundedSender<SessionEvent>,
    ) -> Result<Grant, ShmRefusal> {
        Self::check_policy(topic)?;
        if topic.config().backpressure == Backpressure::Disconnect {
            self.start_watchdog();
        }
        let mut topics = self.lock();
        let rings = topics.entry(topic.id()).or_default();
        let max = self.config.max_subscribers as usize;
        if rings.subscribers.len() >= max {
            return Err(ShmRefusal::Limit(format!(
                "topic '{}' already has {max} shared-memory subscribers (shm.max_subscribers)",
                topic.name()
            )));
        }
        rings.topic.get_or_insert_with(|| Arc::clone(topic));
        let relay = match &rings.relay {
            Some(relay) => relay.clone(),
            None => {
                let (ring, producer) = self.create_ring(topic, "relay")?;
                rings.relay_sink = Some(Arc::new(RelayRing::new(producer)));
                rings.relay.insert(ring).clone()
            }
        };
        let all: Vec<Ring> = std::iter::once(relay)
            .chain(rings.publishers.iter().map(|p| p.ring.clone()))
            .collect();
        let mut granted = Vec::with_capacity(all.len());
        for ring in all {
            match reserve_slot(&ring.region) {
                Ok(slot) => granted.push((ring, u32::try_from(slot).unwrap_or(NO_SLOT))),
                Err(error) => {
                    // All or nothing: give back what this attach took.
                    for (ring, slot) in &granted {
                        let _ = release_slot(&ring.region, *slot as usize);
                    }
                    return Err(error.into());
                }
            }
        }
        if let Some(sink) = &rings.relay_sink {
            // From the first shared-memory subscriber on, socket publishers' messages are
            // copied into the relay ring too; the slot reserved above starts at what the
            // relay ring has published, so the subscriber sees every later one. On a queue
            // topic the subscriber becomes one of the topic's consumers instead, dealt its
            // share through the relay ring.
            if sink.readers.fetch_add(1, Ordering::Relaxed) == 0 {
                topic.set_relay(Some(Arc::clone(sink) as Arc<dyn Relay>));
                topic.set_queue_relay(Some(Arc::clone(sink) as Arc<dyn QueueRelay>));
            }
            if topic.config().routing == Routing::Queue {
                start_draining(topic, sink);
                topic.subscribe_relayed(granted[0].1);
            }
        }
        let attachment = self.next_attachment.fetch_add(1, Ordering::Relaxed);
        // `granted[0]` is the relay ring.
        rings.subscribers.push(Subscriber {
            session,
            attachment,
            events,
            relay_slot: granted[0].1,
            strikes: 0,
            slots: granted[1..]
                .iter()
                .map(|(ring, slot)| (ring.id, *slot))
                .collect(),
        });
        Ok(Grant {
            attachment,
            rings: granted,
        })
    }

    /// Called when `topic` gains or loses socket subscribers: the broker reads the topic's
    /// publisher rings exactly while it has some. Reading starts (slots reserved) before this
    /// returns, so a socket subscriber whose subscription is acknowledged after it sees every
    /// message published from then on.
    pub fn socket_subscribers_changed(&self, topic: &Arc<Topic>) {
        let mut topics = self.lock();
        let Some(rings) = topics.get_mut(&topic.id()) else {
            return;
        };
        let wanted = topic.subscriber_count() > 0;
        if wanted && rings.reader_slots.is_empty() {
            let publisher_rings: Vec<Ring> =
                rings.publishers.iter().map(|p| p.ring.clone()).collect();
            for ring in &publisher_rings {
                start_reading(topic, ring, rings);
            }
        } else if !wanted && !rings.reader_slots.is_empty() {
            if let Some(reader) = &rings.reader {
                for (ring_id, _) in rings.reader_slots.drain() {
                    reader.send(ReaderCommand::Stop {
                        ring_id,
                        drain: false,
                        release: true,
                    });
                }
            }
        }
    }

    /// Ends attachment `attachment` of `session`; returns whether it existed.
    pub fn detach(&self, session: SessionId, attachment: u32) -> bool {
        let mut topics = self.lock();
        topics
            .values_mut()
            .any(|rings| detach_from(rings, |s, a| s == session && a == attachment))
    }

    /// Ends every attachment of `session` (its connection closed, or its process died).
    pub fn detach_session(&self, session: SessionId) {
        let mut topics = self.lock();
        for rings in topics.values_mut() {
            while detach_from(rings, |s, _| s == session) {}
        }
    }

    /// Starts (once) the thread that disconnects shared-memory subscribers of `disconnect`
    /// topics that hold a waiting publisher back; it ends with the last `Arc` of `self`.
    fn start_watchdog(self: &Arc<Self>) {
        self.watchdog.get_or_init(|| {
            let rings = Arc::downgrade(self);
            let started = std::thread::Builder::new()
                .name("shm-watchdog".into())
                .spawn(move || {
                    while let Some(rings) = rings.upgrade() {
                        rings.disconnect_slow_subscribers();
                        drop(rings);
                        std::thread::sleep(WATCHDOG_PERIOD);
                    }
                });
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the shared-memory watchdog: slow subscribers of disconnect topics will hold publishers back");
            }
        });
    }

    /// One watchdog round: a subscriber of a `disconnect` topic that holds a publisher back
    /// (three quarters of a ring behind, or half a ring while the publisher waits for room) in
    /// [`STRIKES`] rounds in a row is detached (its slots freed, the publisher released) and
    /// told why. The relay ring counts as a publisher ring whose publisher is the broker,
    /// waiting while a socket publisher is held back by it.
    fn disconnect_slow_subscribers(&self) {
        let mut topics = self.lock();
        for rings in topics.values_mut() {
            let Some(topic) = rings.topic.clone() else {
                continue;
            };
            if topic.config().backpressure != Backpressure::Disconnect {
                continue;
            }
            // A subscriber is behind when it holds its publisher back: more than half a ring
            // behind while the publisher waits for room, or three quarters of a ring behind
            // whatever the publisher does (one that only tries to publish never waits).
            let capacity = self.ring_capacity(&topic);
            let publishers: Vec<(Ring, bool)> = rings
                .publishers
                .iter()
                .map(|p| (p.ring.clone(), producer_waiting(&p.ring.region)))
                .collect();
            // Fanout only: on a queue topic a full relay ring sends messages to other
            // consumers or the backlog, and holds no publisher back.
            let fanout = topic.config().routing == Routing::Fanout;
            let short_calls = rings
                .relay_sink
                .as_ref()
                .map_or(0, |sink| sink.short_calls.load(Ordering::Relaxed));
            let relay_waiting = short_calls != rings.relay_short_calls_seen;
            rings.relay_short_calls_seen = short_calls;
            let relay = rings
                .relay
                .clone()
                .filter(|_| fanout)
                .map(|ring| (ring, relay_waiting));
            let holds_back = |ring: &Ring, waiting: bool, slot: u32| {
                slot_backlog(&ring.region, slot as usize).is_some_and(|backlog| {
                    backlog > capacity / 4 * 3 || (waiting && backlog > capacity / 2)
                })
            };
            let mut slow = Vec::new();
            for subscriber in &mut rings.subscribers {
                let behind = publishers.iter().any(|(ring, waiting)| {
                    subscriber
                        .slots
                        .get(&ring.id)
                        .is_some_and(|&slot| holds_back(ring, *waiting, slot))
                }) || relay.as_ref().is_some_and(|(ring, waiting)| {
                    holds_back(ring, *waiting, subscriber.relay_slot)
                });
                subscriber.strikes = if behind { subscriber.strikes + 1 } else { 0 };
                if subscriber.strikes >= STRIKES {
                    slow.push((
                        subscriber.session,
                        subscriber.attachment,
                        subscriber.events.clone(),
                    ));
                }
            }
            for (session, attachment, events) in slow {
                detach_from(rings, |s, a| s == session && a == attachment);
                topic.counters().dropped.fetch_add(1, Ordering::Relaxed);
                let message = format!(
                    "shared-memory subscriber fell a ring behind on topic '{}' (backpressure = disconnect)",
                    topic.name()
                );
                tracing::warn!(
                    topic = topic.name(),
                    attachment,
                    "disconnecting a slow shared-memory subscriber"
                );
                let _ = events.send(SessionEvent::Detached {
                    attachment,
                    message,
                });
            }
        }
    }

    /// Attachments `session` holds now, over every topic.
    pub fn attachments_of(&self, session: SessionId) -> usize {
        self.lock()
            .values()
            .map(|rings| {
                rings
                    .publishers
                    .iter()
                    .filter(|p| p.session == session)
                    .count()
                    + rings
                        .subscribers
                        .iter()
                        .filter(|s| s.session == session)
                        .count()
            })
            .sum()
    }

    /// Messages the shared-memory publishers of `topic` dropped for lack of room
    /// (`drop_newest`): those that left, plus what the live ones' rings say now. Read from
    /// shared memory, so a scribbled counter may mislead the sum (it saturates), never more.
    pub fn dropped_in_rings(&self, topic: TopicId) -> u64 {
        self.lock().get(&topic).map_or(0, |rings| {
            rings
                .publishers
                .iter()
                .fold(rings.retired_dropped, |sum, p| {
                    sum.saturating_add(producer_dropped(&p.ring.region))
                })
        })
    }

    /// Shared-memory publishers and subscribers of `topic`.
    pub fn attachment_counts(&self, topic: TopicId) -> (usize, usize) {
        self.lock()
            .get(&topic)
            .map_or((0, 0), |r| (r.publishers.len(), r.subscribers.len()))
    }
}

/// Reserves a slot for the topic's reader in `ring` (starting the reader thread, inside the
/// broker's runtime, if the topic has none yet) and tells the reader to read it.
fn start_reading(topic: &Arc<Topic>, ring: &Ring, rings: &mut TopicRings) {
    if rings.reader.is_none() {
        let started = tokio::runtime::Handle::try_current()
            .map_err(std::io::Error::other)
            .and_then(|runtime| ShmRingReader::start(runtime, topic.name()));
        match started {
            Ok(reader) => rings.reader = Some(reader),
            Err(error) => {
                tracing::error!(topic = topic.name(), %error, "cannot start a shared-memory reader thread: shared-memory messages will not reach socket subscribers");
                return;
            }
        }
    }
    let Some(reader) = &rings.reader else {
        return;
    };
    match reserve_slot(&ring.region) {
        Ok(slot) => {
            let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
            rings.reader_slots.insert(ring.id, slot);
            reader.send(ReaderCommand::Read {
                topic: Arc::clone(topic),
                ring: ring.clone(),
                slot,
            });
        }
        Err(error) => {
            tracing::warn!(topic = topic.name(), ring = ring.id, %error, "no slot for the broker's reader: this publisher's messages will not reach socket subscribers");
        }
    }
}

/// Starts (once per relay ring, inside the broker's runtime) the task that offers a queue
/// topic's backlog to its shared-memory consumers: they read without telling the broker, so
/// while messages wait the task looks every [`RELAY_DRAIN_POLL`]. It ends with the topic or
/// the relay ring.
fn start_draining(topic: &Arc<Topic>, sink: &Arc<RelayRing>) {
    if sink.drainer.swap(true, Ordering::Relaxed) {
        return;
    }
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime,
        Err(error) => {
            sink.drainer.store(false, Ordering::Relaxed);
            tracing::error!(topic = topic.name(), %error, "no runtime for the relay drain task: a backlog reaches shared-memory consumers only as socket publishers publish");
            return;
        }
    };
    let (topic, sink) = (Arc::downgrade(topic), Arc::downgrade(sink));
    runtime.spawn(drain_into_relay(topic, sink));
}

async fn drain_into_relay(topic: Weak<Topic>, sink: Weak<RelayRing>) {
    loop {
        let (Some(topic), Some(sink)) = (topic.upgrade(), sink.upgrade()) else {
            return;
        };
        let feeding = sink.readers.load(Ordering::Relaxed) > 0;
        drop(sink);
        if feeding && topic.backlog_len() > 0 {
            topic.drain_backlog_now();
            drop(topic);
            tokio::time::sleep(RELAY_DRAIN_POLL).await;
        } else {
            let _ = tokio::time::timeout(RELAY_DRAIN_IDLE, topic.wait_backlogged()).await;
        }
    }
}

/// Reads, from `slot` of the relay ring itself, the messages addressed to it that its
/// consumer (gone now) did not read, and puts them back at the head of the topic's backlog.
/// What cannot be read back (a ring a peer corrupted) is counted as dropped.
fn take_back(topic: &Arc<Topic>, relay: &Ring, sink: &RelayRing, slot: u32) {
    let unread = sink.unread(slot).unwrap_or(0);
    let mut messages = Vec::new();
    let read = match RingConsumer::adopt(&relay.region, slot as usize) {
        // Dropping an adopted consumer leaves the slot held: the caller frees it.
        Ok(mut consumer) => loop {
            let count = consumer.try_recv_batch(4096, |frame| {
                if let Some(message) = queue::addressed_to(frame, slot as usize) {
                    messages.push(Bytes::copy_from_slice(message));
                }
            });
            match count {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(error) => break Err(error.to_string()),
            }
        },
        Err(error) => Err(error.to_string()),
    };
    sink.forget(slot);
    if let Err(error) = read {
        let lost = unread.saturating_sub(messages.len()) as u64;
        tracing::warn!(topic = topic.name(), slot, lost, %error, "cannot take back what a departed shared-memory consumer left unread");
        topic.counters().dropped.fetch_add(lost, Ordering::Relaxed);
    }
    if !messages.is_empty() {
        tracing::debug!(
            topic = topic.name(),
            slot,
            count = messages.len(),
            "dealing again what a departed shared-memory consumer left unread"
        );
        topic.requeue_front(messages);
    }
}

/// Removes the first attachment of `rings` that `matches`; returns whether one was removed.
fn detach_from(rings: &mut TopicRings, matches: impl Fn(SessionId, u32) -> bool) -> bool {
    if let Some(at) = rings
        .publishers
        .iter()
        .position(|p| matches(p.session, p.attachment))
    {
        let publisher = rings.publishers.swap_remove(at);
        let ring_id = publisher.ring.id;
        rings.retired_dropped = rings
            .retired_dropped
            .saturating_add(producer_dropped(&publisher.ring.region));
        if rings.reader_slots.remove(&ring_id).is_some() {
            if let Some(reader) = &rings.reader {
                // What the publisher published before it left still goes to socket
                // subscribers.
                reader.send(ReaderCommand::Stop {
                    ring_id,
                    drain: true,
                    release: false,
                });
            }
        }
        for subscriber in &mut rings.subscribers {
            if subscriber.slots.remove(&ring_id).is_some() {
                // The subscriber drains and drops the ring; its slot dies with the segment.
                let _ = subscriber.events.send(SessionEvent::RingRemoved {
                    attachment: subscriber.attachment,
                    ring_id,
                });
            }
        }
        return true;
    }
    if let Some(at) = rings
        .subscribers
        .iter()
        .position(|s| matches(s.session, s.attachment))
    {
        let subscriber = rings.subscribers.swap_remove(at);
        if let (Some(relay), Some(sink), Some(topic)) =
            (&rings.relay, &rings.relay_sink, &rings.topic)
        {
            if topic.unsubscribe_relayed(subscriber.relay_slot) {
                // Nothing more is dealt to the slot: take back what it has not read.
                take_back(topic, relay, sink, subscriber.relay_slot);
            }
        }
        // The broker reserved these slots and only the broker frees them (a subscriber's
        // consumers leave their slots held), so a slot is never freed twice, even when the
        // subscriber died and another has attached since.
        if let Some(relay) = &rings.relay {
            let _ = release_slot(&relay.region, subscriber.relay_slot as usize);
        }
        if let (Some(sink), Some(topic)) = (&rings.relay_sink, &rings.topic) {
            if sink.readers.fetch_sub(1, Ordering::Relaxed) == 1 {
                // Nobody reads the relay ring now: stop copying socket messages into it.
                topic.set_relay(None);
                topic.set_queue_relay(None);
            }
        }
        for publisher in &rings.publishers {
            if let Some(&slot) = subscriber.slots.get(&publisher.ring.id) {
                let _ = release_slot(&publisher.ring.region, slot as usize);
            }
        }
        return true;
    }
    false
}
