//! The broker's own reading of a topic's publisher rings, for its socket subscribers and a
//! durable topic's log: exactly while the topic has socket subscribers, from slots reserved
//! before the first of them is acknowledged, and always for a durable topic, from each ring's
//! creation (so every message a shared-memory publisher writes is stored).

use std::sync::Arc;

use mycelium_transport::shm::reserve_slot;
use mycelium_transport::NO_SLOT;

use crate::core::topic::Topic;
use crate::server::supervisor::Supervisor;

use super::directory::ShmRings;
use super::reader::{ReaderCommand, ShmRingReader};
use super::ring::Ring;
use super::topic_rings::TopicRings;

impl ShmRings {
    /// Called when `topic` gains or loses socket subscribers: the broker reads the topic's
    /// publisher rings exactly while it has some. Reading starts (slots reserved) before this
    /// returns, so a socket subscriber whose subscription is acknowledged after it sees every
    /// message published from then on.
    pub(crate) fn socket_subscribers_changed(&self, topic: &Arc<Topic>) {
        let mut topics = self.lock();
        let Some(rings) = topics.get_mut(&topic.id()) else {
            return;
        };
        let wanted = broker_reads(topic);
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
}

/// Whether the broker reads `topic`'s publisher rings: for its socket (and in-process)
/// subscribers, and always for a durable topic, whose log stores every message.
pub(super) fn broker_reads(topic: &Topic) -> bool {
    topic.log().is_some() || topic.subscriber_count() > 0
}

/// Reserves a slot for the topic's reader in `ring` (starting the reader thread, inside the
/// broker's runtime, if the topic has none yet) and tells the reader to read it.
pub(super) fn start_reading(
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
