//! [`RelayRing`]: the broker's producer of a topic's relay ring, through which socket
//! publishers reach shared-memory subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mycelium_transport::shm::queue::{self, QUEUE_PREFIX};
use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{slot_backlog, FrameFlags, PayloadWriter, PushError, RingProducer};

use crate::core::batch::Item;
use crate::core::topic::DropReason;
use crate::core::topic::{QueueRelay, Relay, Relayed, TopicId};

use super::directory::ShmRings;
use super::ring::Ring;
use super::segments::{hand_over, Handover};
use super::topic_rings::detach_slow;

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
pub(super) struct RelayRing {
    /// The producer, and the id of the next payload segment.
    pub(super) producer: Mutex<(RingProducer, u64)>,
    /// Queue topics: per relay slot, the end positions of the frames addressed to it that its
    /// consumer has not passed yet, oldest first. Locked after `producer`.
    pub(super) addressed: Mutex<HashMap<u32, VecDeque<u64>>>,
    /// Shared-memory subscribers reading the ring, for the topic's `delivered` counter (and,
    /// on a queue topic, whether the drain task has anyone to feed).
    pub(super) readers: std::sync::atomic::AtomicU64,
    /// Queue topics: set once the task that drains the backlog into this ring runs.
    pub(super) drainer: AtomicBool,
    /// The directory, to hand payload segments of messages too large for the ring to the
    /// subscribers (weak: the directory owns this relay).
    pub(super) directory: std::sync::Weak<ShmRings>,
    /// The topic and the relay ring.
    pub(super) topic: TopicId,
    pub(super) ring: Ring,
    /// Fanout topics: [`Relay::relay`] calls that stopped at a message that did not fit. A
    /// publisher held back by the relay ring (`block`, `disconnect`) offers the rest again
    /// every `RELAY_ROOM_POLL` (1 ms), so while one waits this grows between two watchdog
    /// rounds: the watchdog's counterpart of a publisher ring's `producer_parked`. A count
    /// rather than a flag, so that a publisher that gives up (its connection closes) stops
    /// counting as waiting.
    pub(super) short_calls: AtomicU64,
}

impl RelayRing {
    pub(super) fn new(
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
    pub(super) fn forget(&self, slot: u32) {
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
    /// then pushes the reference frame (addressed to `recipient`), marked
    /// [`FrameFlags::ENVELOPE`] too when the message begins with an envelope.
    /// [`LargeRelayError::Full`] when the ring has no room for the reference frame now (the
    /// segment handed over is then an orphan its readers close when they meet a later one).
    fn relay_large(
        &self,
        producer: &mut RingProducer,
        next: &mut u64,
        payload: &[u8],
        recipient: Option<u32>,
        enveloped: bool,
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
                    topic.counters().lost(DropReason::SharedMemory, dropped);
                }
            }
        }
        let flags = FrameFlags::new(true, enveloped);
        let pushed = match recipient {
            None => producer.try_push_marked(&reference.encode(), flags),
            Some(slot) => {
                let mut frame = Vec::new();
                queue::address(&mut frame, slot as usize, &reference.encode());
                producer.try_push_marked(&frame, flags)
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

    fn deal(&self, slot: u32, messages: &mut dyn Iterator<Item = Item<'_>>) -> usize {
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (producer, next) = &mut *guard;
        let max = producer.max_payload().saturating_sub(QUEUE_PREFIX);
        let mut frame = Vec::new();
        let mut taken = 0;
        for message in messages {
            let payload = message.bytes;
            // Full: a consumer (maybe another one: all read every frame) is a ring behind;
            // the message is left to the socket consumers or the backlog.
            let pushed = if payload.len() > max {
                // Too large for the ring: a payload segment for this consumer. It takes the
                // directory's lock, so not while `addressed` is held.
                self.relay_large(producer, next, payload, Some(slot), message.enveloped)
                    .is_ok()
            } else {
                // The envelope bit is the frame's: the message after the address begins with
                // an envelope (`docs/shm-layout.md`, Queue topics).
                queue::address(&mut frame, slot as usize, payload);
                let flags = FrameFlags::new(false, message.enveloped);
                producer.try_push_marked(&frame, flags).is_ok()
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
    fn relay(&self, messages: &mut dyn Iterator<Item = Item<'_>>) -> Relayed {
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let (producer, next) = &mut *guard;
        let (mut passed, mut dropped) = (0, 0);
        let mut full = false;
        let max = producer.max_payload();
        for message in messages {
            let payload = message.bytes;
            let pushed = if payload.len() > max {
                self.relay_large(producer, next, payload, None, message.enveloped)
            } else {
                let flags = FrameFlags::new(false, message.enveloped);
                producer
                    .try_push_marked(payload, flags)
                    .map_err(LargeRelayError::from)
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
