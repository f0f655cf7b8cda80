//! [`RingProducer`]: the single writer of a broadcast ring.

use std::time::{Duration, Instant};

use super::barrier;
use super::consumer::decrement_parked_consumers;
use super::error::PushError;
use super::error::RingError;
use super::frame_flags::FrameFlags;
use super::layout::{
    frame_size, max_payload, FRAME_FLAGS_MASK, FRAME_HEADER_LEN, FRAME_PADDING, FRAME_SEQ_MODULUS,
    FRAME_SEQ_SHIFT, FULL_WAIT, PARKED, PARKED_RUNNING, SLOT_ACTIVE,
};
#[cfg(not(loom))]
use super::loan::FrameLoan;
use super::region::RingRegion;
use super::ring::attach;
use super::ring::RingGeometry;
use super::sync::{fence, Arc, Ordering};
use super::wake;

/// The one writer of a ring, obtained only by creating the ring
/// ([`Segment::create_ring`](super::Segment::create_ring), [`RingRegion::new_in_memory`]) or by
/// [`adopt`](Self::adopt)ing one its creator handed over.
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
    /// `u64::MAX` (never a position) after a drop announcement that no scan has covered yet
    /// ([`skip_dropped`](Self::skip_dropped)).
    woken: u64,
    /// Data frames pushed so far: the sequence number of the next one.
    seq: u64,
    /// Lossy mode: the last value stored to `reserve_pos`.
    reserved: u64,
    /// Lossy mode: the start of the oldest frame not yet overwritten, as last stored to
    /// `oldest_pos` (`<= local`).
    oldest: u64,
    /// The ring's `full_policy` as read at adopt: [`try_push_or_drop`](Self::try_push_or_drop)
    /// is what its owner should call.
    drop_when_full: bool,
    /// Frames dropped by `try_push_or_drop`; the producer's own count, stored to the header's
    /// `dropped` (never read back from it, so a scribbled counter cannot skew it).
    dropped: u64,
    /// This process is registered for the consumers' heavy barrier (`barrier.rs`): a publish
    /// needs no fence of its own.
    light_barrier: bool,
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
            oldest: 0,
            drop_when_full: false,
            dropped: 0,
            light_barrier: barrier::register_light_barrier(),
        }
    }

    /// Becomes the producer of a fresh ring someone else initialised (the broker creates a
    /// publisher's ring and hands over its segment): checks the header as consumers do and
    /// that nothing was ever written to it.
    ///
    /// The caller must be the only producer of this ring: the ring has one writer by
    /// protocol, and two would corrupt each other's frames (never memory safety: every access
    /// is bounds-checked and the bytes are shared memory either way).
    ///
    /// # Errors
    ///
    /// Those of [`attach`]; [`RingError::BadGeometry`] if the ring was written to already
    /// (`write_pos`, `reserve_pos`, `oldest_pos`, `next_seq` or `next_seq_at` not 0).
    pub fn adopt(region: &Arc<RingRegion>) -> Result<Self, RingError> {
        let geometry = attach(region)?;
        let producer = &region.header().producer;
        // SYNC POINT: Relaxed; a fresh ring's positions were written by its creator before
        // it handed the segment over (a syscall later), and a non-zero value only refuses.
        let written = producer.write_pos.load(Ordering::Relaxed) != 0
            || producer.reserve_pos.load(Ordering::Relaxed) != 0
            || producer.oldest_pos.load(Ordering::Relaxed) != 0
            || producer.next_seq.load(Ordering::Relaxed) != 0
            || producer.next_seq_at.load(Ordering::Relaxed) != 0;
        if written {
            return Err(RingError::BadGeometry(
                "the ring was written to already; a producer adopts only a fresh ring",
            ));
        }
        // SYNC POINT: Relaxed; stored by the creator before it handed the segment over.
        let policy = region.header().full_policy.load(Ordering::Relaxed);
        let mut producer = Self::new(Arc::clone(region), geometry);
        producer.drop_when_full = policy != FULL_WAIT && !geometry.lossy;
        Ok(producer)
    }

    /// Whether the ring's creator asked that a frame that does not fit be dropped rather than
    /// waited for ([`set_drop_when_full`](super::set_drop_when_full), read at
    /// [`adopt`](Self::adopt)): then publish with [`try_push_or_drop`](Self::try_push_or_drop).
    pub fn drops_when_full(&self) -> bool {
        self.drop_when_full
    }

    /// Frames [`try_push_or_drop`](Self::try_push_or_drop) dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// [`try_push`](Self::try_push), except that a frame that does not fit now is dropped
    /// (`Ok(false)`) and counted, in [`dropped`](Self::dropped) and in the header's `dropped`
    /// word for observers ([`producer_dropped`](super::producer_dropped)). Nothing waits: the
    /// `drop_newest` policy. The ring is shared, so every consumer misses a dropped frame.
    /// As after a `Full`, call [`publish_and_wake`](Self::publish_and_wake) afterwards.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] as for `try_push` (not counted as dropped).
    pub fn try_push_or_drop(&mut self, payload: &[u8]) -> Result<bool, PushError> {
        match self.try_push(payload) {
            Ok(()) => Ok(true),
            Err(PushError::Full) => {
                self.skip_dropped(1);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Counts `count` messages dropped without being written ([`try_push_or_drop`](Self::try_push_or_drop)
    /// counts the one it refuses; the broker's relay ring, what a socket publisher sent while
    /// it was full under `drop_newest`) and stores the count for observers. Each takes a
    /// sequence number, so consumers that [`report drops`](super::RingConsumer::reports_drops)
    /// are told of them: by the gap before the next frame, or, once they have read every
    /// frame before the drops, at once, from the header's drop announcement (`next_seq`,
    /// `next_seq_at`), which this stores. Publishes the pending frames first (the
    /// announcement speaks of the published position). As after a `Full`, call
    /// [`publish_and_wake`](Self::publish_and_wake) afterwards: it wakes the consumers that
    /// sleep, so that they hear of the drop.
    ///
    /// The drop path only: nothing here runs when a frame is pushed.
    pub fn skip_dropped(&mut self, count: u64) {
        // Every frame numbered below the announced number must be below the announced
        // position: publish what was pushed before it (`try_push` published already when it
        // found the ring full; a caller that skips numbers on its own may have frames pending).
        self.publish();
        self.seq = self.seq.wrapping_add(count);
        self.dropped = self.dropped.saturating_add(count);
        let line = &self.region.header().producer;
        // SYNC POINT: Relaxed; a counter for observers, ordering nothing. The producer's own
        // line, so the store costs no cache-line transfer on the publishing path.
        line.dropped.store(self.dropped, Ordering::Relaxed);
        // SYNC POINT: Release pairs with a consumer's Acquire load of `next_seq` in
        // `RingConsumer::announced_gap`: whoever sees this number then loads a `write_pos` at
        // least the one published above (`self.published`), the position announced with it.
        // So a consumer that took a later number with an earlier position (the next_seq_at of
        // an older drop, then this next_seq) finds `write_pos` beyond that position, and
        // reports nothing: the frames between were written and are still there to read.
        line.next_seq.store(self.seq, Ordering::Release);
        // SYNC POINT: Release pairs with the consumer's Acquire load of `next_seq_at`, which
        // it makes first: a consumer that sees this position then loads this `next_seq` or a
        // later one, never the number of an older drop (which would count frames it has read
        // as lost).
        line.next_seq_at.store(self.published, Ordering::Release);
        // Nothing was published, so `publish_and_wake` would skip its wake scan: a consumer
        // asleep on an empty ring (another consumer is the one that keeps it full) would
        // hear of the drop only with the next publish, which may never come. No position
        // equals u64::MAX (they are multiples of 8), so the next call scans, once.
        self.woken = u64::MAX;
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

    /// Where the next frame will be written: the end of the last frame pushed (published or
    /// not). A consumer whose `read_pos` has reached a frame's end has read it, which lets a
    /// producer that addresses frames (a queue) count what each consumer has still to read.
    pub fn position(&self) -> u64 {
        self.local
    }

    /// Frames pushed but not yet published.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The header's count of consumers parked (or about to park) on this ring, as read from
    /// shared memory: a hint for diagnostics and tests, which any peer may have scribbled.
    pub fn parked_consumers(&self) -> u32 {
        // SYNC POINT: Relaxed; a diagnostic snapshot, nothing is ordered by it.
        self.region
            .header()
            .parked_consumers
            .load(Ordering::Relaxed)
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
        self.try_push_marked(payload, FrameFlags::PLAIN)
    }

    /// [`try_push`](Self::try_push) of a frame carrying `flags` in its `len` word
    /// ([`FrameFlags`]): [`FrameFlags::REFERENCE`] for a **reference frame**, whose `payload`
    /// is the reference (a few bytes naming a payload segment that holds the message, see
    /// `docs/shm-layout.md`); [`FrameFlags::ENVELOPE`] for a message that begins with an
    /// envelope; both for a reference to a segment whose message begins with one. Consumers
    /// read the flags with [`RingConsumer::try_recv_marked`](super::RingConsumer::try_recv_marked)
    /// and [`try_recv_batch_marked`](super::RingConsumer::try_recv_batch_marked). The frame
    /// takes a sequence number like any data frame; `FrameFlags::PLAIN` is `try_push`.
    ///
    /// # Errors
    ///
    /// As for [`try_push`](Self::try_push).
    #[inline]
    pub fn try_push_marked(&mut self, payload: &[u8], flags: FrameFlags) -> Result<(), PushError> {
        let offset = self.reserve(payload.len())?;
        let data_start = self.geometry.data_start();
        self.write_bytes(data_start, offset + FRAME_HEADER_LEN, payload);
        self.finish_frame(offset, payload.len(), flags);
        Ok(())
    }

    /// [`try_push_marked`](Self::try_push_marked), waiting for room as
    /// [`push_blocking`](Self::push_blocking) does.
    ///
    /// # Errors
    ///
    /// As for [`push_blocking`](Self::push_blocking).
    pub fn push_marked_blocking(
        &mut self,
        payload: &[u8],
        flags: FrameFlags,
        spin: Duration,
        timeout: Option<Duration>,
    ) -> Result<(), PushError> {
        let deadline = timeout.map(|timeout| Instant::now().checked_add(timeout));
        loop {
            match self.try_push_marked(payload, flags) {
                Err(PushError::Full) => self.wait_for_room(payload.len(), spin, deadline)?,
                result => return result,
            }
        }
    }

    #[cfg(not(loom))]
    /// Lends the payload bytes of the next frame, `len` bytes, to be written in place (zero
    /// copy); the frame exists once [`FrameLoan::commit`] writes its header. Dropping the loan
    /// without committing writes nothing (the space is reused by the next frame).
    ///
    /// # Errors
    ///
    /// As for [`try_push`](Self::try_push), and [`PushError::LossyLoan`] on a lossy ring.
    pub fn try_loan(&mut self, len: usize) -> Result<FrameLoan<'_>, PushError> {
        if self.geometry.lossy {
            return Err(PushError::LossyLoan);
        }
        let offset = self.reserve(len)?;
        Ok(FrameLoan::new(self, offset, len))
    }

    #[cfg(not(loom))]
    /// [`try_loan`](Self::try_loan), waiting for room as [`push_blocking`](Self::push_blocking)
    /// does.
    ///
    /// # Errors
    ///
    /// As for [`try_loan`](Self::try_loan); [`PushError::Full`] only once `timeout` passed.
    pub fn loan_blocking(
        &mut self,
        len: usize,
        spin: Duration,
        timeout: Option<Duration>,
    ) -> Result<FrameLoan<'_>, PushError> {
        if self.geometry.lossy {
            return Err(PushError::LossyLoan);
        }
        let deadline = timeout.map(|timeout| Instant::now().checked_add(timeout));
        let offset = loop {
            match self.reserve(len) {
                Ok(offset) => break offset,
                Err(PushError::Full) => self.wait_for_room(len, spin, deadline)?,
                Err(error) => return Err(error),
            }
        };
        Ok(FrameLoan::new(self, offset, len))
    }

    /// Finds room for a frame of `len` payload bytes at the write position (writing a padding
    /// frame first if it would cross the end of the ring) and returns the data offset of its
    /// header. Nothing of the frame itself is written yet.
    fn reserve(&mut self, len: usize) -> Result<usize, PushError> {
        let max = self.max_payload();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let size = frame_size(len);
        let offset = self.geometry.offset_of(self.local);
        let tail = self.geometry.capacity_usize() - offset;
        let end = self.frame_end(len);
        if self.geometry.lossy {
            if end > self.reserved {
                self.reserved = end;
                let moved = self.advance_oldest(end);
                let line = &self.region.header().producer;
                if moved {
                    // SYNC POINT: Relaxed; published by the Release store of `reserve_pos`
                    // just below (and by every later Release store of `write_pos`).
                    line.oldest_pos.store(self.oldest, Ordering::Relaxed);
                }
                // SYNC POINT: Release store pairs with the Acquire load of `reserve_pos` in
                // `RingConsumer::lapped`: a consumer that sees this reservation also sees the
                // `oldest_pos` stored above (or a later one), so the frame it resumes at is
                // not one this reservation overwrites. Without it the consumer could load an
                // older `oldest_pos`, resume inside the bytes being overwritten, be lapped
                // again, and find `oldest_pos` behind its position (`Corrupt`).
                line.reserve_pos.store(end, Ordering::Release);
                // SYNC POINT: Release fence before the frame bytes below (the writer half of a
                // seqlock). It pairs with the Acquire fence a lossy consumer issues after
                // copying a frame and before it re-loads `reserve_pos` (`RingConsumer::lapped`):
                // if its copy saw any byte we write after this fence, its re-load sees this
                // value or a later one, and it discards the copy. Without the fence the byte
                // stores could become visible before the announcement, and a torn copy would
                // pass the check. (The Release store above orders only what precedes it.)
                fence(Ordering::Release);
            }
        } else if !self.room_until(end) {
            return Err(PushError::Full);
        }
        if size > tail {
            let padding = u32::try_from(tail - FRAME_HEADER_LEN).unwrap_or(u32::MAX);
            self.write_header(offset, padding, self.tag() | FRAME_PADDING);
            self.local += tail as u64;
            return Ok(0);
        }
        Ok(offset)
    }

    /// Lossy mode: moves `oldest` past every frame that a reservation ending at `end`
    /// overwrites (any frame starting below `end - capacity`), walking the producer's own
    /// earlier frames by the sizes in their headers; `true` if it moved.
    ///
    /// The headers lie in shared memory, where a peer may have scribbled: each is checked as a
    /// consumer checks it (and must end at or below `local`). On anything inconsistent the
    /// walk stops at `local`, the start of the frame about to be written, which no reservation
    /// so far has touched. Each step moves at least 8 bytes and never past `local`, so the
    /// walk is bounded (by the frames it overwrites, a ring's worth at most).
    fn advance_oldest(&mut self, end: u64) -> bool {
        // `end - local` < capacity (a frame takes at most half the ring, and a padding frame
        // is written only before a frame bigger than it), so `local >= floor`.
        let floor = end.saturating_sub(self.geometry.capacity);
        if self.oldest >= floor {
            return false;
        }
        let capacity = self.geometry.capacity_usize();
        let max = self.max_payload();
        let data_start = self.geometry.data_start();
        let mut pos = self.oldest;
        while pos < floor {
            let offset = self.geometry.offset_of(pos);
            let tail = capacity - offset;
            let mut header = [0u8; FRAME_HEADER_LEN];
            self.region.read_data_racy(data_start, offset, &mut header);
            let [l0, l1, l2, l3, t0, t1, t2, t3] = header;
            let len_word = u32::from_ne_bytes([l0, l1, l2, l3]);
            let tag = u32::from_ne_bytes([t0, t1, t2, t3]);
            // A data frame's `len` may carry flags; its size is that of its payload. A padding
            // frame's `len` is a length only.
            let len = if tag & FRAME_PADDING != 0 {
                len_word as usize
            } else {
                (len_word & !FRAME_FLAGS_MASK) as usize
            };
            let size = if tag & FRAME_PADDING != 0 {
                (offset != 0 && len == tail - FRAME_HEADER_LEN).then_some(tail)
            } else {
                (len <= max && frame_size(len) <= tail).then(|| frame_size(len))
            };
            match size {
                Some(size) if pos + size as u64 <= self.local => pos += size as u64,
                _ => {
                    pos = self.local;
                    break;
                }
            }
        }
        self.oldest = pos;
        true
    }

    /// Writes the header of the frame at data offset `offset` with `flags` in its `len` word,
    /// and counts it as pushed.
    #[inline]
    pub(crate) fn finish_frame(&mut self, offset: usize, len: usize, flags: FrameFlags) {
        // `len` <= max_payload < capacity / 2 <= 2^30, checked by `reserve`: fits below the
        // flag bits.
        let len32 = u32::try_from(len).unwrap_or(u32::MAX) & !FRAME_FLAGS_MASK;
        self.write_header(offset, len32 | flags.bits(), self.tag());
        self.local += frame_size(len) as u64;
        self.pending += 1;
        self.seq += 1;
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

    /// [`publish`](Self::publish), then wakes every parked consumer.
    ///
    /// Returns how many consumers were woken. When nothing was published since the last wake
    /// scan, it returns at once (no fence); otherwise one SeqCst fence and one load of the
    /// header's `parked_consumers`, and only when that is non-zero a scan of the active slots
    /// and a `FUTEX_WAKE` per parked one. Call it (rather than `publish`) whenever consumers
    /// may park, and also after [`try_push`](Self::try_push) returns [`PushError::Full`]:
    /// `try_push` may have published pending frames on its own, without waking anyone; and
    /// after a drop ([`try_push_or_drop`](Self::try_push_or_drop) returning `false`,
    /// [`skip_dropped`](Self::skip_dropped)), which publishes nothing new but announces the
    /// drop to consumers that sleep on an empty ring: the call after a drop always scans.
    ///
    /// # Errors
    ///
    /// The first error of a futex wake (an unexpected system-call failure); the other
    /// consumers are still woken, and the frames are published regardless.
    pub fn publish_and_wake(&mut self) -> std::io::Result<usize> {
        self.publish();
        if self.published == self.woken {
            return Ok(0);
        }
        self.woken = self.published;
        // SYNC POINT: SeqCst fence pairs with the SeqCst fence a consumer issues when it parks
        // (`RingConsumer::park_begin`). Dekker: store `write_pos`, fence, load
        // `parked_consumers` and `parked` here; raise `parked_consumers` and `parked`, fence,
        // load `write_pos` there. In the single total order of the two fences, if ours comes
        // first the consumer's re-check sees our `write_pos` and does not sleep; if its comes
        // first our loads below see its counter and its flag. Without the fences both sides
        // could read the old values (store-load reordering): it sleeps, we skip it, and the
        // wake-up is lost. After a drop the store is that of the drop announcement
        // (`next_seq`, `next_seq_at` in `skip_dropped`), and the consumer's re-check
        // (`has_data`) loads those too: either it sees the announcement and does not sleep,
        // or we see its flag and wake it, and it reads the announcement.
        //
        // With the light barrier (this process registered, `barrier.rs`) our half is a
        // compiler fence only: a parking consumer's `heavy_barrier` makes this CPU run the
        // full barrier for us, between our store and our load wherever the IPI lands. A
        // fence per publish made each publish wait for `write_pos`'s line whenever a
        // subscriber that keeps up had just read it: W1 28 -> 38 M msg/s without it.
        if self.light_barrier {
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
        // SYNC POINT: Relaxed; ordered after our `write_pos` store by the fence above. The fast
        // path: one load of a read-mostly line when nobody is parked. A scribbled 0 makes us
        // skip a parked consumer until its timeout (as a scribbled `parked` would); a scribbled
        // non-zero value only costs scans.
        if self
            .region
            .header()
            .parked_consumers
            .load(Ordering::Relaxed)
            == 0
        {
            return Ok(0);
        }
        let mut woken = 0;
        let mut result = Ok(());
        for index in 0..self.geometry.max_consumers as usize {
            let Some(slot) = self.region.slot(index) else {
                break;
            };
            // SYNC POINT: Relaxed; ordered after our `write_pos` store by the fence above. A
            // consumer claims its slot (sets ACTIVE) before it ever parks, so a consumer whose
            // `parked` we must see is seen ACTIVE too. Free slots are skipped: a released slot
            // of a dead consumer is never woken.
            if slot.state.load(Ordering::Relaxed) != SLOT_ACTIVE {
                continue;
            }
            // SYNC POINT: Relaxed; ordered after our `write_pos` store by the fence above. The
            // plain load first keeps a running consumer's line clean (no write per publish).
            if slot.parked.load(Ordering::Relaxed) == PARKED_RUNNING {
                continue;
            }
            // SYNC POINT: Relaxed swap; clears the flag before the futex wake, so a consumer
            // not yet asleep finds the word changed (`EAGAIN`) and one that is asleep is woken;
            // and it is woken once per park, however many publishes follow. Any non-zero
            // value counts as parked.
            if slot.parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
                // Whoever clears a raised flag lowers the count for it (see `park_end`).
                decrement_parked_consumers(&self.region);
                woken += 1;
                if let Err(error) = wake::wake(&self.region, &slot.parked) {
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
            }
        }
        result.map(|()| woken)
    }

    /// [`try_push`](Self::try_push), waiting for room while the ring is full: the frame is
    /// written but, as with `try_push`, published only by a later [`publish`](Self::publish)
    /// or [`publish_and_wake`](Self::publish_and_wake).
    ///
    /// On [`PushError::Full`] it calls `publish_and_wake` (so parked consumers drain the
    /// ring), spins for up to `spin` rescanning the consumers, then parks: raises the header's
    /// `producer_parked`, fences, rescans, and if there is still no room sleeps on the
    /// `producer_parked` futex until a consumer that reads (or leaves, or a
    /// [`release_slot`](super::release_slot)) wakes it, or `timeout` passes (`None`: none).
    ///
    /// A consumer that never reads blocks a lossless producer: with consumers you do not
    /// trust (or that may die without their slot being released), pass a timeout. A lossy
    /// ring never reports `Full`, so there this is `try_push`.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] as for `try_push`; [`PushError::Full`] only once `timeout` has
    /// passed with the ring still full.
    pub fn push_blocking(
        &mut self,
        payload: &[u8],
        spin: Duration,
        timeout: Option<Duration>,
    ) -> Result<(), PushError> {
        let deadline = timeout.map(|timeout| Instant::now().checked_add(timeout));
        loop {
            match self.try_push(payload) {
                Err(PushError::Full) => self.wait_for_room(payload.len(), spin, deadline)?,
                result => return result,
            }
        }
    }

    /// After a `Full`: publishes and wakes consumers (so they can make room), spins for up to
    /// `spin` rescanning, then parks on `producer_parked` until a consumer makes room or the
    /// deadline (`None`: none) passes. `Ok` means "try again"; `Err(Full)` that the deadline
    /// has passed.
    fn wait_for_room(
        &mut self,
        len: usize,
        spin: Duration,
        deadline: Option<Option<Instant>>,
    ) -> Result<(), PushError> {
        // A failed futex wake is an unexpected system-call error that leaves parked
        // consumers to their timeouts; nothing a full producer could do about it.
        let _ = self.publish_and_wake();
        let end = self.frame_end(len);
        if !spin.is_zero() && self.spin_for_room(end, spin) {
            return Ok(());
        }
        let remaining = match deadline {
            None | Some(None) => None,
            Some(Some(deadline)) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(PushError::Full);
                }
                Some(remaining)
            }
        };
        let parked = &self.region.header().producer_parked;
        // SYNC POINT: Relaxed swap, ordered before the rescan's loads by the SeqCst fence
        // at the start of `scan_limit`; pairs with the SeqCst fence a consumer issues after
        // its Release store of `read_pos` (or of `state`, on leaving) in
        // `wake_parked_producer`. Dekker: either our rescan sees that store, or its load of
        // `producer_parked` sees this flag and it wakes us. A swap rather than a store for
        // the reason given in `RingConsumer::park_begin` (loom's modification order).
        parked.swap(PARKED, Ordering::Relaxed);
        // Consumers in registered processes tell us about room with no fence of their own:
        // run their half on their CPUs (`barrier.rs`), or, if the kernel refuses, sleep in
        // short naps.
        let fenced = barrier::heavy_barrier();
        self.limit = self.scan_limit();
        if end > self.limit {
            let remaining = if fenced {
                remaining
            } else {
                Some(remaining.map_or(barrier::UNFENCED_NAP, |r| r.min(barrier::UNFENCED_NAP)))
            };
            // An unexpected futex error counts as a spurious return: the caller re-checks the
            // ring and the deadline.
            let _ = wake::wait(&self.region, parked, PARKED, remaining);
        }
        // SYNC POINT: Relaxed; we are running again. If a consumer cleared the flag first
        // this is a no-op; a consumer that loads it after this store skips the wake, and we
        // rescan right away.
        parked.store(PARKED_RUNNING, Ordering::Relaxed);
        Ok(())
    }

    /// Spins for up to `spin`, rescanning the consumers, until a frame ending at `end` fits;
    /// `true` if it does.
    fn spin_for_room(&mut self, end: u64, spin: Duration) -> bool {
        let start = Instant::now();
        loop {
            self.limit = self.scan_limit();
            if end <= self.limit {
                return true;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if start.elapsed() >= spin {
                return false;
            }
            // The consumer we wait for may be queued on this very core (on 2 cores it often
            // is): offer it the core rather than spin it off.
            std::thread::yield_now();
        }
    }

    /// Where a frame of `len` payload bytes written next would end, counting the padding frame
    /// before it if it does not fit before the end of the ring.
    fn frame_end(&self, len: usize) -> u64 {
        let size = frame_size(len);
        let tail = self.geometry.capacity_usize() - self.geometry.offset_of(self.local);
        let needed = if size <= tail { size } else { tail + size };
        self.local + needed as u64
    }

    /// Whether a frame of `len` payload bytes would fit now, as [`try_push`](Self::try_push)
    /// would find (publishing the pending frames and rescanning the consumers if the room
    /// known so far is too small). Room only grows until the next push, so a push of that
    /// size right after a `true` succeeds. Always `true` in a lossy ring; `false` for a
    /// payload above [`max_payload`](Self::max_payload).
    pub fn has_room(&mut self, len: usize) -> bool {
        if len > self.max_payload() {
            return false;
        }
        if self.geometry.lossy {
            return true;
        }
        self.room_until(self.frame_end(len))
    }

    /// Lossless: whether a frame may end at `end`, within the room known to be free or,
    /// failing that, after publishing the pending frames (so consumers can read them and
    /// make room) and rescanning the consumers.
    #[inline]
    fn room_until(&mut self, end: u64) -> bool {
        if end > self.limit {
            self.publish();
            self.limit = self.scan_limit();
        }
        end <= self.limit
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
    #[inline]
    fn tag(&self) -> u32 {
        // The modulus is 2^31, so the shifted value fits a u32.
        ((self.seq % FRAME_SEQ_MODULUS) as u32) << FRAME_SEQ_SHIFT
    }

    /// Writes a frame header (`len`, `tag`) at data offset `offset`.
    #[inline]
    fn write_header(&self, offset: usize, len: u32, tag: u32) {
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[..4].copy_from_slice(&len.to_ne_bytes());
        header[4..].copy_from_slice(&tag.to_ne_bytes());
        self.write_bytes(self.geometry.data_start(), offset, &header);
    }

    /// Writes frame bytes: with atomic words in a lossy ring, where consumers may be copying
    /// the bytes being overwritten; with a plain copy in a lossless one, where they cannot be.
    #[inline]
    fn write_bytes(&self, data_start: usize, offset: usize, bytes: &[u8]) {
        if self.geometry.lossy {
            self.region.write_data_racy(data_start, offset, bytes);
        } else {
            self.region.write_data(data_start, offset, bytes);
        }
    }

    /// The consumer slots active now, with each one's `read_pos` (how far it has read), for a
    /// producer that addresses frames to one consumer (a queue). A snapshot: a consumer may
    /// join or leave right after. Values come from shared memory: use them to choose, never
    /// to index or size anything.
    pub fn active_consumers(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..self.geometry.max_consumers as usize).filter_map(|index| {
            let slot = self.region.slot(index)?;
            // SYNC POINT: Relaxed loads: a hint for choosing a consumer, ordering nothing (the
            // space rules use `scan_limit`'s Acquire loads).
            (slot.state.load(Ordering::Relaxed) == SLOT_ACTIVE)
                .then(|| (index, slot.read_pos.load(Ordering::Relaxed)))
        })
    }

    /// The position no write may pass: one capacity beyond the slowest active consumer, and
    /// never more than one capacity beyond what is published (a consumer that joins now
    /// starts at the published position).
    fn scan_limit(&self) -> u64 {
        // SYNC POINT: SeqCst fence pairs with the SeqCst fence in `claim_slot` (join,
        // reserve_slot): either that consumer's load of `write_pos` sees our last publish, or
        // the `state` loads below see its claim. Without it a joining consumer could start
        // below bytes we overwrite. In `push_blocking` it is also the fence after the
        // `producer_parked` swap, pairing with the fence in `wake_parked_producer`.
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
