//! [`RingConsumer`]: one reader of a broadcast ring, holding one consumer slot.
//!
//! - A consumer sees every frame published after it joined (or since its slot was reserved),
//!   in order; in a lossless ring the producer never overwrites a frame it has not read.
//! - Everything read from the ring is untrusted: a scribbled ring yields
//!   [`ReadError::Corrupt`], never a panic, an out-of-bounds read or an endless loop.
//!
//! # Layout
//!
//! - this file: the consumer, joining and adopting a slot, its notice, and dropping it.
//! - `read`: the read calls (one frame, a batch, marked or not), lossless paths.
//! - `frames`: locating, copying and stepping past one frame, with every check.
//! - `gaps`: lost-message counts from sequence numbers and the producer's drop announcements.
//! - `lossy`: reading a ring the producer may overwrite.
//! - `park`: spinning and sleeping until a frame comes ([`RingConsumer::recv_blocking`],
//!   `wait_any`), and waking a producer that waits for room.
//! - `slots`: slots managed by a third party ([`reserve_slot`], [`release_slot`],
//!   [`wake_consumer`]).

use crate::shm::barrier;
use crate::shm::error::RingError;
use crate::shm::layout::{
    ConsumerSlot, FRAME_ALIGN, FULL_WAIT, NOTICE_NONE, PARKED_RUNNING, SLOT_ACTIVE, SLOT_FREE,
};
use crate::shm::region::RingRegion;
use crate::shm::ring::{attach, RingGeometry};
use crate::shm::sync::{Arc, Ordering};

mod frames;
mod gaps;
mod lossy;
mod park;
mod read;
mod slots;

#[cfg(doc)]
use crate::shm::error::ReadError;
pub(crate) use park::decrement_parked_consumers;
#[cfg(not(loom))]
pub use park::wait_any;
use park::wake_parked_producer;
#[cfg(all(test, not(loom)))]
pub(crate) use park::UNSLEPT_ROUNDS;
use slots::{claim_slot, slot_in};
pub use slots::{release_slot, reserve_slot, wake_consumer};

/// A reader of every frame published after it joined, in order.
///
/// Holds a consumer slot from [`join`](Self::join) until drop. In a lossless ring the producer
/// never overwrites a frame this consumer has not read; in a lossy ring it may, and the
/// consumer then reports [`ReadError::Lagged`] once and carries on with intact frames. A
/// lossless ring whose producer drops what does not fit (`FULL_DROP`, `drop_newest`) has
/// gaps in its sequence numbers where it dropped: the consumer reports each gap as a
/// [`ReadError::Lagged`] before the frame after it, or, when no frame follows yet, as soon as
/// it finds the ring empty after the frames before it (the producer's drop announcement;
/// [`reports_drops`](Self::reports_drops)).
pub struct RingConsumer {
    /// Keeps the memory alive; shared with the producer and other consumers.
    region: Arc<RingRegion>,
    /// Geometry validated at join; never re-read from the header.
    geometry: RingGeometry,
    /// Index of the slot this consumer claimed; freed on drop.
    slot: usize,
    /// Position of the next frame to read; the authoritative copy (the slot's `read_pos` is
    /// only what the producer is told).
    pos: u64,
    /// Payload copies for [`try_recv_batch`](Self::try_recv_batch).
    scratch: Vec<u8>,
    /// Lossy mode, and lossless rings whose producer drops (`drops`): sequence number
    /// (mod 2^31) of the next data frame, once known (learnt from the first frame read,
    /// except at position 0, where it is 0).
    expected: Option<u64>,
    /// The ring is lossless and its producer drops a frame that does not fit (`full_policy`
    /// FULL_DROP): a gap in the sequence numbers is a count of dropped messages, reported as
    /// `Lagged`. Read from shared memory at join: a scribbled policy only turns the reports
    /// on or off.
    drops: bool,
    /// Lossy mode: lapped before the first frame read, so the count of lost messages is
    /// unknown; reported as a lag of 1 with the next frame.
    lost_unknown: bool,
    /// Lossy mode: a lag found by a batch that had already delivered frames, reported by the
    /// next read.
    pending_lag: Option<u64>,
    /// Whether dropping this consumer frees its slot: yes for a joined consumer; no for an
    /// adopted one, whose slot belongs to whoever reserved it (and frees it with
    /// [`release_slot`]), so a slot is never freed twice, even across a reuse.
    frees_slot: bool,
    /// This process is registered for the producer's heavy barrier (`barrier.rs`): telling
    /// the producer about room needs no fence of our own.
    light_barrier: bool,
}

