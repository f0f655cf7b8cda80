//! Attaching a shared-memory publisher or subscriber: the ring it gets, the slots reserved
//! for it, and what refuses it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mycelium_config::{Backpressure, Routing};
use mycelium_transport::shm::{
    release_slot, reserve_slot, set_drop_when_full, RingProducer, Segment,
};
use mycelium_transport::NO_SLOT;
use tokio::sync::mpsc;

use crate::core::topic::{QueueRelay, Relay, Topic};

use super::backlog::start_draining;
use super::directory::ShmRings;
use super::error::ShmRefusal;
use super::events::{Grant, SessionEvent};
use super::reading::start_reading;
use super::relay::RelayRing;
use super::ring::{Ring, SessionId};
use super::topic_rings::{Publisher, Subscriber};
use super::watchdog::watched;

impl ShmRings {
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
    pub(crate) fn attach_publisher(
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
            if subscriber.no_echo && subscriber.session == session {
                // No echo: the subscriber never reads its own session's rings, so it holds no
                // slot there (a slot nobody reads would hold a lossless ring full).
                continue;
            }
            // A fresh ring has a free slot for every subscriber: there are at most
            // `max_subscribers` of them, and that is the ring's slot count.
            let slot = reserve_slot(&ring.region)?;
            let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
            subscriber.slots.insert(ring.id, slot);
            let added = SessionEvent::RingAdded {
                attachment: subscriber.attachment,
                ring: ring.clone(),
                slot,
                // A pattern subscriber learns which topic the ring carries.
                topic: subscriber
                    .pattern
                    .then(|| (topic.id(), Arc::from(topic.name()))),
                wake: rings
                    .relay
                    .clone()
                    .map(|relay| (relay, subscriber.relay_slot)),
            };
            // A session that is gone has its attachments ended by its own task.
            let _ = subscriber.events.send(added);
        }
        rings.topic.get_or_insert_with(|| Arc::clone(topic));
        if !rings.reader_slots.is_empty() || super::reading::broker_reads(topic) {
            // Socket subscribers are there, or the topic is durable: the broker reads this
            // ring for them too.
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
    /// and in every publisher ring, each starting at what is published now. With `no_echo`,
    /// none in the rings of the session's own publishers, now or later: it does not read
    /// them, and a slot it never read would hold a lossless ring full.
    pub(crate) fn attach_subscriber(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        session: SessionId,
        events: mpsc::UnboundedSender<SessionEvent>,
        no_echo: bool,
    ) -> Result<Grant, ShmRefusal> {
        self.attach_subscriber_as(topic, session, events, no_echo, None)
    }

    /// [`attach_subscriber`](Self::attach_subscriber) for a pattern attachment: the topic's
    /// rings join attachment `pattern` (one id over all the topics it matched), and the
    /// rings the topic gains later are told with the topic's name. The topic removed, its
    /// rings are taken from the attachment (`RingRemoved`), which goes on.
    pub(crate) fn attach_pattern_topic(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        session: SessionId,
        events: mpsc::UnboundedSender<SessionEvent>,
        no_echo: bool,
        pattern: u32,
    ) -> Result<Grant, ShmRefusal> {
        self.attach_subscriber_as(topic, session, events, no_echo, Some(pattern))
    }

    /// A new attachment number, for a pattern attachment (whose topics' attachments share it).
    pub(crate) fn next_attachment_id(&self) -> u32 {
        self.next_attachment.fetch_add(1, Ordering::Relaxed)
    }

    fn attach_subscriber_as(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        session: SessionId,
        events: mpsc::UnboundedSender<SessionEvent>,
        no_echo: bool,
        pattern: Option<u32>,
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
            .chain(
                rings
                    .publishers
                    .iter()
                    .filter(|p| !(no_echo && p.session == session))
                    .map(|p| p.ring.clone()),
            )
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
        let attachment =
            pattern.unwrap_or_else(|| self.next_attachment.fetch_add(1, Ordering::Relaxed));
        // `granted[0]` is the relay ring.
        rings.subscribers.push(Subscriber {
            session,
            attachment,
            events,
            relay_slot: granted[0].1,
            no_echo,
            pattern: pattern.is_some(),
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
}
