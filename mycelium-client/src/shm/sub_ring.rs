//! [`SubRing`]: one ring as a subscription reads it, adopted from the broker's grant.

use mycelium_transport::shm::{slot_backlog, RingConsumer, Segment};
use mycelium_transport::TopicName;

use crate::error::ClientError;
use crate::shm::control::GrantedRing;

pub(super) struct SubRing {
    pub(super) id: u32,
    pub(super) consumer: RingConsumer,
    /// Its publisher left: read to the end, then drop.
    pub(super) removed: bool,
    /// Keeps the memfd open while the consumer reads its mapping.
    pub(super) segment: Segment,
    /// A pattern subscription's ring: the topic its messages were published on.
    pub(super) topic: Option<TopicName>,
}

/// Whether our slot `slot` in the ring of `segment` is no longer active. Only the broker frees
/// a slot it reserved for us, and only when it ends the attachment: its reason is on the way.
pub(super) fn slot_freed(segment: &Segment, slot: usize) -> bool {
    segment
        .ring_region()
        .is_ok_and(|region| slot_backlog(&region, slot).is_none())
}

/// Why a granted ring could not be adopted: the error, and whether our slot in it was freed
/// (then the broker ended the subscription, and its reason is the one to report).
pub(super) struct AdoptError {
    pub(super) error: ClientError,
    pub(super) slot_freed: bool,
}

/// Takes over the slot the broker reserved in a granted ring. A queue consumer does not
/// report a dropped message (it was no consumer's in particular); a fanout subscriber of a
/// `drop_newest` ring reports each gap as [`ClientError::Lagged`].
pub(super) fn adopt(granted: GrantedRing, queue: bool) -> Result<SubRing, AdoptError> {
    let slot = granted.ring.slot as usize;
    let failed = |error: String, segment: &Segment| AdoptError {
        error: ClientError::Shm(error),
        slot_freed: slot_freed(segment, slot),
    };
    let region = granted
        .segment
        .ring_region()
        .map_err(|e| failed(e.to_string(), &granted.segment))?;
    let mut consumer =
        RingConsumer::adopt(&region, slot).map_err(|e| failed(e.to_string(), &granted.segment))?;
    if queue {
        consumer.ignore_drops();
    }
    Ok(SubRing {
        id: granted.ring.ring_id,
        consumer,
        removed: false,
        segment: granted.segment,
        topic: granted.topic,
    })
}