/// Where a frame's payload lies, found by [`RingConsumer::locate`].
struct Located {
    /// Data-region offset of the payload.
    offset: usize,
    /// Payload bytes.
    len: usize,
    /// Position after the frame.
    next: u64,
    /// The frame's sequence number modulo 2^31, from its `tag` (trusted only in lossy mode,
    /// and only for counting lost messages).
    seq: u64,
    /// The flags of its `len` word (reference, envelope), unchecked.
    flags: crate::shm::FrameFlags,
}

impl RingConsumer {
    /// Attaches to the ring in `region`, claims a free slot and starts at the current
    /// `write_pos`: the consumer sees frames published from now on.
    ///
    /// # Errors
    ///
    /// Those of [`attach`]; [`RingError::NoFreeSlot`] when every slot is taken;
    /// [`RingError::Corrupt`] if `write_pos` is not frame-aligned.
    pub fn join(region: &Arc<RingRegion>) -> Result<Self, RingError> {
        let geometry = attach(region)?;
        let (slot, start) = claim_slot(region, &geometry)?;
        Ok(Self::new(region, geometry, slot, start, true))
    }

    /// Takes over consumer slot `slot`, which someone else reserved for us with
    /// [`reserve_slot`] (the broker, which creates rings and hands slots to subscribers):
    /// starts at the slot's `read_pos`, so it sees every frame published since the
    /// reservation. Unlike a joined consumer, it leaves the slot held when dropped: the
    /// reserver frees it with [`release_slot`] once the holder has detached or died (the
    /// producer keeps frames for it until then).
    ///
    /// Everything about the slot is read from shared memory and checked: the index must be in
    /// range, the slot ACTIVE, and `read_pos` frame-aligned and within one capacity below the
    /// published `write_pos` (in a lossy ring it may be further behind: the producer has
    /// lapped it, and the first read reports the lag).
    ///
    /// # Errors
    ///
    /// Those of [`attach`]; [`RingError::BadSlot`] for an index out of range, a slot that is
    /// not active, or a `read_pos` that is misaligned or outside the window;
    /// [`RingError::Corrupt`] if `write_pos` is not frame-aligned.
    pub fn adopt(region: &Arc<RingRegion>, slot: usize) -> Result<Self, RingError> {
        let geometry = attach(region)?;
        let bad = |reason| RingError::BadSlot {
            index: slot,
            reason,
        };
        let slot_ref = slot_in(region, &geometry, slot).ok_or(bad("index out of range"))?;
        // SYNC POINT: Acquire pairs with the Release (AcqRel CAS) of the claim in
        // `reserve_slot`: the `read_pos` it stored before is visible to the load below.
        if slot_ref.state.load(Ordering::Acquire) != SLOT_ACTIVE {
            return Err(bad("slot not active"));
        }
        // SYNC POINT: Acquire pairs with the Release store of `read_pos` by the reserver (or a
        // previous holder); only a starting point, checked below.
        let start = slot_ref.read_pos.load(Ordering::Acquire);
        if start % FRAME_ALIGN as u64 != 0 {
            return Err(bad("read position not frame-aligned"));
        }
        // SYNC POINT: Acquire pairs with the producer's Release store in `publish`.
        let write_pos = region.header().producer.write_pos.load(Ordering::Acquire);
        if write_pos % FRAME_ALIGN as u64 != 0 {
            return Err(RingError::Corrupt("write position not frame-aligned"));
        }
        let in_window =
            start <= write_pos && (geometry.lossy || write_pos - start <= geometry.capacity);
        if !in_window {
            return Err(bad("read position outside the ring's window"));
        }
        // SYNC POINT: Relaxed; clears a flag the reserver (or a scribbler) left, as in
        // `claim_slot`. At worst the producer saw it first and sends us one spurious wake.
        slot_ref.parked.store(PARKED_RUNNING, Ordering::Relaxed);
        Ok(Self::new(region, geometry, slot, start, false))
    }

