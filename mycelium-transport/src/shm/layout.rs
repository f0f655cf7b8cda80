//! The byte layout of a broadcast ring, as `#[repr(C)]` structs and named offsets.
//!
//! A ring is one contiguous region, 64-byte aligned, all integers native-endian (both ends run
//! on the same machine):
//!
//! ```text
//! offset        size  field            type       written by   meaning
//! ------------  ----  ---------------  ---------  -----------  --------------------------------
//! header line 0 (read-mostly: the geometry is read-only after init)
//!    0             8  magic            AtomicU64  creator      b"MYCRING1"; stored LAST (Release)
//!    8             4  version          AtomicU32  creator      RING_VERSION
//!   12             4  mode             AtomicU32  creator      MODE_LOSSLESS / MODE_LOSSY
//!   16             8  capacity         AtomicU64  creator      data bytes, power of two
//!   24             4  max_consumers    AtomicU32  creator      number of consumer slots
//!   28             4  parked_consumers AtomicU32  consumers    consumers parked or about to park;
//!                                                              0 lets the producer skip its scan
//!   32             4  producer_parked  AtomicU32  producer,    PARKED_RUNNING / PARKED; the futex
//!                                                 consumers    word the producer sleeps on when
//!                                                              full (consumers only clear it)
//!   36             4  full_policy      AtomicU32  creator      FULL_WAIT / FULL_DROP: what an
//!                                                              adopting producer does when a
//!                                                              lossless ring is full
//!   40            24  (padding)
//! header line 1 (producer-owned)
//!   64             8  write_pos        AtomicU64  producer     bytes ever published
//!   72             8  reserve_pos      AtomicU64  producer     lossy: bytes the producer may be
//!                                                              writing (announced BEFORE it writes)
//!   80             8  dropped          AtomicU64  producer     frames refused for lack of room
//!                                                              and dropped (FULL_DROP); a counter
//!                                                              for observers, never read back
//!   88             8  oldest_pos       AtomicU64  producer     lossy: start of the oldest frame
//!                                                              not yet overwritten (stored with
//!                                                              reserve_pos, BEFORE the overwrite)
//!   96             8  next_seq         AtomicU64  producer     FULL_DROP: the sequence number the
//!                                                              next frame will carry, stored on a
//!                                                              drop (never on a push)
//!  104             8  next_seq_at      AtomicU64  producer     FULL_DROP: the position that frame
//!                                                              will be written at (`write_pos`
//!                                                              when `next_seq` was stored); stored
//!                                                              AFTER `next_seq`
//!  112            16  (padding)
//! consumer slot i, i in 0..max_consumers, one line each, at 128 + 64 * i
//!   +0             8  read_pos         AtomicU64  consumer i   bytes consumer i has consumed
//!   +8             4  state            AtomicU32  consumer i   SLOT_FREE / SLOT_ACTIVE (also a
//!                                                 or broker    third party: reserve_slot,
//!                                                              release_slot)
//!  +12             4  parked           AtomicU32  consumer i,  PARKED_RUNNING / PARKED; the
//!                                                 producer     futex word consumer i sleeps on
//!                                                              (producer only clears it)
//!  +16             4  notice           AtomicU32  reserver     NOTICE_NONE / NOTICE_PENDING:
//!                                                 sets, i      "look at your control channel"
//!                                                 clears       (wake_consumer_with_notice)
//!  +20            44  (padding)
//! data region, at 128 + 64 * max_consumers (64-byte aligned)
//!   +0      capacity  frames
//! ```
//!
//! A frame in the data region starts at a 64-byte-aligned offset (FRAME_ALIGN, a cache line)
//! and never straddles the end:
//!
//! ```text
//! +0  len    u32  data frame: bits 0..30 = payload bytes (below 2^30: MAX_CAPACITY);
//!                 bit 30 = FRAME_ENVELOPE: the message begins with an envelope;
//!                 bit 31 = FRAME_REFERENCE: the payload is a reference to a payload segment
//!                 padding frame: all 32 bits = capacity - offset - 8 (no flags)
//! +4  tag    u32  bit 0 = FRAME_PADDING; bits 1..32 = the frame's sequence number mod 2^31
//!                 (data frames since the ring was created; a padding frame carries the next one)
//! +8  payload, then unspecified bytes up to the next multiple of 64
//! ```
//!
//! Positions (`write_pos`, `read_pos`) count bytes since the ring was created and never wrap;
//! the offset of position `p` in the data region is `p & (capacity - 1)`.

