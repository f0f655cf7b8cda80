//! Consumer slots managed by a third party: claiming a free slot, reserving one for another
//! process, freeing the slot of a holder that died, and raising a slot's notice.

use crate::shm::error::RingError;
use crate::shm::layout::{
    ConsumerSlot, FRAME_ALIGN, NOTICE_NONE, NOTICE_PENDING, PARKED_RUNNING, SLOT_ACTIVE, SLOT_FREE,
};
use crate::shm::region::RingRegion;
use crate::shm::ring::{attach, RingGeometry};
use crate::shm::sync::{fence, Ordering};
use crate::shm::wake;

use super::park::{decrement_parked_consumers, wake_parked_producer};
#[cfg(doc)]
use super::RingConsumer;
#[cfg(doc)]
use crate::shm::error::ReadError;

/// Consumer slot `index` of a ring with `geometry`, or `None` if it is out of range.
pub(super) fn slot_in<'a>(
    region: &'a RingRegion,
    geometry: &RingGeometry,
    index: usize,
) -> Option<&'a ConsumerSlot> {
    if index >= geometry.max_consumers as usize {
        return None;
    }
    region.slot(index)
}

/// Claims a free slot of the ring in `region` and sets its `read_pos` to the published
/// `write_pos`; returns the slot index and that start position. Shared by
/// [`RingConsumer::join`] and [`reserve_slot`].
pub(super) fn claim_slot(
    region: &RingRegion,
    geometry: &RingGeometry,
) -> Result<(usize, u64), RingError> {
    for index in 0..geometry.max_consumers as usize {
        let Some(slot) = region.slot(index) else {
            break;
        };
        // SYNC POINT: AcqRel CAS. Acquire pairs with the Release store of SLOT_FREE in the
        // previous holder's drop (or `release_slot`): its `read_pos` stores precede ours;
        // Release publishes the claim to the producer's Acquire load of `state` in its scan.
        let claimed = slot
            .state
            .compare_exchange(SLOT_FREE, SLOT_ACTIVE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if !claimed {
            continue;
        }
        // SYNC POINT: SeqCst fence pairs with the fence in the producer's scan: either the
        // producer sees our claim, or our load below sees its last publish, so it never writes
        // more than a capacity beyond where we start.
        fence(Ordering::SeqCst);
        // SYNC POINT: Acquire pairs with the producer's Release store in `publish`.
        let start = region.header().producer.write_pos.load(Ordering::Acquire);
        if start % FRAME_ALIGN as u64 != 0 {
            // SYNC POINT: Release pairs with the producer's and joiners' Acquire of `state`.
            slot.state.store(SLOT_FREE, Ordering::Release);
            return Err(RingError::Corrupt("write position not frame-aligned"));
        }
        // SYNC POINT: Release pairs with the producer's Acquire load of `read_pos` (and with
        // the Acquire load in `RingConsumer::adopt`).
        slot.read_pos.store(start, Ordering::Release);
        // SYNC POINT: Relaxed; clears a flag a previous holder (or a scribbler) left. At worst
        // the producer saw it first and sends us one spurious wake.
        slot.parked.store(PARKED_RUNNING, Ordering::Relaxed);
        // SYNC POINT: Relaxed; a previous holder's notice is not for us.
        slot.notice.store(NOTICE_NONE, Ordering::Relaxed);
        return Ok((index, start));
    }
    Err(RingError::NoFreeSlot)
}

/// Claims a free consumer slot of the ring in `region` for someone else, starting at the
/// current published `write_pos`, and returns its index: the broker reserves a slot, hands
/// its index (with the ring's segment) to a subscriber process, and that process takes it
/// over with [`RingConsumer::adopt`]. From now on the producer keeps every frame from that
/// position for the slot (in a lossless ring), exactly as for a joined consumer.
///
/// Nothing frees the slot on drop: the adopter's [`RingConsumer`] does when it is dropped,
/// and if the holder dies first, whoever reserved it calls [`release_slot`].
///
/// # Errors
///
/// As for [`RingConsumer::join`].
pub fn reserve_slot(region: &RingRegion) -> Result<usize, RingError> {
    let geometry = attach(region)?;
    claim_slot(region, &geometry).map(|(index, _)| index)
}

/// Frees consumer slot `slot` on behalf of a holder that died (or never adopted it): clears
/// its `parked` flag (and its count in `parked_consumers`, if it died parked), marks it free,
/// and wakes the producer if it waits for room, since the slot may have been the slowest.
///
/// Only for a slot whose holder is gone: releasing a live consumer's slot lets the producer
/// overwrite frames it is reading (it then reads garbage and reports
/// [`ReadError::Corrupt`], never more). Releasing a free slot changes nothing.
///
/// # Errors
///
/// Those of [`attach`]; [`RingError::BadSlot`] for an index out of range.
pub fn release_slot(region: &RingRegion, slot: usize) -> Result<(), RingError> {
    let geometry = attach(region)?;
    let slot_ref = slot_in(region, &geometry, slot).ok_or(RingError::BadSlot {
        index: slot,
        reason: "index out of range",
    })?;
    // SYNC POINT: Relaxed swap, so that only one of us and a racing producer wake scan sees
    // the flag set, and that one lowers `parked_consumers` for the dead holder.
    if slot_ref.parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
        decrement_parked_consumers(region);
    }
    // SYNC POINT: Release pairs with the producer's Acquire load of `state` in its scan and
    // with the next joiner's CAS, as a consumer's drop does.
    slot_ref.state.store(SLOT_FREE, Ordering::Release);
    wake_parked_producer(region, false);
    Ok(())
}

/// Raises the `notice` of slot `slot` and wakes its holder if it sleeps on this ring, without
/// publishing anything: the broker uses it to tell a subscriber to look at its control
/// socket. A running holder sees the notice with [`RingConsumer::take_notice`] (one load of
/// its own slot line), and is not disturbed otherwise (no syscall). Out-of-range slots are
/// ignored.
pub fn wake_consumer(region: &RingRegion, slot: usize) {
    let Ok(geometry) = attach(region) else {
        return;
    };
    let Some(slot) = slot_in(region, &geometry, slot) else {
        return;
    };
    // SYNC POINT: Release pairs with the Acquire swap in `take_notice`: what the caller did
    // before (sent the news on its control channel) is done when the holder sees the notice.
    // Ordered before the `parked` load below by the fence, so either the holder's park
    // re-check sees the notice or we see its flag.
    slot.notice.store(NOTICE_PENDING, Ordering::Release);
    fence(Ordering::SeqCst);
    // SYNC POINT: Relaxed, then a Relaxed swap, as in the producer's wake scan: clearing the
    // flag before the futex wake makes a consumer not yet asleep find the word changed; the
    // one who clears it lowers `parked_consumers`.
    if slot.parked.load(Ordering::Relaxed) != PARKED_RUNNING
        && slot.parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING
    {
        decrement_parked_consumers(region);
        let _ = wake::wake(region, &slot.parked);
    }
}
