//! Reading frames in order: one at a time or in batches, data and reference frames told
//! apart; the lossless paths here, the lossy ones in `lossy.rs`.

use crate::shm::error::ReadError;
use crate::shm::FrameFlags;

use super::RingConsumer;

impl RingConsumer {
    /// Copies the next frame's payload into `out` (replacing its contents).
    ///
    /// Returns `Ok(false)` when no frame is published beyond this consumer's position.
    ///
    /// # Errors
    ///
    /// [`ReadError::Corrupt`] if the ring's shared memory is inconsistent; the position stays
    /// where it was. [`ReadError::Lagged`] (lossy rings) once after the producer overwrote
    /// frames this consumer had not read; the next call returns the oldest intact frame. On a
    /// ring that drops when full ([`reports_drops`](Self::reports_drops)), before the frame
    /// after a gap, or instead of "nothing" when drops were announced after the last frame
    /// read. After an error the contents of `out` are unspecified.
    pub fn try_recv_into(&mut self, out: &mut Vec<u8>) -> Result<bool, ReadError> {
        Ok(self.try_recv_marked(out)?.is_some())
    }

    /// [`try_recv_into`](Self::try_recv_into) that also returns the frame's [`FrameFlags`]
    /// (written by [`RingProducer::try_push_marked`](crate::shm::RingProducer::try_push_marked)):
    /// `Some(flags)` with [`is_reference`](FrameFlags::is_reference) for a reference (`out`
    /// holds the reference bytes) and [`is_envelope`](FrameFlags::is_envelope) for a message
    /// that begins with an envelope; `None` when nothing is published. The flags are the
    /// writer's claims, unchecked: parse what they announce before trusting it. (The unmarked
    /// calls deliver every frame's bytes as if they were a plain message: use these on rings
    /// that may carry references or envelopes.)
    ///
    /// # Errors
    ///
    /// As for [`try_recv_into`](Self::try_recv_into).
    pub fn try_recv_marked(&mut self, out: &mut Vec<u8>) -> Result<Option<FrameFlags>, ReadError> {
        if self.geometry.lossy {
            let received = self.recv_lossy(out);
            self.publish_position();
            return received;
        }
        let write_pos = self.load_write_pos()?;
        let Some(frame) = self.locate(write_pos, self.pos)? else {
            self.step_over_trailing_padding(write_pos);
            if self.drops {
                // Nothing to read: the drops announced since the last frame, if any.
                self.announced_gap()?;
            }
            return Ok(None);
        };
        if self.drops {
            self.check_gap(frame.seq)?;
        }
        out.clear();
        out.resize(frame.len, 0);
        self.read_bytes(self.geometry.data_start(), frame.offset, out);
        self.advance(frame.next);
        Ok(Some(frame.flags))
    }

    /// Hands up to `max` published frames to `each`, in order, and tells the producer once.
    ///
    /// Returns how many frames were handed over.
    ///
    /// # Errors
    ///
    /// [`ReadError::Corrupt`] if the ring's shared memory is inconsistent. Frames handed to
    /// `each` before the corruption was found stay consumed. [`ReadError::Lagged`] as for
    /// [`try_recv_into`](Self::try_recv_into); a batch that finds the lag after delivering
    /// frames returns their count, and the next read reports the lag.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, ReadError> {
        self.try_recv_batch_marked(max, |frame, _| each(frame))
    }

    /// [`try_recv_batch`](Self::try_recv_batch) that hands `each` every frame's
    /// [`FrameFlags`] (see [`try_recv_marked`](Self::try_recv_marked)).
    ///
    /// # Errors
    ///
    /// As for [`try_recv_batch`](Self::try_recv_batch).
    pub fn try_recv_batch_marked(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8], FrameFlags),
    ) -> Result<usize, ReadError> {
        if self.geometry.lossy {
            let mut scratch = std::mem::take(&mut self.scratch);
            let mut count = 0;
            let mut result = Ok(());
            while count < max {
                match self.recv_lossy(&mut scratch) {
                    Ok(Some(flags)) => {
                        each(&scratch, flags);
                        count += 1;
                    }
                    Ok(None) => break,
                    Err(ReadError::Lagged { skipped }) if count > 0 => {
                        self.pending_lag = Some(skipped);
                        break;
                    }
                    Err(error) => {
                        result = Err(error);
                        break;
                    }
                }
            }
            self.scratch = scratch;
            self.publish_position();
            return result.map(|()| count);
        }
        if self.drops {
            self.recv_batch_lossless::<true>(max, each)
        } else {
            self.recv_batch_lossless::<false>(max, each)
        }
    }

    /// The lossless batch. `DROPS` ([`reports_drops`](Self::reports_drops)) checks each
    /// frame's number for a gap, which ends the batch before the frame after it: reported by
    /// this call if it delivered nothing, else found again by the next one. A constant, so
    /// that the common `block` instance compiles to the loop without the check (W1 is
    /// sensitive to the read loop's code). A `DROPS` batch that finds nothing to read at all
    /// reports the drops announced since the last frame ([`announced_gap`](Self::announced_gap));
    /// one that delivered frames never does (the next call does).
    pub(super) fn recv_batch_lossless<const DROPS: bool>(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8], FrameFlags),
    ) -> Result<usize, ReadError> {
        let write_pos = self.load_write_pos()?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut pos = self.pos;
        let mut count = 0;
        let mut result = Ok(());
        let mut empty = false;
        while count < max {
            match self.locate(write_pos, pos) {
                Ok(Some(frame)) => {
                    if DROPS {
                        if count > 0 && self.gap(frame.seq).is_some() {
                            break;
                        }
                        if let Err(lag) = self.check_gap(frame.seq) {
                            result = Err(lag);
                            break;
                        }
                    }
                    scratch.clear();
                    scratch.resize(frame.len, 0);
                    self.read_bytes(self.geometry.data_start(), frame.offset, &mut scratch);
                    each(&scratch, frame.flags);
                    pos = frame.next;
                    count += 1;
                }
                Ok(None) => {
                    empty = true;
                    break;
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        self.scratch = scratch;
        if count > 0 {
            self.advance(pos);
        } else if empty {
            self.step_over_trailing_padding(write_pos);
            if DROPS {
                // Nothing to read (the empty path, about to spin or sleep anyway): the drops
                // announced since the last frame, if any.
                result = self.announced_gap();
            }
        }
        result.map(|()| count)
    }

    /// On the empty path of a lossless read (`locate` found no frame below `write_pos`, the
    /// value it was given): if `write_pos` is not our position, `locate` stepped over a valid
    /// padding frame ending exactly at `write_pos` with no frame after it yet, and we consume
    /// it now. A loan taken across the ring's end and dropped without a commit leaves such a
    /// frame, which the producer's next publish (or drop announcement) makes visible; so can
    /// a hostile producer. Left in place, it kept `has_data` (and the spin) saying "a frame"
    /// while every read found none: `recv_blocking`, `wait_any` and the loops over them spun
    /// at full speed until the next frame came, and a drop announced at `write_pos`, past the
    /// padding frame, was not about our position and was told only with the next frame.
    /// Stored to `read_pos` like any read (the producer may reuse the padding frame's bytes).
    pub(super) fn step_over_trailing_padding(&mut self, write_pos: u64) {
        if write_pos != self.pos {
            self.advance(write_pos);
        }
    }
}