use super::sync::{AtomicU32, AtomicU64};

/// The first eight bytes of an initialised ring (`b"MYCRING1"` in memory order).
pub const RING_MAGIC: u64 = u64::from_ne_bytes(*b"MYCRING1");

/// The layout version this code reads and writes; bumped on any layout change.
pub const RING_VERSION: u32 = 11;

/// Cache-line size the layout pads to, so producer- and consumer-owned words never share a line.
pub const CACHE_LINE: usize = 64;

/// Alignment of every frame start and of every frame's total size: a cache line.
///
/// With 8-byte alignment consecutive frames shared lines, so a subscriber that keeps up read
/// the line its publisher was about to write the next frame into; every publish then waited
/// for that line to come back (the publish fence drains the store buffer), and the pair
/// settled at half speed (W1 20 M msg/s; with whole lines per frame 28-30 M in the same
/// minutes). The price: a frame takes at least a line (a 64-byte payload takes two).
#[cfg(not(loom))]
pub const FRAME_ALIGN: usize = CACHE_LINE;
/// Under loom rings are 64 bytes (a model explores every interleaving, so it must stay
/// tiny), and frames keep the 8-byte alignment the protocol needs; the synchronisation the
/// models check does not depend on it.
#[cfg(loom)]
pub const FRAME_ALIGN: usize = 8;

/// Bytes of frame header (`len` + `tag`) before each payload.
pub const FRAME_HEADER_LEN: usize = 8;

/// `tag` bit marking a padding frame, which fills the end of the ring before a wrap.
pub const FRAME_PADDING: u32 = 1;

/// Bit of a data frame's `len` word marking a **reference frame**: its payload (bits 0..30 of
/// `len` bytes) names a payload segment that holds the message (`docs/shm-layout.md`, Payload
/// segments). A bit of `len` rather than of `tag`, so the sequence number keeps its 31 bits;
/// payload lengths never reach it, since [`MAX_CAPACITY`] keeps `max_payload` below 2^30.
pub const FRAME_REFERENCE: u32 = 1 << 31;

/// Bit of a data frame's `len` word marking a message that **begins with an envelope**
/// ([`crate::envelope`]): the frame's payload, or for a reference frame the referenced
/// segment's bytes. A frame without it carries plain payload, exactly as before the bit
/// existed. Payload lengths never reach it: [`MAX_CAPACITY`] keeps `max_payload` below 2^30.
pub const FRAME_ENVELOPE: u32 = 1 << 30;

/// Every flag bit of a data frame's `len` word; the rest is the payload length.
pub const FRAME_FLAGS_MASK: u32 = FRAME_REFERENCE | FRAME_ENVELOPE;

/// Shift of the sequence number in a frame's `tag` (above the padding bit).
pub const FRAME_SEQ_SHIFT: u32 = 1;

/// Sequence numbers in a frame's `tag` count modulo this (2^31).
pub const FRAME_SEQ_MODULUS: u64 = 1 << 31;

/// `mode` of a lossless ring: the producer returns `Full` rather than overwrite unread frames.
pub const MODE_LOSSLESS: u32 = 0;

/// `mode` of a lossy ring: the producer overwrites the oldest frames; lapped consumers report
/// `ReadError::Lagged`.
pub const MODE_LOSSY: u32 = 1;

/// `full_policy` of a ring whose producer waits for room when the ring is full (`block`).
pub const FULL_WAIT: u32 = 0;

/// `full_policy` of a ring whose producer drops a frame that does not fit, counting it in
/// `dropped` (`drop_newest`). Any value other than [`FULL_WAIT`] counts as this one.
pub const FULL_DROP: u32 = 1;

/// Smallest data capacity a ring may have (one page). Loom models use tiny rings instead,
/// because the model checker's cost grows with every byte it tracks.
#[cfg(not(loom))]
pub const MIN_CAPACITY: u64 = 4096;
/// Smallest data capacity a ring may have (lowered under loom so models stay tiny).
#[cfg(loom)]
pub const MIN_CAPACITY: u64 = 64;

/// Largest data capacity a ring may have (2 GiB): keeps every offset computation far from
/// overflow, rejects absurd capacities read from a corrupt header, and keeps every payload
/// length (at most half a ring less a header, so below 2^30) clear of the flag bits of the
/// `len` word, [`FRAME_ENVELOPE`] (bit 30) and [`FRAME_REFERENCE`] (bit 31). The broker's
/// configuration caps `ring_bytes` at 1 GiB, below this.
pub const MAX_CAPACITY: u64 = 1 << 31;

