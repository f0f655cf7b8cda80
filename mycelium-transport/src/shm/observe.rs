//! Read-only observations of a ring by a third party (the broker's watchdog and stats): how
//! far a slot's holder is behind, whether the producer waits for room, how many frames it
//! dropped. Everything here is a hint read from
//! shared memory, never trusted beyond choosing what to do.

use super::layout::{PARKED_RUNNING, SLOT_ACTIVE};
use super::region::RingRegion;
use super::ring::attach;
use super::sync::Ordering;

/// How far the holder of slot `slot` is behind the published `write_pos`, in bytes, or `None`
/// for a free or out-of-range slot: for a third party (the broker) watching for subscribers
/// that hold a lossless ring back.
pub fn slot_backlog(region: &RingRegion, slot: usize) -> Option<u64> {
    let geometry = attach(region).ok()?;
    if slot >= geometry.max_consumers as usize {
        return None;
    }
    let slot = region.slot(slot)?;
    // SYNC POINT: Relaxed loads: an observation, ordering nothing.
    if slot.state.load(Ordering::Relaxed) != SLOT_ACTIVE {
        return None;
    }
    let write_pos = region.header().producer.write_pos.load(Ordering::Relaxed);
    Some(write_pos.saturating_sub(slot.read_pos.load(Ordering::Relaxed)))
}

/// Whether the ring's producer is waiting for room (parked on `producer_parked`), as seen by
/// a third party.
pub fn producer_waiting(region: &RingRegion) -> bool {
    // SYNC POINT: Relaxed: an observation, ordering nothing.
    region.header().producer_parked.load(Ordering::Relaxed) != PARKED_RUNNING
}

/// Frames the ring's producer dropped for lack of room (`drop_newest`), as stored in the
/// header's `dropped` word: for a third party's statistics. Any peer may have scribbled it,
/// so use it for display and sums with saturating arithmetic only.
pub fn producer_dropped(region: &RingRegion) -> u64 {
    // SYNC POINT: Relaxed: an observation, ordering nothing.
    region.header().producer.dropped.load(Ordering::Relaxed)
}

/// The published `write_pos` of a ring and the `read_pos` of slot `slot` (`None` for a free
/// or out-of-range slot), as seen by a third party: the broker uses them to tell which
/// reference frames a subscriber has read. Hints from shared memory: a peer may fake them.
pub fn slot_positions(region: &RingRegion, slot: usize) -> Option<(u64, u64)> {
    let geometry = attach(region).ok()?;
    if slot >= geometry.max_consumers as usize {
        return None;
    }
    let slot = region.slot(slot)?;
    // SYNC POINT: Relaxed loads: an observation, ordering nothing.
    if slot.state.load(Ordering::Relaxed) != SLOT_ACTIVE {
        return None;
    }
    let write_pos = region.header().producer.write_pos.load(Ordering::Relaxed);
    Some((write_pos, slot.read_pos.load(Ordering::Relaxed)))
}
