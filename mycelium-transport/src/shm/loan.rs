//! [`FrameLoan`]: the payload bytes of a frame not yet written, lent to be filled in place.
//!
//! The only `unsafe` here turns the bounds-checked span of the ring's data region that the
//! producer reserved into a `&mut [u8]`. Exclusive access within this process holds by
//! construction: the loan borrows the ring's only producer mutably, and the span lies beyond
//! the published `write_pos` and below the lossless limit, where no consumer reads. Other
//! processes that map the segment could still write those bytes (a hostile peer; the ring
//! protocol forbids it): as for any shared memory, what they write can only change the
//! message's bytes, and this crate never reads the span back.

use super::frame_flags::FrameFlags;
use super::layout::FRAME_HEADER_LEN;
use super::producer::RingProducer;

/// The payload bytes of the next frame, lent by [`RingProducer::try_loan`] to be written in
/// place. Holds the producer: nothing else is pushed until it is committed or dropped.
pub struct FrameLoan<'a> {
    producer: &'a mut RingProducer,
    /// Data offset of the frame's header; the payload follows it.
    offset: usize,
    /// Payload bytes lent.
    len: usize,
}

impl<'a> FrameLoan<'a> {
    pub(crate) fn new(producer: &'a mut RingProducer, offset: usize, len: usize) -> Self {
        FrameLoan {
            producer,
            offset,
            len,
        }
    }

    /// The lent bytes, to write the message into. Their contents before writing are
    /// unspecified (an older frame's bytes).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let data_start = self.producer.geometry().data_start();
        let ptr =
            self.producer
                .region()
                .data_ptr(data_start, self.offset + FRAME_HEADER_LEN, self.len);
        // SAFETY: `data_ptr` checked that the span lies inside the region, which stays mapped
        // while the producer (borrowed by this loan) holds it. The span was reserved by
        // `RingProducer::reserve`: it lies at or beyond the write position and below the
        // lossless limit (loans are refused on lossy rings), so no consumer of this ring reads
        // it until the frame is committed and published, and no other frame is written there
        // meanwhile, since the loan holds the ring's only producer mutably. The slice borrows
        // `self` mutably, so there is one at a time.
        unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), self.len) }
    }

    /// Bytes lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether zero bytes were lent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the frame part of the ring (visible at the next publish), with all the lent
    /// bytes as its payload. Hands the producer back, to publish.
    pub fn commit(self) -> &'a mut RingProducer {
        let len = self.len;
        self.commit_len(len)
    }

    /// As [`commit`](Self::commit), with only the first `len` lent bytes as the payload (a
    /// message serialised in place whose size was known only afterwards). A `len` above what
    /// was lent is clamped to it.
    pub fn commit_len(self, len: usize) -> &'a mut RingProducer {
        self.commit_flagged(len, FrameFlags::PLAIN)
    }

    /// As [`commit_len`](Self::commit_len), the frame carrying `flags` in its `len` word
    /// ([`FrameFlags::ENVELOPE`]: the bytes written begin with an envelope).
    pub fn commit_flagged(self, len: usize, flags: FrameFlags) -> &'a mut RingProducer {
        let len = len.min(self.len);
        self.producer.finish_frame(self.offset, len, flags);
        self.producer
    }
}