/// Most consumer slots a ring may have; bounds the producer's scan and the header size.
pub const MAX_CONSUMERS: u32 = 1024;

/// `state` of a consumer slot nobody holds.
pub const SLOT_FREE: u32 = 0;

/// `state` of a consumer slot held by a live consumer.
pub const SLOT_ACTIVE: u32 = 1;

/// `parked` of a consumer (or `producer_parked` of the producer) that is running (or has been
/// woken).
pub const PARKED_RUNNING: u32 = 0;

/// `parked` of a consumer (or `producer_parked` of a producer) that sleeps on that futex word,
/// or is about to; any non-zero value counts as parked (a scribbled value costs one spurious
/// wake, never a lost one).
pub const PARKED: u32 = 1;

/// Offset of `magic` in the region.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of `version` in the region.
pub const VERSION_OFFSET: usize = 8;
/// Offset of `capacity` in the region.
pub const CAPACITY_OFFSET: usize = 16;
/// Offset of `max_consumers` in the region.
pub const MAX_CONSUMERS_OFFSET: usize = 24;
/// Offset of `parked_consumers` in the region (header line 0).
pub const PARKED_CONSUMERS_OFFSET: usize = 28;
/// Offset of `producer_parked` in the region (header line 0).
pub const PRODUCER_PARKED_OFFSET: usize = 32;
/// Offset of `full_policy` in the region (header line 0).
pub const FULL_POLICY_OFFSET: usize = 36;
/// Offset of the producer's `write_pos` (its own cache line).
pub const WRITE_POS_OFFSET: usize = 64;
/// Offset of `mode` in the region.
pub const MODE_OFFSET: usize = 12;
/// Offset of the producer's `reserve_pos` (lossy mode), beside `write_pos`.
pub const RESERVE_POS_OFFSET: usize = 72;
/// Offset of the producer's `dropped` counter, beside `reserve_pos`.
pub const DROPPED_OFFSET: usize = 80;
/// Offset of the producer's `oldest_pos` (lossy mode), beside `dropped`.
pub const OLDEST_POS_OFFSET: usize = 88;
/// Offset of the producer's `next_seq` (drop announcements), beside `oldest_pos`.
pub const NEXT_SEQ_OFFSET: usize = 96;
/// Offset of the producer's `next_seq_at` (drop announcements), beside `next_seq`.
pub const NEXT_SEQ_AT_OFFSET: usize = 104;
/// Offset of consumer slot 0; slot `i` is at `SLOTS_OFFSET + i * SLOT_SIZE`.
pub const SLOTS_OFFSET: usize = 128;
/// Size of one consumer slot (one cache line).
pub const SLOT_SIZE: usize = 64;
/// Offset of `read_pos` within a slot.
pub const SLOT_READ_POS_OFFSET: usize = 0;
/// Offset of `state` within a slot.
pub const SLOT_STATE_OFFSET: usize = 8;
/// Offset of `parked` within a slot.
pub const SLOT_PARKED_OFFSET: usize = 12;
/// Offset of `notice` within a slot.
pub const SLOT_NOTICE_OFFSET: usize = 16;

/// `notice` of a slot whose holder has nothing to look at.
pub const NOTICE_NONE: u32 = 0;

/// `notice` of a slot whose reserver has news for the holder on their control channel (any
/// non-zero value counts: a scribbled one costs the holder one needless look).
pub const NOTICE_PENDING: u32 = 1;

/// Header line 0 plus the producer's line: bytes `0..128` of a ring.
#[repr(C, align(64))]
pub(crate) struct RingHeader {
    /// [`RING_MAGIC`] once the ring is initialised; written last, with Release.
    pub(crate) magic: AtomicU64,
    /// [`RING_VERSION`].
    pub(crate) version: AtomicU32,
    /// [`MODE_LOSSLESS`] or [`MODE_LOSSY`].
    pub(crate) mode: AtomicU32,
    /// Bytes in the data region.
    pub(crate) capacity: AtomicU64,
    /// Number of consumer slots after the header.
    pub(crate) max_consumers: AtomicU32,
    /// How many consumers are parked or about to park: raised before a consumer's `parked`
    /// flag and lowered after it wakes. The producer's wake scan is skipped while it reads 0.
    /// Untrusted: a scribbled value costs scans (too high) or delays a wake to the consumer's
    /// timeout (too low), never more.
    pub(crate) parked_consumers: AtomicU32,
    /// [`PARKED`] while the producer sleeps on this futex word waiting for room (or is about
    /// to); a consumer that frees room clears it and wakes the producer.
    pub(crate) producer_parked: AtomicU32,
    /// [`FULL_WAIT`] or [`FULL_DROP`], stored by the creator before the ring is handed over and
    /// read once by [`RingProducer::adopt`](super::RingProducer::adopt).
    pub(crate) full_policy: AtomicU32,
    /// The producer-owned line.
    pub(crate) producer: ProducerLine,
}

