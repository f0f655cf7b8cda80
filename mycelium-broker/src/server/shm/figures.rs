//! One topic's shared-memory side as the metrics see it ([`ShmFigures`]): attachments, what
//! publishers dropped in their own rings, and how far behind the slowest reader is.
//!
//! - Read under the directory's lock when the metrics are read, never while routing; ring
//!   positions and counters come from shared memory, so a peer may have scribbled them (sums
//!   saturate, a lag never goes below 0).

use mycelium_transport::shm::{producer_dropped, slot_positions};

use crate::core::topic::TopicId;

use super::directory::ShmRings;

/// One topic's shared-memory figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ShmFigures {
    /// Shared-memory publishers attached.
    pub(crate) publishers: usize,
    /// Shared-memory subscribers (or consumers) attached.
    pub(crate) subscribers: usize,
    /// Messages the publishers dropped in their full rings (`drop_newest`), those that left
    /// included.
    pub(crate) dropped_in_rings: u64,
    /// The slowest shared-memory subscriber's lag, in bytes: the largest `write_pos` minus
    /// `read_pos` over its slots in the topic's rings (publishers' and the relay ring).
    /// `None` without subscribers.
    pub(crate) slowest_lag_bytes: Option<u64>,
}

impl ShmRings {
    /// `topic`'s shared-memory figures now.
    pub(crate) fn figures(&self, topic: TopicId) -> ShmFigures {
        let topics = self.lock();
        let Some(rings) = topics.get(&topic) else {
            return ShmFigures::default();
        };
        let dropped_in_rings = rings
            .publishers
            .iter()
            .fold(rings.retired_dropped, |sum, p| {
                sum.saturating_add(producer_dropped(&p.ring.region))
            });
        let mut slowest = None;
        for subscriber in &rings.subscribers {
            let relay = rings
                .relay
                .as_ref()
                .map(|ring| (ring, subscriber.relay_slot));
            let publishers = rings.publishers.iter().filter_map(|p| {
                subscriber
                    .slots
                    .get(&p.ring.id)
                    .map(|slot| (&p.ring, *slot))
            });
            for (ring, slot) in relay.into_iter().chain(publishers) {
                if let Some((write_pos, read_pos)) = slot_positions(&ring.region, slot as usize) {
                    let lag = write_pos.saturating_sub(read_pos);
                    slowest = Some(slowest.map_or(lag, |s: u64| s.max(lag)));
                }
            }
        }
        ShmFigures {
            publishers: rings.publishers.len(),
            subscribers: rings.subscribers.len(),
            dropped_in_rings,
            slowest_lag_bytes: slowest,
        }
    }
}
