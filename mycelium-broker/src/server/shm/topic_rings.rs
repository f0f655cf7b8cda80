//! [`TopicRings`]: one topic's rings and attachments, and how an attachment leaves them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mycelium_transport::shm::{producer_dropped, release_slot};
use mycelium_transport::ErrorCode;
use tokio::sync::mpsc;

use crate::core::topic::DropReason;
use crate::core::topic::Topic;

use super::backlog::take_back;
use super::events::SessionEvent;
use super::in_flight::InFlight;
use super::reader::{ReaderCommand, ShmRingReader};
use super::relay::RelayRing;
use super::ring::{Ring, SessionId};

/// A shared-memory subscriber's attachment: its slots in the topic's rings, and what the
/// watchdog and the segment hand-over count for it.
pub(super) struct Subscriber {
    pub(super) session: SessionId,
    pub(super) attachment: u32,
    /// To this subscriber's session task; an event may hold a payload segment's fd, bounded
    /// per ring by [`MAX_SEGMENTS_IN_FLIGHT`](mycelium_transport::limits::MAX_SEGMENTS_IN_FLIGHT).
    pub(super) events: mpsc::UnboundedSender<SessionEvent>,
    /// Per ring id: payload segments sent and not yet known read ([`InFlight`]).
    pub(super) in_flight: HashMap<u32, InFlight>,
    /// Slot held in the topic's relay ring.
    pub(super) relay_slot: u32,
    /// Holds no slot in the rings of its own session's publishers (and is told of none).
    pub(super) no_echo: bool,
    /// One topic of a pattern attachment (whose id it shares with the pattern's other
    /// topics): told each new ring with the topic's name, and of the topic's removal by the
    /// removal of its rings rather than the end of the attachment.
    pub(super) pattern: bool,
    /// Slot held in each publisher ring, by ring id.
    pub(super) slots: HashMap<u32, u32>,
    /// Watchdog rounds that found this subscriber holding a waiting publisher back, since it
    /// last read or caught up (rounds in which it stayed stopped but its publisher happened
    /// not to be asleep neither count nor start the count again).
    pub(super) strikes: u32,
    /// `drop_newest` topics: whether a ring this subscriber held full dropped a message (or
    /// held its publisher waiting) during the current run of strikes (a reader that stops
    /// while nobody publishes harms no one).
    pub(super) held_a_drop: bool,
    /// This subscriber's `read_pos` in each watched ring (by ring id, the relay ring's
    /// included) at the last watchdog round, to tell a stopped reader from a slow one.
    pub(super) last_read: HashMap<u32, u64>,
}

/// A shared-memory publisher's attachment: the ring of its own it writes.
pub(super) struct Publisher {
    pub(super) session: SessionId,
    pub(super) attachment: u32,
    /// To this publisher's session task: told when the broker ends the attachment.
    pub(super) events: mpsc::UnboundedSender<SessionEvent>,
    pub(super) ring: Ring,
    /// The id of the last payload segment it sent: ids must increase.
    pub(super) last_segment: Option<u64>,
    /// `drop_newest` topics: the ring's `dropped` counter at the last watchdog round.
    pub(super) dropped_seen: u64,
}

/// One topic's rings and attachments, under the directory's lock.
#[derive(Default)]
pub(super) struct TopicRings {
    /// Written by the broker; exists exactly while the topic has shared-memory subscribers:
    /// created (under the topic's policy then) with the first, freed when the last leaves.
    pub(super) relay: Option<Ring>,
    /// The broker's producer of `relay`, installed as the topic's relay while it exists.
    pub(super) relay_sink: Option<Arc<RelayRing>>,
    /// The topic, to remove its relay when the last shared-memory subscriber leaves.
    pub(super) topic: Option<Arc<Topic>>,
    /// While the topic has socket subscribers: the slot the broker's reader holds in each
    /// publisher ring, by ring id.
    pub(super) reader_slots: HashMap<u32, u32>,
    /// Payload segments handed to the broker's reader and not yet known read, per ring.
    pub(super) reader_in_flight: HashMap<u32, InFlight>,
    /// This topic's reader thread, started the first time the topic needs one: one per topic,
    /// so that a slow socket subscriber (which stops its topic's reader under `block`) never
    /// holds up another topic.
    pub(super) reader: Option<ShmRingReader>,
    pub(super) publishers: Vec<Publisher>,
    pub(super) subscribers: Vec<Subscriber>,
    /// Messages dropped (`drop_newest`) by publishers that have left, as their rings last
    /// said; the live publishers' counts are read from their rings when asked.
    pub(super) retired_dropped: u64,
    /// The relay ring's `short_calls` as the watchdog last read it.
    pub(super) relay_short_calls_seen: u64,
}

/// Detaches the slow subscribers the watchdog found (`slow`: session, attachment, events),
/// counting each in the topic's `dropped` and telling it why (`SlowConsumer`, `policy`).
pub(super) fn detach_slow(
    rings: &mut TopicRings,
    topic: &Topic,
    slow: Vec<(SessionId, u32, mpsc::UnboundedSender<SessionEvent>)>,
    policy: &str,
) {
    for (session, attachment, events) in slow {
        detach_from(rings, |s, a| s == session && a == attachment);
        topic.counters().lost(DropReason::SlowConsumer, 1);
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

/// Removes the first attachment of `rings` that `matches`; returns whether one was removed.
pub(super) fn detach_from(
    rings: &mut TopicRings,
    matches: impl Fn(SessionId, u32) -> bool,
) -> bool {
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
