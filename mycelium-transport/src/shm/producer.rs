//! [`RingProducer`]: the single writer of a broadcast ring.

use super::error::PushError;
use super::layout::{
    frame_size, max_payload, FRAME_HEADER_LEN, FRAME_PADDING, FRAME_SEQ_MODULUS, FRAME_SEQ_SHIFT,
    PARKED_RUNNING, SLOT_ACTIVE,
};
use super::region::RingRegion;
use super::ring::RingGeometry;
use super::sync::{fence, Arc, Ordering};
use super::wake::WakeTable;

/// The one writer of a ring, obtained only from [`init`](super::init) or
/// [`RingRegion::new_in_memory`].
///
/// Frames are written by [`try_push`](Self::try_push) and become visible to consumers only
/// at [`publish`](Self::publish), so a burst costs one Release store.
pub struct RingProducer {
    /// Keeps the memory alive; shared with the consumers.
    region: Arc<RingRegion>,
    /// Geometry validated at init.
    geometry: RingGeometry,
    /// Position the next frame is written at (`>= published`).
    local: u64,
    /// Last value stored to `write_pos`.
    published: u64,
    /// No frame may end beyond this position until the next scan of the consumer slots.
    limit: u64,
    /// Frames pushed since the last publish.
    pending: usize,
    /// `published` as of the last wake scan: positions up to here were covered by one.
    woken: u64,
    /// Data frames pushed so far: the sequence number of the next one.
    seq: u64,
    /// Lossy mode: the last value stored to `reserve_pos`.
    reserved: u64,
}

impl RingProducer {
    /// The producer of a freshly initialised ring (`write_pos` 0).
    pub(crate) fn new(region: Arc<RingRegion>, geometry: RingGeometry) -> Self {
        Self {
            region,
            geometry,
            local: 0,
            published: 0,
            limit: 0,
            pending: 0,
            woken: 0,
            seq: 0,
            reserved: 0,
        }
    }

