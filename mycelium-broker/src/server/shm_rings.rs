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
//!   see `RelayRing` for who gets what and what survives a consumer's death. Slots are
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
//!   back, in a publisher ring or in the relay ring alike; under `block` it does so after
//!   `publish_deadline_ms` in a publisher ring, and the held socket publish does it for the
//!   relay ring (the topic's `give_up`, through [`Relay::detach_laggards`], and on a queue
//!   topic whose backlog stays full, [`QueueRelay::detach_laggards`]). A queue topic
//!   with `drop_oldest` is refused shared memory: an overwritten frame would be a message no
//!   consumer gets, with no one to count it.
//! - A relay ring lives exactly while its topic has shared-memory subscribers: the first
//!   one's attach creates it, and the last one's leaving (a detach, a session that ends or
//!   dies, a watchdog or deadline detach) frees it, memfd and mapping. A publisher's ring
//!   lives as long as its attachment.
//! - A hot reload changes the `[shm]` settings for what is created from then on
//!   ([`ShmRings::set_config`]): a ring keeps the size, slot count and mode it was created
//!   with (a publisher's until it attaches again, the relay ring until its topic's
//!   shared-memory subscribers have all left), and `max_publishers_per_topic` and `enabled`
//!   are checked at each attach or session. A topic the reload removed has every attachment ended
//!   ([`ShmRings::remove_topic`]): its sessions are told (`ShmDetached`, `TopicRemoved`) and
//!   its rings freed.
//! - One lock over the whole directory: attach and detach are rare control operations, and a
//!   single lock makes "reserve slots for every subscriber, then hand out the ring" atomic
//!   against a subscriber attaching at the same moment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use arc_swap::ArcSwap;
use mycelium_config::{Backpressure, Routing, ShmConfig};
use mycelium_transport::ErrorCode;

/// How often the watchdog of `disconnect` topics (and of `block` topics with a
/// `publish_deadline_ms`) looks at the rings.
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
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{
    check_payload_fd, producer_dropped, producer_waiting, release_slot, reserve_slot,
    set_drop_when_full, slot_backlog, slot_positions, wake_consumer, PayloadWriter, PushError,
    RingError, RingProducer, RingRegion, Segment, SegmentError,
};
use mycelium_transport::{ShmRing, NO_SLOT};
use std::os::fd::{AsFd, OwnedFd};
use tokio::sync::{mpsc, oneshot};

use mycelium_transport::limits::MAX_SEGMENTS_IN_FLIGHT;

use crate::core::topic::{QueueRelay, Relay, Relayed, Topic, TopicId};
use crate::server::shm_reader::{ReaderCommand, ShmRingReader};
use crate::server::supervisor::Supervisor;
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
    /// Data bytes, as created: a reload's `ring_bytes` applies to later rings only.
    capacity: u64,
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
    /// The broker ended `attachment`: a slow subscriber on a `disconnect` topic
    /// (`SlowConsumer`), or any attachment of a topic a reload removed (`TopicRemoved`).
    Detached {
        /// The attachment.
        attachment: u32,
        /// Why, as an error code.
        code: ErrorCode,
        /// Why, for the client.
        message: String,
    },
    /// A payload segment for one of the subscriber's rings: send `ShmSegmentAdded`, with the
    /// fd unless it is `None` (dropped for this subscriber).
    SegmentAdded {
        /// The subscriber's attachment.
        attachment: u32,
        /// The ring whose reference frame names the segment.
        ring_id: u32,
        /// The segment's id and the message's length.
        reference: SegmentRef,
        /// The segment's memfd, shared by every recipient; `None`: dropped.
        fd: Option<Arc<OwnedFd>>,
        /// Told once the frame is written to the subscriber's socket: the publisher's `Ack`
        /// waits for it, so the fd is in the subscriber's socket before the reference frame
        /// is in the ring. Dropped unsent if the session is gone.
        sent: Option<oneshot::Sender<()>>,
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

/// Why a payload segment was refused; the message goes to the publisher in an `Error` frame.
#[derive(Debug, thiserror::Error)]
pub enum SegmentRefusal {
    /// The session holds no such publisher attachment.
    #[error("no publisher attachment {0} on this session")]
    NoAttachment(u32),
    /// The segment or its description is unacceptable.
    #[error("payload segment refused: {0}")]
    Bad(String),
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
    /// To this subscriber's session task; an event may hold a payload segment's fd, bounded
    /// by [`MAX_SEGMENTS_IN_FLIGHT`] per ring.
    events: mpsc::UnboundedSender<SessionEvent>,
    /// Per ring id: payload segments sent and not yet known read ([`InFlight`]).
    in_flight: HashMap<u32, InFlight>,
    /// Slot held in the topic's relay ring.
    relay_slot: u32,
    /// Slot held in each publisher ring, by ring id.
    slots: HashMap<u32, u32>,
    /// Watchdog rounds that found this subscriber holding a waiting publisher back, since it
    /// last read or caught up (rounds in which it stayed stopped but its publisher happened
    /// not to be asleep neither count nor start the count again).
    strikes: u32,
    /// `drop_newest` topics: whether a ring this subscriber held full dropped a message (or
    /// held its publisher waiting) during the current run of strikes (a reader that stops
    /// while nobody publishes harms no one).
    held_a_drop: bool,
    /// This subscriber's `read_pos` in each watched ring (by ring id, the relay ring's
    /// included) at the last watchdog round, to tell a stopped reader from a slow one.
    last_read: HashMap<u32, u64>,
}

struct Publisher {
    session: SessionId,
    attachment: u32,
    /// To this publisher's session task: told when the broker ends the attachment.
    events: mpsc::UnboundedSender<SessionEvent>,
    ring: Ring,
    /// The id of the last payload segment it sent: ids must increase.
    last_segment: Option<u64>,
    /// `drop_newest` topics: the ring's `dropped` counter at the last watchdog round.
    dropped_seen: u64,
}

/// Payload segments handed to one reader of one ring whose reference frames it may not have
/// read yet: for each, the ring's `write_pos` when it was handed over. Its reference frame
/// comes after that position (the sender writes it after the hand-over) and before the
/// `write_pos` at the next hand-over (the sender publishes it before it sends the next), so
/// a segment is surely read once the reader's `read_pos` has passed the next one's position.
#[derive(Debug, Default)]
struct InFlight(VecDeque<u64>);

impl InFlight {
    /// Whether one more segment may go to a reader at `read_pos` of a ring published up to
    /// `write_pos` (then counted), or must be dropped for it.
    fn admit(&mut self, write_pos: u64, read_pos: u64) -> bool {
        while !self.0.is_empty() {
            let next = self.0.get(1).copied().unwrap_or(write_pos);
            if read_pos >= next {
                self.0.pop_front();
            } else {
                break;
            }
        }
        if self.0.len() >= MAX_SEGMENTS_IN_FLIGHT {
            return false;
        }
        self.0.push_back(write_pos);
        true
    }
}

/// One segment to hand to a ring's readers.
struct Handover<'a> {
    ring: &'a Ring,
    reference: SegmentRef,
    fd: Arc<OwnedFd>,
    /// Queue topics: the one slot the message is addressed to.
    recipient: Option<u32>,
}

