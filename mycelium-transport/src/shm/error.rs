//! The errors of ring setup, pushing and reading.

/// Why a ring could not be created, attached or joined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The magic word is still zero: the creator has not finished initialising the ring.
    #[error("ring not initialised yet")]
    NotInitialised,
    /// The region does not start with [`RING_MAGIC`](super::layout::RING_MAGIC): not a ring.
    #[error("bad ring magic {found:#018x}")]
    BadMagic {
        /// The first eight bytes of the region, as read.
        found: u64,
    },
    /// The ring was written by another layout version.
    #[error("ring layout version {found}, expected {expected}")]
    VersionMismatch {
        /// The version in the header.
        found: u32,
        /// [`RING_VERSION`](super::layout::RING_VERSION).
        expected: u32,
    },
    /// Capacity or consumer count out of range, or larger than the region.
    #[error("bad ring geometry: {0}")]
    BadGeometry(&'static str),
    /// Every consumer slot is taken.
    #[error("no free consumer slot")]
    NoFreeSlot,
    /// The header contradicts itself (shared memory was overwritten).
    #[error("corrupt ring: {0}")]
    Corrupt(&'static str),
    /// A slot index given to [`release_slot`](super::release_slot) or
    /// [`RingConsumer::adopt`](super::RingConsumer::adopt) is out of range, or (adopt) the
    /// slot is not active or its `read_pos` is not a position a consumer could start at.
    #[error("bad consumer slot {index}: {reason}")]
    BadSlot {
        /// The slot index given.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why [`RingProducer::try_push`](super::RingProducer::try_push) refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Writing the frame would overrun the slowest active consumer; retry after it reads.
    #[error("ring full")]
    Full,
    /// A loan was asked of a lossy ring, where readers may copy bytes while they are being
    /// overwritten: its frames are written through atomic words only, never lent out.
    #[error("frames of a lossy ring cannot be lent out")]
    LossyLoan,
    /// The payload can never fit: a frame may take at most half the ring.
    #[error("payload of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge {
        /// Payload bytes offered.
        len: usize,
        /// [`max_payload`](super::max_payload) of this ring.
        max: usize,
    },
}

/// Why a consumer could not read: the ring's shared memory is corrupt, or (lossy rings only)
/// the producer overwrote frames this consumer had not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A position or frame header read from shared memory is impossible.
    ///
    /// The consumer's position is left where it was, so every later read returns the same
    /// error; the owner of the ring should drop the consumer (and, later, disconnect the
    /// culprit).
    #[error("corrupt ring: {0}")]
    Corrupt(&'static str),
    /// `skipped` messages were lost before the next frame (as tokio's
    /// `broadcast::error::RecvError::Lagged`). In a lossy ring the producer lapped this
    /// consumer; the consumer has moved on, and the next read returns the oldest frame still
    /// intact. In a lossless ring whose producer drops what does not fit (`drop_newest`,
    /// [`RingConsumer::reports_drops`](super::RingConsumer::reports_drops)) the producer
    /// dropped them, never writing them; the next read returns the frame after the gap.
    ///
    /// `skipped` counts messages (data frames) exactly, modulo 2^31, the range of a frame's
    /// sequence number. One case is a lower bound: a consumer lapped before it read its first
    /// frame does not know where its count started and reports 1 (and in a dropping ring,
    /// drops between a consumer's start after position 0 and its first frame are not
    /// reported).
    #[error("lagged behind the producer: {skipped} messages skipped")]
    Lagged {
        /// Messages overwritten before this consumer read them.
        skipped: u64,
    },
}

/// Why [`RingConsumer::recv_blocking`](super::RingConsumer::recv_blocking) returned without a
/// frame (other than its timeout, which is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The ring's shared memory is corrupt (as for [`ReadError`]).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Waiting for a wake-up failed: an unexpected error of the futex system call (timeouts,
    /// signals and spurious wake-ups are not errors).
    #[error("waiting for a wake-up failed: {0}")]
    Park(#[source] std::io::Error),
}