    /// A consumer holding slot `slot` (already claimed) at position `start`.
    fn new(
        region: &Arc<RingRegion>,
        geometry: RingGeometry,
        slot: usize,
        start: u64,
        frees_slot: bool,
    ) -> Self {
        // SYNC POINT: Relaxed; stored by the ring's creator before it handed the segment (or
        // the slot) over, which a syscall or a thread hand-over ordered.
        let policy = region.header().full_policy.load(Ordering::Relaxed);
        let drops = !geometry.lossy && policy != FULL_WAIT;
        Self {
            region: Arc::clone(region),
            geometry,
            slot,
            pos: start,
            scratch: Vec::new(),
            // The first frame ever written has sequence number 0: a consumer that starts
            // there misses no drop; one that starts later learns the number from its first
            // frame (drops between its start and that frame go unreported).
            expected: (drops && start == 0).then_some(0),
            drops,
            lost_unknown: false,
            pending_lag: None,
            frees_slot,
            light_barrier: barrier::register_light_barrier(),
        }
    }

    /// Whether whoever reserved this consumer's slot raised its notice since the last call
    /// (and clears it): the broker's way to say "look at your control channel". One Relaxed
    /// load of the consumer's own slot line when there is none.
    pub fn take_notice(&self) -> bool {
        let notice = &self.slot().notice;
        // SYNC POINT: Relaxed load, then an Acquire swap pairing with the Release store in
        // `wake_consumer`: the news sent before the notice is there to read.
        notice.load(Ordering::Relaxed) != NOTICE_NONE
            && notice.swap(NOTICE_NONE, Ordering::Acquire) != NOTICE_NONE
    }

    /// Whether this consumer's notice is raised, without clearing it (see
    /// [`take_notice`](Self::take_notice)).
    pub fn has_notice(&self) -> bool {
        // SYNC POINT: Relaxed; a hint, like `has_data`. After `park_begin`'s SeqCst fence it
        // pairs with the fence in `wake_consumer` (Dekker, as for `write_pos`).
        self.slot().notice.load(Ordering::Relaxed) != NOTICE_NONE
    }

    /// Whether this consumer reports the messages its producer dropped (a lossless ring with
    /// `FULL_DROP`, `drop_newest`): each gap in the frames' sequence numbers is returned as a
    /// [`ReadError::Lagged`] with the gap's size, once, and the next read returns the frame
    /// after the gap. Gaps are counted modulo 2^31 (the sequence number's width): more than
    /// 2^31 - 1 drops in a row between two frames are under-reported by a multiple of 2^31.
    /// A gap is reported as soon as this consumer has read every frame before it: by the
    /// frame after it, or, when no frame follows yet, by the first read that finds the ring
    /// empty, from the drop announcement in the ring's header (`next_seq`, `next_seq_at`).
    /// Drops that go on after that announcement are reported in turn, by the next empty read
    /// or the next frame, so one gap may come as several `Lagged`s in a row; each dropped
    /// message is counted once. A consumer that started after position 0 learns the
    /// numbering from its first frame: drops before that are not reported to it.
    pub fn reports_drops(&self) -> bool {
        self.drops
    }

    /// Stops reporting drops, for good: a queue consumer, for which a message dropped before
    /// it was dealt is nobody's loss in particular. (Never turned back on: the numbering is
    /// not followed meanwhile, so the first frame after would look like a gap.)
    pub fn ignore_drops(&mut self) {
        self.drops = false;
    }

    /// Position of the next frame to read (bytes since the ring was created).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Index of the slot this consumer holds.
    pub fn slot_index(&self) -> usize {
        self.slot
    }

    /// The slot this consumer holds.
    fn slot(&self) -> &ConsumerSlot {
        // `join` found slot `self.slot` inside the region, and a region's length never changes.
        self.region.slot(self.slot).expect("slot checked at join")
    }
}

impl Drop for RingConsumer {
    fn drop(&mut self) {
        // SYNC POINT: Relaxed; ordered before the Release store below, so the next holder
        // (whose CAS acquires it) starts with a clear flag. `join` clears it again anyway.
        self.slot().parked.store(PARKED_RUNNING, Ordering::Relaxed);
        if !self.frees_slot {
            return;
        }
        // SYNC POINT: Release pairs with the producer's Acquire load of `state` in its scan and
        // with the next joiner's CAS: our reads happen-before the producer reuses the bytes.
        self.slot().state.store(SLOT_FREE, Ordering::Release);
        // Our slot no longer holds the producer back: wake it if it waits for room.
        wake_parked_producer(&self.region, false);
    }
}
