//! Reading a lossy ring: the producer may overwrite frames this consumer has not read; a copy
//! is validated after the fact (seqlock-style, against `reserve_pos`), and a lapped consumer
//! resumes at the oldest intact frame.

use crate::shm::error::ReadError;
use crate::shm::layout::FRAME_ALIGN;
use crate::shm::sync::{fence, Ordering};
use crate::shm::FrameFlags;

use super::RingConsumer;

/// Lossy mode: how many times one read resumes at the oldest intact frame and is lapped again
/// while copying it before it gives up for this call (returning "nothing yet"). Each retry
/// means the producer wrote over most of a ring meanwhile; the position has moved on, so the
/// next call starts from a newer frame.
const LAP_RETRIES: usize = 4;

impl RingConsumer {
    /// Lossy mode: reads the next intact frame into `out`, or finds the lap. Moves `self.pos`
    /// but does not store `read_pos` (the caller does, once).
    ///
    /// A lapped consumer resumes at the oldest intact frame (`oldest_pos`) and reads it in the
    /// same call: it returns the `Lagged` (the frame's sequence number tells how many were
    /// lost), and the next call returns the frame. Lapped again while it copies, it resumes
    /// again, up to [`LAP_RETRIES`] times; then it returns `Ok(None)` (its position has moved
    /// on, and the next call goes on from there).
    pub(super) fn recv_lossy(
        &mut self,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameFlags>, ReadError> {
        if let Some(skipped) = self.pending_lag.take() {
            return Err(ReadError::Lagged { skipped });
        }
        for _ in 0..=LAP_RETRIES {
            let write_pos = self.published_write_pos()?;
            if write_pos < self.pos {
                return Err(ReadError::Corrupt("write position behind"));
            }
            if write_pos - self.pos > self.geometry.capacity {
                // Lapped before we even look: the frame at `pos` is gone.
                if self.resume()? {
                    continue;
                }
                return Ok(None);
            }
            let frame = match self.locate(write_pos, self.pos) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    // A padding frame with nothing after it (only a hostile producer
                    // publishes one in a lossy ring): step over it, as a lossless consumer
                    // does (`step_over_trailing_padding`). `write_pos` is the producer's own
                    // frame boundary; a lap since is found by the next read.
                    self.pos = write_pos;
                    return Ok(None);
                }
                Err(error) => {
                    // A header torn by an overwrite looks corrupt; a lap explains it.
                    if self.lapped(self.pos)? {
                        if self.resume()? {
                            continue;
                        }
                        return Ok(None);
                    }
                    return Err(error);
                }
            };
            out.clear();
            out.resize(frame.len, 0);
            self.read_bytes(self.geometry.data_start(), frame.offset, out);
            if self.lapped(self.pos)? {
                // The producer may have overwritten bytes while we copied: discard the copy.
                out.clear();
                if self.resume()? {
                    continue;
                }
                return Ok(None);
            }
            if self.lost_unknown {
                self.lost_unknown = false;
                self.expected = Some(frame.seq);
                return Err(ReadError::Lagged { skipped: 1 });
            }
            // Frames overwritten before we read them leave a gap: reported now, and the next
            // call reads this frame again (checking it again).
            self.check_gap(frame.seq)?;
            self.pos = frame.next;
            return Ok(Some(frame.flags));
        }
        Ok(None)
    }

    /// Lossy mode: whether the producer may have overwritten bytes at or after `pos` since we
    /// loaded `write_pos` (the reader half of a seqlock: call it after copying).
    pub(super) fn lapped(&self, pos: u64) -> Result<bool, ReadError> {
        // SYNC POINT: Acquire fence pairs with the Release fence the lossy producer issues after
        // storing `reserve_pos` and before writing over old bytes (`RingProducer::reserve`).
        // If any byte we copied above was written after that fence, the load below sees that
        // `reserve_pos` or a later one. Without the fence the load could be satisfied before
        // the copy, and a torn copy would pass.
        fence(Ordering::Acquire);
        // SYNC POINT: Acquire (ordered after our copies by the fence above) pairs with the
        // producer's Release store of `reserve_pos`: the `oldest_pos` it stored with this
        // reservation is visible to the load in `resume`, so we resume at a frame this
        // reservation leaves whole.
        let reserve = self
            .region
            .header()
            .producer
            .reserve_pos
            .load(Ordering::Acquire);
        if reserve < pos {
            return Err(ReadError::Corrupt(
                "reserve position behind a read position",
            ));
        }
        // A byte at position q is overwritten only once the producer has announced a
        // reservation beyond q + capacity.
        Ok(reserve - pos > self.geometry.capacity)
    }

    /// Lossy mode, once the frame at our position is known to be overwritten: moves to the
    /// oldest intact frame, `oldest_pos`, if it is published; `true` if so (read it next).
    /// Otherwise (every published frame is overwritten, by frames not yet published) it moves
    /// to `write_pos`, a frame boundary, and returns `false`: the lag is reported with the
    /// next frame. The lost messages are counted from the sequence number of the frame read
    /// next, so the count is exact either way.
    ///
    /// # Errors
    ///
    /// [`ReadError::Corrupt`] if `oldest_pos` is misaligned or not beyond our position (the
    /// producer stores it before it overwrites our frame, and we loaded it after seeing that
    /// overwrite announced, through `write_pos` or `reserve_pos`, both with Acquire).
    pub(super) fn resume(&mut self) -> Result<bool, ReadError> {
        // SYNC POINT: Relaxed; ordered after the Acquire load (of `write_pos` or `reserve_pos`)
        // that showed the lap, which pairs with the producer's Release store of that word,
        // made after it stored the `oldest_pos` of that reservation: so we see that value or
        // a later one, which lies beyond our position.
        let oldest = self
            .region
            .header()
            .producer
            .oldest_pos
            .load(Ordering::Relaxed);
        if oldest % FRAME_ALIGN as u64 != 0 {
            return Err(ReadError::Corrupt("oldest position not frame-aligned"));
        }
        if oldest <= self.pos {
            return Err(ReadError::Corrupt(
                "oldest position not beyond a lapped read position",
            ));
        }
        if self.expected.is_none() {
            self.lost_unknown = true;
        }
        // A fresh load: the frame at `oldest` is readable once published.
        let write_pos = self.published_write_pos()?;
        if oldest <= write_pos {
            self.pos = oldest;
            Ok(true)
        } else {
            self.pos = self.pos.max(write_pos);
            Ok(false)
        }
    }
}