/// Hands `handover` to every reader of its ring (the addressed one only, on a queue topic):
/// shared-memory subscribers through their sessions, the broker's own reader through its
/// commands. Returns the `sent` receivers of the subscribers' events and how many readers
/// the message was dropped for.
fn hand_over(
    rings: &mut TopicRings,
    handover: &Handover<'_>,
    confirm: bool,
) -> (Vec<oneshot::Receiver<()>>, u64) {
    let ring = handover.ring;
    let mut waits = Vec::new();
    let mut dropped = 0;
    let wake = rings.relay.clone();
    for subscriber in &mut rings.subscribers {
        let slot = if rings.relay.as_ref().is_some_and(|r| r.id == ring.id) {
            Some(subscriber.relay_slot)
        } else {
            subscriber.slots.get(&ring.id).copied()
        };
        let Some(slot) = slot else { continue };
        if handover.recipient.is_some_and(|r| r != slot) {
            continue;
        }
        let admitted =
            slot_positions(&ring.region, slot as usize).is_some_and(|(write_pos, read_pos)| {
                subscriber
                    .in_flight
                    .entry(ring.id)
                    .or_default()
                    .admit(write_pos, read_pos)
            });
        if !admitted {
            dropped += 1;
        }
        let (sent, wait) = if confirm {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let event = SessionEvent::SegmentAdded {
            attachment: subscriber.attachment,
            ring_id: ring.id,
            reference: handover.reference,
            fd: admitted.then(|| Arc::clone(&handover.fd)),
            sent,
        };
        if subscriber.events.send(event).is_ok() {
            waits.extend(wait);
            if let Some(relay) = &wake {
                // A subscriber asleep on its rings looks at its socket when woken.
                relay.wake_consumer(subscriber.relay_slot);
            }
        }
    }
    if let (Some(&slot), Some(reader)) = (rings.reader_slots.get(&ring.id), &rings.reader) {
        if handover.recipient.is_none_or(|r| r == slot) {
            let admitted =
                slot_positions(&ring.region, slot as usize).is_some_and(|(write_pos, read_pos)| {
                    rings
                        .reader_in_flight
                        .entry(ring.id)
                        .or_default()
                        .admit(write_pos, read_pos)
                });
            if !admitted {
                dropped += 1;
            }
            reader.send(ReaderCommand::Segment {
                ring_id: ring.id,
                reference: handover.reference,
                fd: admitted.then(|| Arc::clone(&handover.fd)),
            });
        }
    }
    (waits, dropped)
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
    /// The producer, and the id of the next payload segment.
    producer: Mutex<(RingProducer, u64)>,
    /// Queue topics: per relay slot, the end positions of the frames addressed to it that its
    /// consumer has not passed yet, oldest first. Locked after `producer`.
    addressed: Mutex<HashMap<u32, VecDeque<u64>>>,
    /// Shared-memory subscribers reading the ring, for the topic's `delivered` counter (and,
    /// on a queue topic, whether the drain task has anyone to feed).
    readers: std::sync::atomic::AtomicU64,
    /// Queue topics: set once the task that drains the backlog into this ring runs.
    drainer: AtomicBool,
    /// The directory, to hand payload segments of messages too large for the ring to the
    /// subscribers (weak: the directory owns this relay).
    directory: std::sync::Weak<ShmRings>,
    /// The topic and the relay ring.
    topic: TopicId,
    ring: Ring,
    /// Fanout topics: [`Relay::relay`] calls that stopped at a message that did not fit. A
    /// publisher held back by the relay ring (`block`, `disconnect`) offers the rest again
    /// every `RELAY_ROOM_POLL` (1 ms), so while one waits this grows between two watchdog
    /// rounds: the watchdog's counterpart of a publisher ring's `producer_parked`. A count
    /// rather than a flag, so that a publisher that gives up (its connection closes) stops
    /// counting as waiting.
    short_calls: AtomicU64,
}

impl RelayRing {
    fn new(
        producer: RingProducer,
        directory: std::sync::Weak<ShmRings>,
        topic: TopicId,
        ring: Ring,
    ) -> RelayRing {
        RelayRing {
            producer: Mutex::new((producer, 0)),
            addressed: Mutex::default(),
            readers: std::sync::atomic::AtomicU64::new(0),
            drainer: AtomicBool::new(false),
            directory,
            topic,
            ring,
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

    /// Detaches every subscriber more than half the ring behind (the watchdog's measure of
    /// one that holds a waiting publisher back), or, with `furthest` and none that far, the
    /// one furthest behind (a frame may need up to half the ring, so a reader less than half
    /// a ring behind can still hold a large one back). Returns how many. Called with no lock
    /// held (a topic's `give_up`); takes the directory's, as any detach does.
    fn detach_behind(&self, why: &str, furthest: bool) -> usize {
        let Some(directory) = self.directory.upgrade() else {
            return 0;
        };
        let mut topics = directory.lock();
        let Some(rings) = topics.get_mut(&self.topic) else {
            return 0;
        };
        // A relay ring freed since the publish blocked on it has nobody left to detach.
        if rings
            .relay
            .as_ref()
            .is_none_or(|relay| relay.id != self.ring.id)
        {
            return 0;
        }
        let Some(topic) = rings.topic.clone() else {
            return 0;
        };
        let behind: Vec<(usize, u64)> = rings
            .subscribers
            .iter()
            .enumerate()
            .filter_map(|(at, s)| {
                slot_backlog(&self.ring.region, s.relay_slot as usize).map(|b| (at, b))
            })
            .collect();
        let most = behind
            .iter()
            .map(|&(_, backlog)| backlog)
            .max()
            .unwrap_or(0);
        let half = self.ring.capacity / 2;
        let slow: Vec<_> = behind
            .iter()
            .filter(|&&(_, backlog)| backlog > half || (furthest && most > 0 && backlog == most))
            .map(|&(at, _)| {
                let subscriber = &rings.subscribers[at];
                (
                    subscriber.session,
                    subscriber.attachment,
                    subscriber.events.clone(),
                )
            })
            .collect();
        let detached = slow.len();
        detach_slow(rings, &topic, slow, why);
        detached
    }

    /// Relays a message too large for the ring: copies it into a payload segment of its own,
    /// hands that to the subscribers (on a queue topic, to the consumer of `recipient` only),
    /// then pushes the reference frame (addressed to `recipient`).
    /// [`LargeRelayError::Full`] when the ring has no room for the reference frame now (the
    /// segment handed over is then an orphan its readers close when they meet a later one).
    fn relay_large(
        &self,
        producer: &mut RingProducer,
        next: &mut u64,
        payload: &[u8],
        recipient: Option<u32>,
    ) -> Result<(), LargeRelayError> {
        let Some(directory) = self.directory.upgrade() else {
            return Err(LargeRelayError::Failed(
                "the broker is shutting down".into(),
            ));
        };
        let Ok(len) = u32::try_from(payload.len()) else {
            return Err(LargeRelayError::Failed(format!(
                "{} bytes do not fit a reference frame",
                payload.len()
            )));
        };
        // A queue topic deals from under its backlog's lock, which the directory's holder may
        // be waiting for (taking back a leaving consumer's messages): never wait for the
        // directory there. Not dealt now, the message stays in the backlog, and the drain
        // task, which holds no lock, offers it again within `RELAY_DRAIN_POLL`.
        let mut held = None;
        if recipient.is_some() {
            let Some(topics) = directory.try_lock() else {
                return Err(LargeRelayError::Busy);
            };
            held = Some(topics);
        }
        let segment = *next;
        *next += 1;
        let name = format!("mycelium:relay:{}:{segment}", self.ring.id);
        let sealed = PayloadWriter::create(&name, payload.len()).and_then(|mut writer| {
            writer.as_mut_slice().copy_from_slice(payload);
            writer.seal()
        });
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(error) => {
                return Err(LargeRelayError::Failed(format!(
                    "cannot make a payload segment: {error}"
                )));
            }
        };
        let reference = SegmentRef { segment, len };
        // Earlier reference frames are published before the hand-over, so the readers'
        // in-flight counts see them (`InFlight`).
        producer.publish();
        {
            let mut topics = held.unwrap_or_else(|| directory.lock());
            let Some(rings) = topics.get_mut(&self.topic) else {
                return Err(LargeRelayError::Failed(
                    "the topic has no rings any more".into(),
                ));
            };
            let handover = Handover {
                ring: &self.ring,
                reference,
                fd: Arc::new(sealed.into_fd()),
                recipient,
            };
            let (_, dropped) = hand_over(rings, &handover, false);
            if dropped > 0 {
                if let Some(topic) = &rings.topic {
                    topic
                        .counters()
                        .dropped
                        .fetch_add(dropped, Ordering::Relaxed);
                }
            }
        }
        let pushed = match recipient {
            None => producer.try_push_marked(&reference.encode(), true),
            Some(slot) => {
                let mut frame = Vec::new();
                queue::address(&mut frame, slot as usize, &reference.encode());
                producer.try_push_marked(&frame, true)
            }
        };
        pushed.map_err(LargeRelayError::from)
    }
}

/// Why [`RelayRing::relay_large`] (or a plain push into the relay ring) did not take a message.
#[derive(Debug)]
enum LargeRelayError {
    /// No room in the ring now: the slowest reader is a whole ring behind.
    Full,
    /// The directory is held by someone else (queue dealing never waits for it).
    Busy,
    /// The message cannot be relayed at all; waiting would not help.
    Failed(String),
}

impl From<PushError> for LargeRelayError {
    fn from(error: PushError) -> Self {
        match error {
            PushError::Full => LargeRelayError::Full,
            other => LargeRelayError::Failed(other.to_string()),
        }
    }
}

impl std::fmt::Display for LargeRelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LargeRelayError::Full => f.write_str("the relay ring is full"),
            LargeRelayError::Busy => f.write_str("the ring directory is busy"),
            LargeRelayError::Failed(reason) => f.write_str(reason),
        }
    }
}

