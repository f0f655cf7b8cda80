//! Finding one frame at a position, copying its bytes out, and moving past it: everything read
//! from the ring is checked here, so a scribbled ring yields [`ReadError::Corrupt`], never a
//! read out of bounds.

use crate::shm::error::ReadError;
use crate::shm::layout::{
    frame_size, max_payload, FRAME_ALIGN, FRAME_FLAGS_MASK, FRAME_HEADER_LEN, FRAME_PADDING,
    FRAME_SEQ_SHIFT,
};
use crate::shm::sync::Ordering;
use crate::shm::FrameFlags;

use super::park::wake_parked_producer;
use super::{Located, RingConsumer};

impl RingConsumer {
    /// Loads the published `write_pos` and checks that it is frame-aligned.
    pub(super) fn published_write_pos(&self) -> Result<u64, ReadError> {
        // SYNC POINT: Acquire pairs with the Release store in `RingProducer::publish`: the
        // bytes of every frame below `write_pos` are visible before we read them.
        let write_pos = self
            .region
            .header()
            .producer
            .write_pos
            .load(Ordering::Acquire);
        if write_pos % FRAME_ALIGN as u64 != 0 {
            return Err(ReadError::Corrupt("write position not frame-aligned"));
        }
        Ok(write_pos)
    }

    /// Loads the published `write_pos` and checks it against this consumer's position.
    pub(super) fn load_write_pos(&self) -> Result<u64, ReadError> {
        let write_pos = self.published_write_pos()?;
        if write_pos.wrapping_sub(self.pos) > self.geometry.capacity {
            return Err(ReadError::Corrupt(
                "write position behind or a capacity ahead",
            ));
        }
        Ok(write_pos)
    }

    /// Finds the frame at `pos` (skipping a padding frame), checking everything read from the
    /// ring. On entry `write_pos - pos` (wrapping) is at most a capacity and `pos` is 8-aligned.
    pub(super) fn locate(
        &self,
        write_pos: u64,
        mut pos: u64,
    ) -> Result<Option<Located>, ReadError> {
        let capacity = self.geometry.capacity_usize();
        // At most two rounds: a padding frame moves to offset 0, where padding is rejected.
        for _ in 0..2 {
            let available = write_pos.wrapping_sub(pos);
            if available == 0 {
                return Ok(None);
            }
            // `write_pos` and `pos` are both 8-aligned, so a non-zero `available` covers at
            // least a whole frame header.
            let offset = self.geometry.offset_of(pos);
            let tail = capacity - offset;
            let mut header = [0u8; FRAME_HEADER_LEN];
            self.read_bytes(self.geometry.data_start(), offset, &mut header);
            let [l0, l1, l2, l3, f0, f1, f2, f3] = header;
            let len_word = u32::from_ne_bytes([l0, l1, l2, l3]);
            let tag = u32::from_ne_bytes([f0, f1, f2, f3]);
            // A data frame's `len` word carries its flags above the length; a padding frame's
            // is a length only. The flags are claims of the writer's, checked by whoever
            // acts on them (a reference is looked up, an envelope parsed).
            let flag_bits = if tag & FRAME_PADDING == 0 {
                FRAME_FLAGS_MASK
            } else {
                0
            };
            let flags = FrameFlags::from_len_word(len_word & flag_bits);
            let len = (len_word & !flag_bits) as usize;
            if tag & FRAME_PADDING != 0 {
                if offset == 0 {
                    return Err(ReadError::Corrupt("padding frame at the start of the ring"));
                }
                if len != tail - FRAME_HEADER_LEN {
                    return Err(ReadError::Corrupt(
                        "padding frame does not reach the ring's end",
                    ));
                }
                if tail as u64 > available {
                    return Err(ReadError::Corrupt(
                        "padding frame beyond the write position",
                    ));
                }
                pos = pos.wrapping_add(tail as u64);
                continue;
            }
            if len > max_payload(self.geometry.capacity) {
                return Err(ReadError::Corrupt("frame longer than the ring allows"));
            }
            let size = frame_size(len);
            if size > tail {
                return Err(ReadError::Corrupt("frame crosses the end of the ring"));
            }
            if size as u64 > available {
                return Err(ReadError::Corrupt("frame beyond the write position"));
            }
            return Ok(Some(Located {
                offset: offset + FRAME_HEADER_LEN,
                len,
                next: pos.wrapping_add(size as u64),
                seq: u64::from(tag >> FRAME_SEQ_SHIFT),
                flags,
            }));
        }
        Err(ReadError::Corrupt("padding frame after padding frame"))
    }

    /// Reads frame bytes: with atomic words in a lossy ring (the producer may be overwriting
    /// them; the copy is validated afterwards), with a plain copy in a lossless one.
    #[inline]
    pub(super) fn read_bytes(&self, data_start: usize, offset: usize, dst: &mut [u8]) {
        if self.geometry.lossy {
            self.region.read_data_racy(data_start, offset, dst);
        } else {
            self.region.read_data(data_start, offset, dst);
        }
    }

    /// Moves to `pos` and tells the producer.
    pub(super) fn advance(&mut self, pos: u64) {
        self.pos = pos;
        // SYNC POINT: Release pairs with the producer's Acquire load of `read_pos` in its scan:
        // our copies out of the frames below `pos` happen-before it overwrites them.
        self.slot().read_pos.store(pos, Ordering::Release);
        wake_parked_producer(&self.region, self.light_barrier);
    }

    /// Stores our position to the slot's `read_pos` (lossy mode: for observers only).
    pub(super) fn publish_position(&self) {
        // SYNC POINT: Release, as in `advance`; the lossy producer does not read it.
        self.slot().read_pos.store(self.pos, Ordering::Release);
    }
}