/// The producer's cache line.
#[repr(C, align(64))]
pub(crate) struct ProducerLine {
    /// Bytes ever published; consumers read it with Acquire.
    pub(crate) write_pos: AtomicU64,
    /// Lossy mode: every byte the producer may be writing lies below this position; it is
    /// advanced before the bytes are written, so a reader can tell a copy that may be torn.
    pub(crate) reserve_pos: AtomicU64,
    /// Frames the producer dropped because they did not fit (`FULL_DROP`), stored by the
    /// producer from its own count; read by third parties (the broker's stats) as a hint.
    pub(crate) dropped: AtomicU64,
    /// Lossy mode: the start of the oldest frame (padding frames included) that the producer
    /// has not begun to overwrite; a lapped consumer resumes there. Stored before the
    /// `reserve_pos` that announces the overwrite (`docs/shm-layout.md`, lossy rule).
    pub(crate) oldest_pos: AtomicU64,
    /// Drop announcements (`FULL_DROP` rings): the sequence number (the producer's full
    /// count; frames carry it mod 2^31) the next frame will carry, stored by the producer each
    /// time it drops, never when it pushes. 0 (with `next_seq_at` 0) in a ring that never
    /// dropped: "at position 0 the next frame is number 0", which is true and announces
    /// nothing (`docs/shm-layout.md`, Dropping when full).
    pub(crate) next_seq: AtomicU64,
    /// The position the frame numbered `next_seq` will be written at: `write_pos` when that
    /// `next_seq` was stored (the producer publishes before it announces). Stored after
    /// `next_seq`, with Release; a consumer loads it first. Only compared with a consumer's
    /// own position, never used as an offset.
    pub(crate) next_seq_at: AtomicU64,
}

/// One consumer's cache line.
#[repr(C, align(64))]
pub(crate) struct ConsumerSlot {
    /// Bytes this consumer has consumed; the producer reads it with Acquire.
    pub(crate) read_pos: AtomicU64,
    /// [`SLOT_FREE`] or [`SLOT_ACTIVE`].
    pub(crate) state: AtomicU32,
    /// [`PARKED`] while the consumer sleeps on this futex word (or is about to); the producer's
    /// wake scan clears it and wakes the word (the wake protocol, `docs/shm-layout.md`).
    pub(crate) parked: AtomicU32,
    /// [`NOTICE_PENDING`] when whoever reserved the slot has news for its holder on their
    /// control channel (the broker: a ring added or removed); the holder clears it.
    pub(crate) notice: AtomicU32,
}

#[cfg(loom)]
impl RingHeader {
    /// An all-zero header (loom atomics must be constructed, not cast from bytes).
    pub(crate) fn zeroed() -> Self {
        Self {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            mode: AtomicU32::new(MODE_LOSSLESS),
            capacity: AtomicU64::new(0),
            max_consumers: AtomicU32::new(0),
            parked_consumers: AtomicU32::new(0),
            producer_parked: AtomicU32::new(PARKED_RUNNING),
            full_policy: AtomicU32::new(FULL_WAIT),
            producer: ProducerLine {
                write_pos: AtomicU64::new(0),
                reserve_pos: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                oldest_pos: AtomicU64::new(0),
                next_seq: AtomicU64::new(0),
                next_seq_at: AtomicU64::new(0),
            },
        }
    }
}

#[cfg(loom)]
impl ConsumerSlot {
    /// A free slot at position 0.
    pub(crate) fn zeroed() -> Self {
        Self {
            read_pos: AtomicU64::new(0),
            state: AtomicU32::new(SLOT_FREE),
            parked: AtomicU32::new(PARKED_RUNNING),
            notice: AtomicU32::new(NOTICE_NONE),
        }
    }
}

/// Offset of the data region for a ring with `max_consumers` slots (a multiple of 64).
pub const fn data_offset(max_consumers: u32) -> usize {
    SLOTS_OFFSET + max_consumers as usize * SLOT_SIZE
}

