//! Creating a ring in a region ([`init_with_mode`], behind [`RingRegion::new_in_memory`] and
//! `Segment::create_ring`) and validating an existing one ([`attach`]).

use super::error::RingError;
use super::layout::{
    data_offset, required_size, FULL_DROP, FULL_WAIT, MAX_CAPACITY, MAX_CONSUMERS, MIN_CAPACITY,
    MODE_LOSSLESS, MODE_LOSSY, PARKED_RUNNING, RING_MAGIC, RING_VERSION, SLOT_FREE,
};
use super::producer::RingProducer;
use super::region::RingRegion;
use super::sync::{Arc, Ordering};

/// The shape of a ring, read once from its header and validated; every later offset
/// computation uses this copy, never the header again (which another process may change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    /// Bytes in the data region: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub capacity: u64,
    /// Number of consumer slots: `1..=MAX_CONSUMERS`.
    pub max_consumers: u32,
    /// Lossy (overwrite) mode: the producer never reports `Full` and overwrites the oldest
    /// frames; a lapped consumer reports [`ReadError::Lagged`](super::ReadError::Lagged).
    pub lossy: bool,
}

impl RingGeometry {
    /// Checks the ranges and that the ring fits in `region_len` bytes.
    pub(super) fn validate(
        capacity: u64,
        max_consumers: u32,
        lossy: bool,
        region_len: usize,
    ) -> Result<Self, RingError> {
        if !capacity.is_power_of_two() {
            return Err(RingError::BadGeometry("capacity is not a power of two"));
        }
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(RingError::BadGeometry("capacity out of range"));
        }
        if !(1..=MAX_CONSUMERS).contains(&max_consumers) {
            return Err(RingError::BadGeometry("consumer count out of range"));
        }
        if required_size(capacity, max_consumers) > region_len {
            return Err(RingError::BadGeometry("ring does not fit in the region"));
        }
        Ok(Self {
            capacity,
            max_consumers,
            lossy,
        })
    }

    /// Offset of the data region from the start of the region.
    pub(crate) fn data_start(&self) -> usize {
        data_offset(self.max_consumers)
    }

    /// Data-region offset of byte position `pos`.
    pub(crate) fn offset_of(&self, pos: u64) -> usize {
        // `capacity` <= MAX_CAPACITY (2^31), so the masked value fits any 64-bit usize.
        (pos & (self.capacity - 1)) as usize
    }

    /// `capacity` as a `usize` (it fits: it is at most MAX_CAPACITY and fits the region).
    pub(crate) fn capacity_usize(&self) -> usize {
        self.capacity as usize
    }
}

/// Reads and validates the header of the ring in `region`.
///
/// # Errors
///
/// [`RingError::NotInitialised`] while the magic is still zero, [`RingError::BadMagic`],
/// [`RingError::VersionMismatch`], or [`RingError::BadGeometry`] when the capacity or consumer
/// count is out of range or the ring does not fit in the region.
pub fn attach(region: &RingRegion) -> Result<RingGeometry, RingError> {
    let header = region.header();
    // SYNC POINT: Acquire pairs with the Release store of `magic` at the end of `init`: the
    // version, geometry, write_pos and slots written before it are visible to the loads below.
    let magic = header.magic.load(Ordering::Acquire);
    if magic == 0 {
        return Err(RingError::NotInitialised);
    }
    if magic != RING_MAGIC {
        return Err(RingError::BadMagic { found: magic });
    }
    // SYNC POINT: Relaxed; ordered after `init`'s stores by the Acquire load of `magic` above.
    let version = header.version.load(Ordering::Relaxed);
    if version != RING_VERSION {
        return Err(RingError::VersionMismatch {
            found: version,
            expected: RING_VERSION,
        });
    }
    // SYNC POINT: Relaxed; ordered by the Acquire load of `magic` above.
    let capacity = header.capacity.load(Ordering::Relaxed);
    // SYNC POINT: Relaxed; ordered by the Acquire load of `magic` above.
    let max_consumers = header.max_consumers.load(Ordering::Relaxed);
    // SYNC POINT: Relaxed; ordered by the Acquire load of `magic` above.
    let lossy = match header.mode.load(Ordering::Relaxed) {
        MODE_LOSSLESS => false,
        MODE_LOSSY => true,
        _ => return Err(RingError::BadGeometry("unknown ring mode")),
    };
    RingGeometry::validate(capacity, max_consumers, lossy, region.len())
}

/// Writes a fresh ring header into `region` and returns the ring's only producer.
///
/// Order: the magic is cleared, then the geometry, `write_pos` and every slot are written, and
/// the version and then the magic are stored last, the magic with Release, so a concurrent
/// [`attach`] sees either "not initialised" or a complete header.
///
/// # Safety
///
/// - No producer of a ring in `region` exists or will exist besides the returned one (two
///   producers would write the same data bytes concurrently);
/// - no consumer is attached to `region` while it is (re)initialised.
///
/// # Errors
///
/// [`RingError::BadGeometry`] if `capacity` or `max_consumers` is out of range or the ring does
/// not fit in the region.
#[cfg(test)]
pub(crate) unsafe fn init(
    region: &Arc<RingRegion>,
    capacity: u64,
    max_consumers: u32,
) -> Result<RingProducer, RingError> {
    // SAFETY: the caller upholds `init`'s contract, which is `init_with_mode`'s.
    unsafe { init_with_mode(region, capacity, max_consumers, false) }
}