    /// The region, for [`RingConsumer::join`](super::RingConsumer::join).
    pub fn region(&self) -> &Arc<RingRegion> {
        &self.region
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    /// Largest payload this ring accepts.
    pub fn max_payload(&self) -> usize {
        max_payload(self.geometry.capacity)
    }

    /// Frames pushed but not yet published.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Writes one frame; consumers see it after the next [`publish`](Self::publish).
    ///
    /// When the frame does not fit in the space known to be free, this first publishes the
    /// pending frames (so consumers can read them and make room), then rescans the consumers.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] if the payload exceeds [`max_payload`](Self::max_payload);
    /// [`PushError::Full`] if writing would overrun the slowest active consumer (never in a
    /// lossy ring: there the frame overwrites the oldest bytes, whoever has not read them).
    pub fn try_push(&mut self, payload: &[u8]) -> Result<(), PushError> {
        let max = self.max_payload();
        if payload.len() > max {
            return Err(PushError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let size = frame_size(payload.len());
        let mut offset = self.geometry.offset_of(self.local);
        let tail = self.geometry.capacity_usize() - offset;
        let needed = if size <= tail { size } else { tail + size };
        let end = self.local + needed as u64;
        if self.geometry.lossy {
            if end > self.reserved {
                self.reserved = end;
                // SYNC POINT: Relaxed store, then a Release fence before the frame bytes below
                // (the writer half of a seqlock). It pairs with the Acquire fence a lossy
                // consumer issues after copying a frame and before it re-loads `reserve_pos`
                // (`RingConsumer::lapped`): if its copy saw any byte we write after this fence,
                // its re-load sees this value or a later one, and it discards the copy. Without
                // the fence the byte stores could become visible before the announcement, and
                // a torn copy would pass the check.
                self.region
                    .header()
                    .producer
                    .reserve_pos
                    .store(end, Ordering::Relaxed);
                fence(Ordering::Release);
            }
        } else if end > self.limit {
            self.publish();
            self.limit = self.scan_limit();
            if end > self.limit {
                return Err(PushError::Full);
            }
        }
        if size > tail {
            let padding = u32::try_from(tail - FRAME_HEADER_LEN).unwrap_or(u32::MAX);
            self.write_header(offset, padding, self.tag() | FRAME_PADDING);
            self.local += tail as u64;
            offset = 0;
        }
        // `payload.len()` <= max_payload < capacity / 2 <= 2^39, checked above: fits u32.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.write_header(offset, len, self.tag());
        let data_start = self.geometry.data_start();
        self.write_bytes(data_start, offset + FRAME_HEADER_LEN, payload);
        self.local += size as u64;
        self.pending += 1;
        self.seq += 1;
        Ok(())
    }

    /// Makes every frame pushed so far visible to consumers.
    pub fn publish(&mut self) {
        if self.local != self.published {
            // SYNC POINT: Release pairs with the consumers' Acquire load of `write_pos`: every
            // frame byte written before this store is visible to a consumer that sees it.
            self.region
                .header()
                .producer
                .write_pos
                .store(self.local, Ordering::Release);
            self.published = self.local;
        }
        self.pending = 0;
    }

    /// [`publish`](Self::publish), then wakes every consumer in `wakers` whose slot is parked.
    ///
    /// Returns how many consumers were signalled. When nothing was published since the last
    /// wake scan, or no registered consumer is parked, it makes no syscall. Call it (rather
    /// than `publish`) whenever consumers may park, and also after
    /// [`try_push`](Self::try_push) returns [`PushError::Full`]: `try_push` may have published
    /// pending frames on its own, without waking anyone.
    ///
    /// # Errors
    ///
    /// The first error of an [`Unparker::unpark`](super::Unparker::unpark); the other
    /// consumers are still signalled, and the frames are published regardless.
    pub fn publish_and_wake(&mut self, wakers: &WakeTable) -> std::io::Result<usize> {
        self.publish();
        if self.published == self.woken {
            return Ok(0);
        }
        self.woken = self.published;
        // SYNC POINT: SeqCst fence pairs with the SeqCst fence in `RingConsumer::recv_blocking`
        // (Dekker: store `write_pos`, fence, load `parked` here; store `parked`, fence, load
        // `write_pos` there). In the single total order of the two fences, if ours comes
        // first the consumer's re-check sees our `write_pos` and does not sleep; if its comes
        // first our loads below see `parked`. Without the fences both loads could read the old
        // values (store-load reordering): it sleeps, we skip it, and the wake-up is lost.
        fence(Ordering::SeqCst);
        let mut woken = 0;
        let mut result = Ok(());
        for (index, unparker) in wakers.iter() {
            let Some(slot) = self.region.slot(index) else {
                continue;
            };
            // SYNC POINT: Relaxed; ordered after our `write_pos` store by the fence above. The
            // plain load first keeps a running consumer's line clean (no write per publish).
            if slot.parked.load(Ordering::Relaxed) == PARKED_RUNNING {
                continue;
            }
            // SYNC POINT: Relaxed swap; clears the flag so this consumer is signalled once per
            // park, however many publishes follow. Any non-zero value counts as parked.
            if slot.parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
                woken += 1;
                if let Err(error) = unparker.unpark() {
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
            }
        }
        result.map(|()| woken)
    }

    /// [`try_push`](Self::try_push) then [`publish`](Self::publish).
    ///
    /// # Errors
    ///
    /// As for [`try_push`](Self::try_push); nothing is published on error.
    pub fn push_and_publish(&mut self, payload: &[u8]) -> Result<(), PushError> {
        self.try_push(payload)?;
        self.publish();
        Ok(())
    }

    /// The `tag` of the next data frame (and of a padding frame before it), without the
    /// padding bit: its sequence number modulo 2^31.
    fn tag(&self) -> u32 {
        // The modulus is 2^31, so the shifted value fits a u32.
        ((self.seq % FRAME_SEQ_MODULUS) as u32) << FRAME_SEQ_SHIFT
    }

    /// Writes a frame header (`len`, `tag`) at data offset `offset`.
    fn write_header(&self, offset: usize, len: u32, tag: u32) {
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[..4].copy_from_slice(&len.to_ne_bytes());
        header[4..].copy_from_slice(&tag.to_ne_bytes());
        self.write_bytes(self.geometry.data_start(), offset, &header);
    }

    /// Writes frame bytes: with atomic words in a lossy ring, where consumers may be copying
    /// the bytes being overwritten; with a plain copy in a lossless one, where they cannot be.
    fn write_bytes(&self, data_start: usize, offset: usize, bytes: &[u8]) {
        if self.geometry.lossy {
            self.region.write_data_racy(data_start, offset, bytes);
        } else {
            self.region.write_data(data_start, offset, bytes);
        }
    }

    /// The position no write may pass: one capacity beyond the slowest active consumer, and
    /// never more than one capacity beyond what is published (a consumer that joins now
    /// starts at the published position).
    fn scan_limit(&self) -> u64 {
        // SYNC POINT: SeqCst fence pairs with the SeqCst fence in `RingConsumer::join`: either
        // that consumer's load of `write_pos` sees our last publish, or the `state` loads below
        // see its claim. Without it a joining consumer could start below bytes we overwrite.
        fence(Ordering::SeqCst);
        let mut slowest = self.published;
        for index in 0..self.geometry.max_consumers as usize {
            let Some(slot) = self.region.slot(index) else {
                break;
            };
            // SYNC POINT: Acquire pairs with the Release in `RingConsumer::drop` (state) and the
            // CAS in `join`: reads by a consumer that left happen-before we reuse its bytes.
            if slot.state.load(Ordering::Acquire) == SLOT_ACTIVE {
                // SYNC POINT: Acquire pairs with the consumer's Release store of `read_pos`: its
                // copies out of the frames below `read_pos` happen-before we overwrite them.
                let read_pos = slot.read_pos.load(Ordering::Acquire);
                slowest = slowest.min(read_pos);
            }
        }
        slowest.saturating_add(self.geometry.capacity)
    }
}