/// Bytes a region needs for a ring of `capacity` data bytes and `max_consumers` slots;
/// saturates at `usize::MAX` for geometries no machine could map.
pub fn required_size(capacity: u64, max_consumers: u32) -> usize {
    let slots = (max_consumers as usize).saturating_mul(SLOT_SIZE);
    let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
    SLOTS_OFFSET.saturating_add(slots).saturating_add(capacity)
}

/// Largest payload a ring of `capacity` bytes accepts: a whole frame may take at most half the
/// ring, so it always fits after a wrap once consumers have caught up.
pub const fn max_payload(capacity: u64) -> usize {
    (capacity / 2) as usize - FRAME_HEADER_LEN
}

/// Total bytes a frame with `len` payload bytes takes: header plus payload, rounded up to
/// [`FRAME_ALIGN`].
pub(crate) const fn frame_size(len: usize) -> usize {
    (FRAME_HEADER_LEN + len).next_multiple_of(FRAME_ALIGN)
}

// The layout above, checked at compile time. Loom's atomics are larger than std's, so these
// hold only for the real build (loom rings live in ordinary Rust structs, not in raw bytes).
#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RingHeader>() == SLOTS_OFFSET);
    assert!(align_of::<RingHeader>() == CACHE_LINE);
    assert!(offset_of!(RingHeader, magic) == MAGIC_OFFSET);
    assert!(offset_of!(RingHeader, version) == VERSION_OFFSET);
    assert!(offset_of!(RingHeader, mode) == MODE_OFFSET);
    assert!(offset_of!(RingHeader, capacity) == CAPACITY_OFFSET);
    assert!(offset_of!(RingHeader, max_consumers) == MAX_CONSUMERS_OFFSET);
    assert!(offset_of!(RingHeader, parked_consumers) == PARKED_CONSUMERS_OFFSET);
    assert!(offset_of!(RingHeader, producer_parked) == PRODUCER_PARKED_OFFSET);
    assert!(PRODUCER_PARKED_OFFSET + 4 <= CACHE_LINE);
    assert!(offset_of!(RingHeader, full_policy) == FULL_POLICY_OFFSET);
    assert!(FULL_POLICY_OFFSET + 4 <= CACHE_LINE);
    assert!(offset_of!(RingHeader, producer) == WRITE_POS_OFFSET);
    assert!(offset_of!(ProducerLine, write_pos) == 0);
    assert!(WRITE_POS_OFFSET + offset_of!(ProducerLine, reserve_pos) == RESERVE_POS_OFFSET);
    assert!(WRITE_POS_OFFSET + offset_of!(ProducerLine, dropped) == DROPPED_OFFSET);
    assert!(WRITE_POS_OFFSET + offset_of!(ProducerLine, oldest_pos) == OLDEST_POS_OFFSET);
    assert!(WRITE_POS_OFFSET + offset_of!(ProducerLine, next_seq) == NEXT_SEQ_OFFSET);
    assert!(WRITE_POS_OFFSET + offset_of!(ProducerLine, next_seq_at) == NEXT_SEQ_AT_OFFSET);
    assert!(NEXT_SEQ_AT_OFFSET + 8 <= SLOTS_OFFSET);
    assert!(size_of::<ConsumerSlot>() == SLOT_SIZE);
    assert!(align_of::<ConsumerSlot>() == CACHE_LINE);
    assert!(offset_of!(ConsumerSlot, read_pos) == SLOT_READ_POS_OFFSET);
    assert!(offset_of!(ConsumerSlot, state) == SLOT_STATE_OFFSET);
    assert!(offset_of!(ConsumerSlot, parked) == SLOT_PARKED_OFFSET);
    assert!(offset_of!(ConsumerSlot, notice) == SLOT_NOTICE_OFFSET);
    assert!(SLOTS_OFFSET % CACHE_LINE == 0 && SLOT_SIZE % CACHE_LINE == 0);
    assert!(FRAME_ALIGN % FRAME_HEADER_LEN == 0);
    assert!(MIN_CAPACITY.is_power_of_two() && MIN_CAPACITY % CACHE_LINE as u64 == 0);
    assert!(data_offset(MAX_CONSUMERS) % CACHE_LINE == 0);
    // Every payload length stays below the flag bits of the `len` word.
    assert!(max_payload(MAX_CAPACITY) < FRAME_ENVELOPE as usize);
    assert!(FRAME_FLAGS_MASK == 3 << 30);
};