/// [`init`] for a lossless (`lossy = false`) or lossy (overwrite) ring.
///
/// # Safety
///
/// As for [`init`].
///
/// # Errors
///
/// As for [`init`].
pub(crate) unsafe fn init_with_mode(
    region: &Arc<RingRegion>,
    capacity: u64,
    max_consumers: u32,
    lossy: bool,
) -> Result<RingProducer, RingError> {
    let geometry = RingGeometry::validate(capacity, max_consumers, lossy, region.len())?;
    let header = region.header();
    // SYNC POINT: Relaxed; hides a previous ring from new attachers until the Release below.
    header.magic.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.capacity.store(capacity, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.max_consumers.store(max_consumers, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    let mode = if lossy { MODE_LOSSY } else { MODE_LOSSLESS };
    header.mode.store(mode, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.parked_consumers.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header
        .producer_parked
        .store(PARKED_RUNNING, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.producer.write_pos.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.producer.reserve_pos.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.producer.dropped.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.producer.oldest_pos.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.producer.next_seq.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.producer.next_seq_at.store(0, Ordering::Relaxed);
    // SYNC POINT: Relaxed, published by the Release store of `magic` below. A creator that
    // wants drops calls `set_drop_when_full` afterwards, before handing the ring over.
    header.full_policy.store(FULL_WAIT, Ordering::Relaxed);
    for index in 0..max_consumers as usize {
        let slot = region
            .slot(index)
            .ok_or(RingError::BadGeometry("slot outside the region"))?;
        // SYNC POINT: Relaxed, published by the Release store of `magic` below.
        slot.read_pos.store(0, Ordering::Relaxed);
        // SYNC POINT: Relaxed, published by the Release store of `magic` below.
        slot.state.store(SLOT_FREE, Ordering::Relaxed);
        // SYNC POINT: Relaxed, published by the Release store of `magic` below.
        slot.parked.store(PARKED_RUNNING, Ordering::Relaxed);
    }
    // SYNC POINT: Relaxed, published by the Release store of `magic` below.
    header.version.store(RING_VERSION, Ordering::Relaxed);
    // SYNC POINT: Release pairs with the Acquire load of `magic` in `attach`: everything stored
    // above is visible to whoever sees the magic.
    header.magic.store(RING_MAGIC, Ordering::Release);
    Ok(RingProducer::new(Arc::clone(region), geometry))
}

/// Marks a lossless ring so that the producer that adopts it ([`RingProducer::adopt`])
/// drops a frame that does not fit, counting it in the header's `dropped`, instead of waiting
/// for room (`backpressure = "drop_newest"`; see `docs/shm-layout.md`).
///
/// Call it after creating the ring and before handing it to the producer: `adopt` reads the
/// policy once. A lossy ring never lacks room, so there it changes nothing.
pub fn set_drop_when_full(region: &RingRegion) {
    // SYNC POINT: Relaxed; the ring reaches its adopter through a syscall (fd passing) or a
    // thread hand-over after this store, which orders it.
    region
        .header()
        .full_policy
        .store(FULL_DROP, Ordering::Relaxed);
}

impl RingRegion {
    /// Allocates a region on the heap, initialises a ring in it and returns the region (to
    /// join consumers to) with the ring's only producer. For rings within one process and
    /// for tests; a later step maps shared segments instead.
    ///
    /// # Errors
    ///
    /// [`RingError::BadGeometry`] for a capacity or consumer count out of range.
    pub fn new_in_memory(
        capacity: u64,
        max_consumers: u32,
    ) -> Result<(Arc<RingRegion>, RingProducer), RingError> {
        Self::new_in_memory_with_mode(capacity, max_consumers, false)
    }

    /// [`new_in_memory`](Self::new_in_memory) for a lossy (overwrite) ring: the producer never
    /// reports `Full`, and a consumer it laps reports [`ReadError::Lagged`](super::ReadError).
    ///
    /// # Errors
    ///
    /// As for [`new_in_memory`](Self::new_in_memory).
    pub fn new_in_memory_lossy(
        capacity: u64,
        max_consumers: u32,
    ) -> Result<(Arc<RingRegion>, RingProducer), RingError> {
        Self::new_in_memory_with_mode(capacity, max_consumers, true)
    }

    fn new_in_memory_with_mode(
        capacity: u64,
        max_consumers: u32,
        lossy: bool,
    ) -> Result<(Arc<RingRegion>, RingProducer), RingError> {
        RingGeometry::validate(capacity, max_consumers, lossy, usize::MAX)?;
        #[cfg(not(loom))]
        let region = Arc::new(RingRegion::allocate(required_size(
            capacity,
            max_consumers,
        ))?);
        #[cfg(loom)]
        let region = Arc::new(RingRegion::allocate_loom(capacity, max_consumers, lossy));
        // SAFETY: the region was allocated just above and nobody else holds it yet, so the
        // producer returned is the only one and no consumer is attached.
        let producer = unsafe { init_with_mode(&region, capacity, max_consumers, lossy)? };
        Ok((region, producer))
    }
}