impl QueueRelay for RelayRing {
    fn unread(&self, slot: u32) -> Option<usize> {
        let guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (_, read_pos) = guard
            .0
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
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (producer, next) = &mut *guard;
        let max = producer.max_payload().saturating_sub(QUEUE_PREFIX);
        let mut frame = Vec::new();
        let mut taken = 0;
        for payload in payloads {
            // Full: a consumer (maybe another one: all read every frame) is a ring behind;
            // the message is left to the socket consumers or the backlog.
            let pushed = if payload.len() > max {
                // Too large for the ring: a payload segment for this consumer. It takes the
                // directory's lock, so not while `addressed` is held.
                self.relay_large(producer, next, payload, Some(slot))
                    .is_ok()
            } else {
                queue::address(&mut frame, slot as usize, payload);
                producer.try_push(&frame).is_ok()
            };
            if !pushed {
                break;
            }
            self.addressed()
                .entry(slot)
                .or_default()
                .push_back(producer.position());
            taken += 1;
        }
        if let Err(error) = producer.publish_and_wake() {
            tracing::warn!(%error, "waking shared-memory consumers of the relay ring failed");
        }
        taken
    }

    fn detach_laggards(&self, why: &str) -> usize {
        // The backlog may be full for want of socket consumers' credit with the ring far
        // from full: only a consumer half a ring behind is holding the ring up.
        self.detach_behind(why, false)
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
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (producer, next) = &mut *guard;
        let (mut passed, mut dropped) = (0, 0);
        let mut full = false;
        let max = producer.max_payload();
        for payload in payloads {
            let pushed = if payload.len() > max {
                self.relay_large(producer, next, payload, None)
            } else {
                producer.try_push(payload).map_err(LargeRelayError::from)
            };
            match pushed {
                Ok(()) => passed += 1,
                // The slowest shared-memory subscriber is a whole ring behind: stop here (never
                // a later message before an earlier); the topic's policy waits or drops.
                // (`Busy` only comes from queue dealing; it too means "later".)
                Err(LargeRelayError::Full | LargeRelayError::Busy) => {
                    full = true;
                    break;
                }
                Err(LargeRelayError::Failed(error)) => {
                    // No payload segment could be made for it (logged there), or the ring
                    // refused the frame for good: waiting would not help this message, so it
                    // alone is dropped, counted (and, on a drop_newest ring, reported to the
                    // subscribers by the gap it leaves in the numbering).
                    tracing::warn!(%error, "a message cannot be relayed to shared-memory subscribers: dropped for them");
                    producer.skip_dropped(1);
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

    fn dropped(&self, count: u64) {
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        // The numbers the dropped messages would have had are skipped: the subscribers of a
        // drop_newest relay ring find the gap before the next message, or, once they have
        // read every message before it, in the ring's drop announcement, and report it.
        guard.0.skip_dropped(count);
        // The relay call that stopped short woke the subscribers already; this wakes those
        // asleep on the empty ring so that they hear of the drop (it publishes nothing).
        if let Err(error) = guard.0.publish_and_wake() {
            tracing::warn!(%error, "waking shared-memory subscribers of the relay ring failed");
        }
    }

    fn detach_laggards(&self, why: &str) -> usize {
        // The relay stopped short: some reader holds the ring full, the furthest behind if
        // no one is half a ring behind.
        self.detach_behind(why, true)
    }
}

#[derive(Default)]
struct TopicRings {
    /// Written by the broker; exists exactly while the topic has shared-memory subscribers:
    /// created (under the topic's policy then) with the first, freed when the last leaves.
    relay: Option<Ring>,
    /// The broker's producer of `relay`, installed as the topic's relay while it exists.
    relay_sink: Option<Arc<RelayRing>>,
    /// The topic, to remove its relay when the last shared-memory subscriber leaves.
    topic: Option<Arc<Topic>>,
    /// While the topic has socket subscribers: the slot the broker's reader holds in each
    /// publisher ring, by ring id.
    reader_slots: HashMap<u32, u32>,
    /// Payload segments handed to the broker's reader and not yet known read, per ring.
    reader_in_flight: HashMap<u32, InFlight>,
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
    /// The `[shm]` settings in force: a reload swaps them, for what is created from then on.
    config: ArcSwap<ShmConfig>,
    /// Set once the watchdog of `disconnect` topics runs.
    watchdog: std::sync::OnceLock<()>,
    topics: Mutex<HashMap<TopicId, TopicRings>>,
    next_ring: AtomicU32,
    next_attachment: AtomicU32,
    /// Told when the watchdog, a reader thread or a drain task panics: the broker stops.
    supervisor: Arc<Supervisor>,
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
            config: ArcSwap::from_pointee(config),
            watchdog: std::sync::OnceLock::new(),
            topics: Mutex::default(),
            next_ring: AtomicU32::new(1),
            next_attachment: AtomicU32::new(1),
            supervisor: Arc::default(),
        }
    }

    /// Reports the failures of this directory's threads and tasks to `supervisor`.
    pub fn supervised_by(mut self, supervisor: Arc<Supervisor>) -> ShmRings {
        self.supervisor = supervisor;
        self
    }

    /// Whether clients may ask for shared memory at all.
    pub fn enabled(&self) -> bool {
        self.config.load().enabled
    }

    /// Puts a reload's `[shm]` settings in force: rings created from now on take the new
    /// `ring_bytes` (and `max_subscribers`, which the reload keeps until a restart), attaches
    /// and sessions from now on the new limits. Existing rings keep what they were made with.
    pub fn set_config(&self, config: ShmConfig) {
        self.config.store(Arc::new(config));
    }

    /// After a reload changed the settings of `topics`: starts the watchdog if one of them
    /// now disconnects slow subscribers and has shared-memory subscribers already (it is
    /// otherwise started by the first such subscriber's attach).
    pub fn topics_reconfigured(self: &Arc<Self>, topics: &[Arc<Topic>]) {
        let needs_watchdog = topics.iter().any(|topic| {
            watched(&topic.config())
                && self
                    .lock()
                    .get(&topic.id())
                    .is_some_and(|rings| !rings.subscribers.is_empty())
        });
        if needs_watchdog {
            self.start_watchdog();
        }
    }

    /// Ends every shared-memory attachment of `topic`, which a reload removed: subscribers'
    /// slots are freed, the broker stops reading the topic's rings and drops its relay ring,
    /// and every session holding an attachment is told (`ShmDetached`, `TopicRemoved`).
    /// Returns how many attachments were ended.
    pub fn remove_topic(&self, topic: &Topic) -> usize {
        let Some(mut rings) = self.lock().remove(&topic.id()) else {
            return 0;
        };
        let mut told: Vec<(mpsc::UnboundedSender<SessionEvent>, u32)> = rings
            .subscribers
            .iter()
            .map(|s| (s.events.clone(), s.attachment))
            .collect();
        told.extend(
            rings
                .publishers
                .iter()
                .map(|p| (p.events.clone(), p.attachment)),
        );
        // Every consumer slot in every ring is freed before the rings are let go: the broker's
        // reader's first, then the subscribers' (while the publishers' rings are still known,
        // so their slots there are released too). A publisher left with a ring nobody reads
        // then never waits for room: it learns of the end from its `ShmDetached`, not by
        // hanging on a full ring.
        if let Some(reader) = &rings.reader {
            for (ring_id, _) in rings.reader_slots.drain() {
                reader.send(ReaderCommand::Stop {
                    ring_id,
                    drain: false,
                    release: true,
                });
            }
        }
        rings.reader_in_flight.clear();
        let subscribers: Vec<u32> = rings.subscribers.iter().map(|s| s.attachment).collect();
        for attachment in subscribers {
            detach_from(&mut rings, |_, a| a == attachment);
        }
        while detach_from(&mut rings, |_, _| true) {}
        let message = format!(
            "topic '{}' was removed from the broker's config; this attachment has ended",
            topic.name()
        );
        for (events, attachment) in &told {
            let _ = events.send(SessionEvent::Detached {
                attachment: *attachment,
                code: ErrorCode::TopicRemoved,
                message: message.clone(),
            });
        }
        // Dropping `rings` drops the relay ring's producer and stops the reader thread.
        told.len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicId, TopicRings>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory if no one holds it now (poison ignored, as by [`lock`](Self::lock)).
    fn try_lock(&self) -> Option<MutexGuard<'_, HashMap<TopicId, TopicRings>>> {
        match self.topics.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Data bytes of a ring: exactly `shm.ring_bytes`, whatever the topic's
    /// `max_message_size` (a message too large for a ring travels in a payload segment of its
    /// own).
    pub fn ring_capacity(&self) -> u64 {
        self.config.load().ring_bytes
    }

    /// A new ring for `topic`, and its producer (dropped for a publisher's ring: the
    /// publisher process adopts the ring instead).
    ///
    /// The ring is lossy under `drop_oldest`. The mode is fixed for the ring's life: a
    /// reload that changes the topic's `backpressure` applies to rings created after it.
    fn create_ring(&self, topic: &Topic, role: &str) -> Result<(Ring, RingProducer), ShmRefusal> {
        let id = self.next_ring.fetch_add(1, Ordering::Relaxed);
        let name = format!("mycelium:{}:{role}:{id}", topic.name());
        let lossy = topic.config().backpressure == Backpressure::DropOldest;
        let capacity = self.ring_capacity();
        let (segment, producer) = Segment::create_ring_with_mode(
            &name,
            capacity,
            self.config.load().max_subscribers,
            lossy,
        )?;
        let region = Arc::clone(producer.region());
        let ring = Ring {
            id,
            segment: Arc::new(segment),
            region,
            capacity,
        };
        Ok((ring, producer))
    }

    /// The refusal of an attach to a topic a reload removed after it was looked up. Checked
    /// under the directory's lock, which [`ShmRings::remove_topic`] takes after the topic is
    /// marked removed, so an attach either is refused or is ended by the removal.
    fn removed(topic: &Topic) -> ShmRefusal {
        ShmRefusal::Policy(format!(
            "topic '{}' was removed from the broker's config",
            topic.name()
        ))
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
        events: mpsc::UnboundedSender<SessionEvent>,
    ) -> Result<Grant, ShmRefusal> {
        Self::check_policy(topic)?;
        let mut topics = self.lock();
        if topic.is_removed() {
            return Err(Self::removed(topic));
        }
        let rings = topics.entry(topic.id()).or_default();
        let max = self.config.load().max_publishers_per_topic as usize;
        if rings.publishers.len() >= max {
            return Err(ShmRefusal::Limit(format!(
                "topic '{}' already has {max} shared-memory publishers (shm.max_publishers_per_topic)",
                topic.name()
            )));
        }
        let (ring, _) = self.create_ring(topic, "pub")?;
        if topic.config().backpressure == Backpressure::DropNewest {
            // Before the fd leaves: the publisher reads the policy when it adopts the ring,
            // and its subscribers, who then report the gaps its drops leave.
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
            start_reading(topic, &ring, rings, &self.supervisor);
        }
        let attachment = self.next_attachment.fetch_add(1, Ordering::Relaxed);
        rings.publishers.push(Publisher {
            session,
            attachment,
            events,
            ring: ring.clone(),
            last_segment: None,
            dropped_seen: 0,
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
        if watched(&topic.config()) {
            self.start_watchdog();
        }
        let mut topics = self.lock();
        if topic.is_removed() {
            return Err(Self::removed(topic));
        }
        let rings = topics.entry(topic.id()).or_default();
        let max = self.config.load().max_subscribers as usize;
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
                if topic.routing() == Routing::Fanout
                    && topic.config().backpressure == Backpressure::DropNewest
                {
                    // The broker drops what does not fit (`Relay::dropped`), leaving gaps in
                    // the numbering: marked before any slot is handed out, so that every
                    // subscriber reports them. (A queue relay ring deals, and never drops.)
                    set_drop_when_full(&ring.region);
                }
                rings.relay_sink = Some(Arc::new(RelayRing::new(
                    producer,
                    Arc::downgrade(self),
                    topic.id(),
                    ring.clone(),
                )));
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
            if topic.routing() == Routing::Queue {
                start_draining(topic, sink, &self.supervisor);
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
            in_flight: HashMap::new(),
            strikes: 0,
            held_a_drop: false,
            last_read: HashMap::new(),
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
                start_reading(topic, ring, rings, &self.supervisor);
            }
        } else if !wanted && !rings.reader_slots.is_empty() {
            if let Some(reader) = &rings.reader {
                rings.reader_in_flight.clear();
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
            let supervisor = Arc::clone(&self.supervisor);
            let started = std::thread::Builder::new()
                .name("shm-watchdog".into())
                .spawn(move || {
                    supervisor.guard_thread("shared-memory watchdog", || {
                        while let Some(rings) = rings.upgrade() {
                            rings.disconnect_slow_subscribers();
                            drop(rings);
                            std::thread::sleep(WATCHDOG_PERIOD);
                        }
                    })
                });
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the shared-memory watchdog: slow subscribers of disconnect topics will hold publishers back");
            }
        });
    }

    /// One watchdog round: a subscriber of a `disconnect` topic that holds a publisher back
    /// (three quarters of a ring behind, or half a ring while the publisher waits for room) in
    /// [`STRIKES`] rounds without reading or catching up in between is detached (its slots
    /// freed, the publisher released) and told why. The relay ring counts as a publisher ring whose publisher is the broker,
    /// waiting while a socket publisher is held back by it. Under `block` with a
    /// `publish_deadline_ms`, a subscriber half a ring behind a publisher that waits on it
    /// for that long is detached the same way, so one slow reader never stalls the others
    /// of its rings for longer than the deadline. Under `drop_newest` with a
    /// `publish_deadline_ms`, a subscriber that keeps a ring more than half full for that long,
    /// either stopped or while the ring drops, and that made it drop at least once meanwhile,
    /// is detached too: every reader of a shared ring loses what the ring drops, so one
    /// reader that stopped would otherwise cost the others every message from then on.
    fn disconnect_slow_subscribers(&self) {
        let mut topics = self.lock();
        for rings in topics.values_mut() {
            let Some(topic) = rings.topic.clone() else {
                continue;
            };
            let settings = topic.config();
            let period = WATCHDOG_PERIOD.as_millis().max(1) as u64;
            let deadline_rounds =
                u32::try_from(settings.publish_deadline_ms.div_ceil(period).max(1))
                    .unwrap_or(u32::MAX);
            // Rounds a subscriber must hold a publisher back, and what the client is told.
            let (needed, policy, block) = match settings.backpressure {
                Backpressure::Disconnect => (
                    u32::from(STRIKES),
                    "backpressure = disconnect".to_owned(),
                    false,
                ),
                Backpressure::Block if settings.publish_deadline_ms > 0 => (
                    deadline_rounds,
                    format!(
                        "backpressure = block, held a publisher back longer than \
                         publish_deadline_ms = {}",
                        settings.publish_deadline_ms
                    ),
                    true,
                ),
                Backpressure::DropNewest if settings.publish_deadline_ms > 0 => {
                    let policy = format!(
                        "backpressure = drop_newest, kept a ring full (making it drop for \
                         every subscriber) longer than publish_deadline_ms = {}",
                        settings.publish_deadline_ms
                    );
                    Self::detach_ring_hogs(rings, &topic, deadline_rounds, &policy);
                    continue;
                }
                _ => continue,
            };
            // A subscriber is behind when it holds its publisher back: more than half a ring
            // behind while the publisher waits for room, or three quarters of a ring behind
            // whatever the publisher does (one that only tries to publish never waits).
            let publishers: Vec<(Ring, bool)> = rings
                .publishers
                .iter()
                .map(|p| (p.ring.clone(), producer_waiting(&p.ring.region)))
                .collect();
            // Fanout only: on a queue topic a full relay ring sends messages to other
            // consumers or the backlog, and holds no publisher back.
            let fanout = topic.routing() == Routing::Fanout;
            let short_calls = rings
                .relay_sink
                .as_ref()
                .map_or(0, |sink| sink.short_calls.load(Ordering::Relaxed));
            let relay_waiting = short_calls != rings.relay_short_calls_seen;
            rings.relay_short_calls_seen = short_calls;
            // Under block the relay ring is bounded by the socket publisher's own deadline
            // (`Topic::give_up`); here only publishers that really wait count.
            let relay = rings
                .relay
                .clone()
                .filter(|_| fanout && !block)
                .map(|ring| (ring, relay_waiting));
            let mut slow = Vec::new();
            for subscriber in &mut rings.subscribers {
                // `behind`: holds a publisher back this round. `stuck`: more than half a ring
                // behind and has read nothing since the last round, whether or not its
                // publisher is asleep on it right now: a publisher between two sleeps (it
                // rescans and spins after every wake-up, and naps without `membarrier`) must
                // not give a stopped reader a fresh deadline. Only a reader that reads, or
                // that is no longer behind, starts again from zero.
                let (mut behind, mut stuck) = (false, false);
                let watched = publishers
                    .iter()
                    .filter_map(|(ring, waiting)| {
                        let slot = subscriber.slots.get(&ring.id)?;
                        Some((ring, *waiting, *slot))
                    })
                    .chain(
                        relay
                            .as_ref()
                            .map(|(ring, waiting)| (ring, *waiting, subscriber.relay_slot)),
                    );
                for (ring, waiting, slot) in watched {
                    let Some((write_pos, read_pos)) = slot_positions(&ring.region, slot as usize)
                    else {
                        continue;
                    };
                    let backlog = write_pos.saturating_sub(read_pos);
                    let half = ring.capacity / 2;
                    behind |=
                        (!block && backlog > ring.capacity / 4 * 3) || (waiting && backlog > half);
                    let moved = subscriber.last_read.insert(ring.id, read_pos) != Some(read_pos);
                    stuck |= !moved && backlog > half;
                }
                subscriber.strikes = if behind {
                    subscriber.strikes.saturating_add(1)
                } else if stuck {
                    subscriber.strikes
                } else {
                    0
                };
                if subscriber.strikes >= needed {
                    slow.push((
                        subscriber.session,
                        subscriber.attachment,
                        subscriber.events.clone(),
                    ));
                }
            }
            detach_slow(rings, &topic, slow, &policy);
        }
    }

    /// The `drop_newest` round of [`disconnect_slow_subscribers`](Self::disconnect_slow_subscribers)
    /// for one topic: a strike for each subscriber more than half a ring behind in a ring that
    /// dropped since the last round, or in which it did not move; detached after `needed`
    /// strikes in a row if one of those rings dropped meanwhile.
    fn detach_ring_hogs(rings: &mut TopicRings, topic: &Arc<Topic>, needed: u32, policy: &str) {
        // Each ring, with whether it dropped since the last round: a publisher's ring by its
        // `dropped` counter, the relay ring (fanout) by the calls that found it full, after
        // which the topic drops the rest. A publisher that waits for room counts too: its ring
        // was made under `block` before a reload turned the topic to `drop_newest` (a ring
        // keeps the mode it was created with), and it must not wait for ever.
        let mut watched: Vec<(Ring, bool)> = rings
            .publishers
            .iter_mut()
            .map(|p| {
                let dropped = producer_dropped(&p.ring.region);
                let dropping = dropped != p.dropped_seen || producer_waiting(&p.ring.region);
                p.dropped_seen = dropped;
                (p.ring.clone(), dropping)
            })
            .collect();
        let short_calls = rings
            .relay_sink
            .as_ref()
            .map_or(0, |sink| sink.short_calls.load(Ordering::Relaxed));
        let relay_dropping = short_calls != rings.relay_short_calls_seen;
        rings.relay_short_calls_seen = short_calls;
        let relay_id = rings.relay.as_ref().map(|relay| relay.id);
        if topic.routing() == Routing::Fanout {
            if let Some(relay) = rings.relay.clone() {
                watched.push((relay, relay_dropping));
            }
        }
        let mut slow = Vec::new();
        for subscriber in &mut rings.subscribers {
            let (mut behind, mut dropped) = (false, false);
            for (ring, dropping) in &watched {
                let slot = if Some(ring.id) == relay_id {
                    Some(subscriber.relay_slot)
                } else {
                    subscriber.slots.get(&ring.id).copied()
                };
                let Some((write_pos, read_pos)) =
                    slot.and_then(|slot| slot_positions(&ring.region, slot as usize))
                else {
                    continue;
                };
                let moved = subscriber.last_read.insert(ring.id, read_pos) != Some(read_pos);
                let half_full = write_pos.saturating_sub(read_pos) > ring.capacity / 2;
                if half_full && (*dropping || !moved) {
                    behind = true;
                    dropped |= *dropping;
                }
            }
            if behind {
                subscriber.strikes = subscriber.strikes.saturating_add(1);
                subscriber.held_a_drop |= dropped;
            } else {
                subscriber.strikes = 0;
                subscriber.held_a_drop = false;
            }
            if subscriber.strikes >= needed && subscriber.held_a_drop {
                slow.push((
                    subscriber.session,
                    subscriber.attachment,
                    subscriber.events.clone(),
                ));
            }
        }
        detach_slow(rings, topic, slow, policy);
    }

    /// Hands the payload segment `fd` that publisher attachment `attachment` of `session`
    /// sent (`ShmSegment`) to the readers of its ring, after checking it (sealed against
    /// writes and resizing, `len` within the topic's limit and the file at least that long,
    /// ids increasing). Returns the receivers to wait on before answering, so that the fd is
    /// in every subscriber's socket before the publisher writes the reference frame.
    pub fn forward_segment(
        &self,
        session: SessionId,
        attachment: u32,
        reference: SegmentRef,
        recipient: u32,
        fd: OwnedFd,
    ) -> Result<Vec<oneshot::Receiver<()>>, SegmentRefusal> {
        let mut topics = self.lock();
        let Some(rings) = topics.values_mut().find(|rings| {
            rings
                .publishers
                .iter()
                .any(|p| p.session == session && p.attachment == attachment)
        }) else {
            return Err(SegmentRefusal::NoAttachment(attachment));
        };
        let Some(topic) = rings.topic.clone() else {
            return Err(SegmentRefusal::NoAttachment(attachment));
        };
        let max = topic.config().max_message_size;
        check_payload_fd(
            fd.as_fd(),
            reference.len as usize,
            max.next_multiple_of(4096),
        )
        .map_err(|e| SegmentRefusal::Bad(e.to_string()))?;
        if reference.len as usize > max {
            return Err(SegmentRefusal::Bad(format!(
                "a message of {} bytes is above the topic's max_message_size ({max})",
                reference.len
            )));
        }
        let Some(publisher) = rings
            .publishers
            .iter_mut()
            .find(|p| p.session == session && p.attachment == attachment)
        else {
            return Err(SegmentRefusal::NoAttachment(attachment));
        };
        if publisher
            .last_segment
            .is_some_and(|last| reference.segment <= last)
        {
            return Err(SegmentRefusal::Bad(format!(
                "segment id {} does not follow {}",
                reference.segment,
                publisher.last_segment.unwrap_or_default()
            )));
        }
        publisher.last_segment = Some(reference.segment);
        let ring = publisher.ring.clone();
        let queue = topic.routing() == Routing::Queue;
        let handover = Handover {
            ring: &ring,
            reference,
            fd: Arc::new(fd),
            recipient: queue.then_some(recipient),
        };
        let (waits, dropped) = hand_over(rings, &handover, true);
        if dropped > 0 {
            topic
                .counters()
                .dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(waits)
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

/// Detaches the slow subscribers the watchdog found (`slow`: session, attachment, events),
/// counting each in the topic's `dropped` and telling it why (`SlowConsumer`, `policy`).
fn detach_slow(
    rings: &mut TopicRings,
    topic: &Topic,
    slow: Vec<(SessionId, u32, mpsc::UnboundedSender<SessionEvent>)>,
    policy: &str,
) {
    for (session, attachment, events) in slow {
        detach_from(rings, |s, a| s == session && a == attachment);
        topic.counters().dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            topic = topic.name(),
            attachment,
            policy,
            "disconnecting a slow shared-memory subscriber"
        );
        let _ = events.send(SessionEvent::Detached {
            attachment,
            code: ErrorCode::SlowConsumer,
            message: format!(
                "shared-memory subscriber fell a ring behind on topic '{}' ({policy})",
                topic.name()
            ),
        });
    }
}

/// Whether the watchdog looks after a topic with these settings: `disconnect`, and `block`
/// or `drop_newest` with a `publish_deadline_ms`.
fn watched(settings: &mycelium_config::TopicConfig) -> bool {
    match settings.backpressure {
        Backpressure::Disconnect => true,
        Backpressure::Block | Backpressure::DropNewest => settings.publish_deadline_ms > 0,
        Backpressure::DropOldest => false,
    }
}

/// Reserves a slot for the topic's reader in `ring` (starting the reader thread, inside the
/// broker's runtime, if the topic has none yet) and tells the reader to read it.
fn start_reading(
    topic: &Arc<Topic>,
    ring: &Ring,
    rings: &mut TopicRings,
    supervisor: &Arc<Supervisor>,
) {
    if rings.reader.is_none() {
        let started = tokio::runtime::Handle::try_current()
            .map_err(std::io::Error::other)
            .and_then(|runtime| ShmRingReader::start(runtime, topic.name(), supervisor));
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
fn start_draining(topic: &Arc<Topic>, sink: &Arc<RelayRing>, supervisor: &Arc<Supervisor>) {
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
    supervisor.spawn_on(&runtime, "relay drain", drain_into_relay(topic, sink));
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
        // Dropping an adopted consumer leaves the slot held: the caller frees it. Taking
        // messages back, a gap in the numbering is nobody's to report.
        Ok(mut consumer) => loop {
            consumer.ignore_drops();
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
        rings.reader_in_flight.remove(&ring_id);
        for subscriber in &mut rings.subscribers {
            subscriber.in_flight.remove(&ring_id);
            subscriber.last_read.remove(&ring_id);
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
        if let Some(sink) = &rings.relay_sink {
            sink.readers.fetch_sub(1, Ordering::Relaxed);
        }
        if rings.subscribers.is_empty() {
            // Nobody reads the relay ring now: stop copying socket messages into it, and free
            // it (its memfd and mapping) rather than keep a ring per topic that ever had a
            // shared-memory subscriber. The next one gets a fresh ring, made under the
            // topic's policy of that moment. A relay call under way holds the ring until it
            // returns; a queue topic's drain task ends when it finds the ring gone.
            if let Some(topic) = &rings.topic {
                topic.set_relay(None);
                topic.set_queue_relay(None);
            }
            rings.relay = None;
            rings.relay_sink = None;
            rings.relay_short_calls_seen = 0;
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
