//! [`RingConsumer`]: one reader of a broadcast ring, holding one consumer slot.

use std::time::{Duration, Instant};

use super::barrier;
use super::error::{ReadError, RecvError, RingError};
use super::layout::{
    frame_size, max_payload, ConsumerSlot, FRAME_ALIGN, FRAME_HEADER_LEN, FRAME_PADDING,
    FRAME_REFERENCE, FRAME_SEQ_MODULUS, FRAME_SEQ_SHIFT, FULL_WAIT, NOTICE_NONE, NOTICE_PENDING,
    PARKED, PARKED_RUNNING, SLOT_ACTIVE, SLOT_FREE,
};
use super::region::RingRegion;
use super::ring::{attach, RingGeometry};
use super::sync::{fence, Arc, AtomicU32, Ordering};
use super::wake;

/// Lossy mode: how many times one read resumes at the oldest intact frame and is lapped again
/// while copying it before it gives up for this call (returning "nothing yet"). Each retry
/// means the producer wrote over most of a ring meanwhile; the position has moved on, so the
/// next call starts from a newer frame.
const LAP_RETRIES: usize = 4;

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
    /// A reference frame (`FRAME_REFERENCE` in its `len` word).
    reference: bool,
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

    /// [`try_recv_into`](Self::try_recv_into) that also tells a reference frame (written by
    /// [`RingProducer::try_push_marked`](super::RingProducer::try_push_marked)) from a data
    /// frame: `Some(true)` for a reference (`out` holds the reference bytes), `Some(false)` for
    /// a message, `None` when nothing is published. (The unmarked calls deliver a reference
    /// frame's bytes as if they were a message: use these on rings that may carry references.)
    ///
    /// # Errors
    ///
    /// As for [`try_recv_into`](Self::try_recv_into).
    pub fn try_recv_marked(&mut self, out: &mut Vec<u8>) -> Result<Option<bool>, ReadError> {
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
        Ok(Some(frame.reference))
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

    /// [`try_recv_batch`](Self::try_recv_batch) that tells `each` whether a frame is a
    /// reference frame (`true`, see [`try_recv_marked`](Self::try_recv_marked)).
    ///
    /// # Errors
    ///
    /// As for [`try_recv_batch`](Self::try_recv_batch).
    pub fn try_recv_batch_marked(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8], bool),
    ) -> Result<usize, ReadError> {
        if self.geometry.lossy {
            let mut scratch = std::mem::take(&mut self.scratch);
            let mut count = 0;
            let mut result = Ok(());
            while count < max {
                match self.recv_lossy(&mut scratch) {
                    Ok(Some(reference)) => {
                        each(&scratch, reference);
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
    fn recv_batch_lossless<const DROPS: bool>(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8], bool),
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
                    each(&scratch, frame.reference);
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
    fn step_over_trailing_padding(&mut self, write_pos: u64) {
        if write_pos != self.pos {
            self.advance(write_pos);
        }
    }

    /// The messages dropped before the frame numbered `seq`, if it is not the one expected.
    fn gap(&self, seq: u64) -> Option<u64> {
        let expected = self.expected?;
        // Both below 2^31, and 2^64 is a multiple of 2^31: the difference mod 2^31 is exact.
        (seq != expected).then(|| seq.wrapping_sub(expected) % FRAME_SEQ_MODULUS)
    }

    /// Checks the frame numbered `seq`, about to be read: `Lagged` with the gap if messages
    /// were lost (dropped, or overwritten in a lossy ring) before it (expecting it next, so that the next call reads it); otherwise
    /// expects the number after it.
    fn check_gap(&mut self, seq: u64) -> Result<(), ReadError> {
        if let Some(skipped) = self.gap(seq) {
            self.expected = Some(seq);
            return Err(ReadError::Lagged { skipped });
        }
        self.expected = Some((seq + 1) % FRAME_SEQ_MODULUS);
        Ok(())
    }

    /// On the empty path of a consumer that reports drops (nothing published beyond
    /// `self.pos`): `Lagged` with the messages dropped since the last frame it read, if the
    /// producer has announced them, and expects the number the next frame will carry; so
    /// that frame reports only drops after the announcement, and the same announcement found
    /// again reports nothing. Loss at the end of a burst, with no frame after it, is told as
    /// soon as the consumer has read every frame before it.
    ///
    /// The announcement is the pair (`next_seq_at`, `next_seq`) the producer stores on each
    /// drop (`RingProducer::skip_dropped`): "the frame at position `next_seq_at` will carry
    /// number `next_seq`" (or a later one, if it drops again first). It concerns this
    /// consumer only if `next_seq_at` is its own position and nothing is published there yet;
    /// an announcement made before frames this consumer has read since has a position below
    /// it, and is ignored (so is one of a producer that never dropped: 0, 0). A consumer
    /// that does not know the numbering yet (it started after position 0 and has read no
    /// frame) cannot count and looks at nothing.
    ///
    /// Untrusted: a hostile producer can store anything. The position is only compared for
    /// equality with ours, and the number only yields `skipped` below 2^31 (and then the
    /// number expected), never an index or a length.
    fn announced_gap(&mut self) -> Result<(), ReadError> {
        let Some(expected) = self.expected else {
            return Ok(());
        };
        let line = &self.region.header().producer;
        // SYNC POINT: Acquire pairs with the producer's Release store of `next_seq_at` in
        // `skip_dropped`, which follows its store of the matching `next_seq`: the load of
        // `next_seq` below returns that number or a later one, never the number of an older
        // drop. Loaded FIRST: a position taken after the number could come from a later
        // announcement than the number, and that number would not be about this position.
        let at = line.next_seq_at.load(Ordering::Acquire);
        if at != self.pos {
            return Ok(());
        }
        // SYNC POINT: Acquire pairs with the producer's Release store of `next_seq`, which
        // follows its Release store of `write_pos` (the publish at the start of
        // `skip_dropped`): the `write_pos` loaded below is at least the position announced
        // with this number. If the number is from a later drop than `at` (the producer
        // pushed frames after the drop `at` came from, then dropped again), that position is
        // beyond ours, and so is `write_pos`: nothing is reported, and the frames in between,
        // still in the ring, are read as frames. So `write_pos` must be loaded AFTER
        // `next_seq` (and the `write_pos` our caller loaded before does not do).
        let next = line.next_seq.load(Ordering::Acquire) % FRAME_SEQ_MODULUS;
        if next == expected {
            return Ok(());
        }
        // SYNC POINT: Acquire, as in `published_write_pos`; ordered after the load of
        // `next_seq` (see there).
        let write_pos = line.write_pos.load(Ordering::Acquire);
        if write_pos != self.pos {
            // A frame came meanwhile: it tells of the gap before it itself.
            return Ok(());
        }
        // Every frame below `at` carries a number below `next` (the producer's numbers only
        // grow, and it published them all before announcing), and we read them all; every
        // frame to come carries `next` or more. So every number from `expected` to `next`
        // was dropped: exact, while fewer than 2^31 (as for a gap between two frames).
        self.expected = Some(next);
        Err(ReadError::Lagged {
            skipped: next.wrapping_sub(expected) % FRAME_SEQ_MODULUS,
        })
    }

    /// Whether [`announced_gap`](Self::announced_gap) would report something now: for the
    /// park re-check (`has_data`). Relaxed loads, a hint only: the report itself loads
    /// again, with Acquire.
    fn drop_announced(&self) -> bool {
        let Some(expected) = self.expected else {
            return false;
        };
        let line = &self.region.header().producer;
        // SYNC POINT: Relaxed; a hint, as `has_data`'s load of `write_pos`. After
        // `park_begin`'s SeqCst fence it is the consumer half of the Dekker check with the
        // fence in `publish_and_wake` that follows a drop announcement.
        line.next_seq_at.load(Ordering::Relaxed) == self.pos
            // SYNC POINT: Relaxed; as above.
            && line.next_seq.load(Ordering::Relaxed) % FRAME_SEQ_MODULUS != expected
    }

    /// Receives the next frame into `out`, waiting for one if none is published: first
    /// spinning for up to `spin` (zero: not at all), then parking on the futex word of its
    /// slot (`parked`) until the producer's
    /// [`publish_and_wake`](super::RingProducer::publish_and_wake) wakes it. The producer may
    /// be in another process that only shares the ring's memory.
    ///
    /// Returns `Ok(true)` with a frame, or `Ok(false)` once `timeout` (`None`: none) has
    /// passed without one. With untrusted peers, pass a timeout: a peer that clears this
    /// slot's `parked` word or the header's `parked_consumers` can make the producer skip the
    /// wake, and only the timeout's re-check then finds the frames.
    ///
    /// # Errors
    ///
    /// [`RecvError::Read`] for a corrupt ring (as [`try_recv_into`](Self::try_recv_into));
    /// [`RecvError::Park`] if the futex wait fails unexpectedly.
    pub fn recv_blocking(
        &mut self,
        out: &mut Vec<u8>,
        spin: Duration,
        timeout: Option<Duration>,
    ) -> Result<bool, RecvError> {
        let deadline = timeout.map(|timeout| Instant::now().checked_add(timeout));
        loop {
            if self.try_recv_into(out)? {
                return Ok(true);
            }
            if !spin.is_zero() && self.spin_for_publish(spin) {
                count_unslept_round();
                continue;
            }
            let remaining = match deadline {
                None | Some(None) => None,
                Some(Some(deadline)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(false);
                    }
                    Some(remaining)
                }
            };
            self.park_begin();
            let remaining = nap_unless_fenced(barrier::heavy_barrier(), remaining);
            let waited = if self.has_data() {
                count_unslept_round();
                Ok(())
            } else {
                wake::wait(&self.region, &self.slot().parked, PARKED, remaining)
            };
            self.park_end();
            waited.map_err(RecvError::Park)?;
        }
    }

    /// Whether a frame (or, in a lossy ring, a lap; or, for a consumer that
    /// [`reports drops`](Self::reports_drops), a drop announced since its last frame) may be
    /// waiting: the published `write_pos` differs from this consumer's position. One Relaxed
    /// load (two more for a consumer that reports drops, when the ring is empty): cheap
    /// enough for a spin loop over several rings; [`try_recv_into`](Self::try_recv_into) then
    /// reads with its own Acquire loads and checks.
    ///
    /// Why a sleeping consumer must hear of drops: a producer drops when the *slowest*
    /// consumer is a ring behind, and a consumer that keeps up may then be asleep on an
    /// empty ring. (A ring's only consumer, or its slowest, cannot be: a drop means it had a
    /// ring's worth unread, so it drains and then finds the announcement without sleeping.)
    /// The producer's wake scan after a drop and this check close the Dekker pair.
    pub fn has_data(&self) -> bool {
        // SYNC POINT: Relaxed; only a hint (see above). After `park_begin`'s SeqCst fence it is
        // the consumer half of the Dekker check (see there).
        self.region
            .header()
            .producer
            .write_pos
            .load(Ordering::Relaxed)
            != self.pos
            || (self.drops && self.drop_announced())
    }

    /// Announces that this consumer is about to sleep: raises the header's `parked_consumers`
    /// and the slot's `parked`, then fences. The caller then checks [`has_data`](Self::has_data)
    /// and sleeps on `parked` only if it is false, and calls [`park_end`](Self::park_end)
    /// either way.
    fn park_begin(&self) {
        // SYNC POINT: Relaxed RMW, ordered before the `write_pos` load after the fence below;
        // tells the producer's wake scan that someone may be parked (its fast path skips the
        // scan while this reads 0). An RMW, so concurrent consumers never lose a count.
        self.region
            .header()
            .parked_consumers
            .fetch_add(1, Ordering::Relaxed);
        // SYNC POINT: Relaxed, ordered before the `write_pos` load by the fence below;
        // announces that we are about to sleep to the producer's wake scan. A swap rather than
        // a store: the C++ fence rule already forbids the producer's post-fence load from
        // reading a value older than this write, but loom keeps modification order as a
        // partial order and would let that load return the 0 written by the producer's own
        // earlier swap (a lost wake-up the memory model rules out). As an RMW our write is
        // ordered after every write we read over, in loom too. It costs one locked
        // instruction, on the park path only.
        self.slot().parked.swap(PARKED, Ordering::Relaxed);
        // SYNC POINT: SeqCst fence pairs with the SeqCst fence in
        // `RingProducer::publish_and_wake` (Dekker: raise `parked_consumers` and `parked`,
        // fence, load `write_pos` here; store `write_pos`, fence, load `parked_consumers` and
        // `parked` there). Either the producer's scan sees our flag (and the counter) and
        // wakes the futex, or our `has_data` load sees its `write_pos` and we do not sleep.
        // Without the fence the stores could be ordered after the load, and a publish falling
        // between them would wake nobody. The futex itself closes the remaining window: the
        // producer clears `parked` before its FUTEX_WAKE, and FUTEX_WAIT sleeps only while
        // the word still holds PARKED.
        //
        // A producer with the light barrier issues no fence: the caller runs
        // `barrier::heavy_barrier` after this (once for all the rings it parks on), which
        // runs the producer's half on its CPU (`barrier.rs`).
        fence(Ordering::SeqCst);
    }

    /// Ends a [`park_begin`](Self::park_begin): clears the slot's `parked` and lowers the
    /// header's `parked_consumers` (never below zero).
    fn park_end(&self) {
        // SYNC POINT: Relaxed swap; we are running again. Whoever clears a raised flag lowers
        // `parked_consumers` for it: we, if the flag is still ours to clear; else the
        // producer's wake scan (or `wake_consumer`) already did. So the counter never stays
        // raised for a consumer that is not parked, which would make every publish scan.
        if self.slot().parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
            decrement_parked_consumers(&self.region);
        }
    }

    /// Spins for up to `spin` while `write_pos` equals our position; `true` if it moved.
    fn spin_for_publish(&self, spin: Duration) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                // SYNC POINT: Relaxed; only a hint that a frame may be there, which
                // `try_recv_into` then reads with its own Acquire load.
                let write_pos = self
                    .region
                    .header()
                    .producer
                    .write_pos
                    .load(Ordering::Relaxed);
                if write_pos != self.pos {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= spin {
                return false;
            }
            // The producer we wait for may be queued on this very core: offer it the core.
            std::thread::yield_now();
        }
    }

    /// The slot this consumer holds.
    fn slot(&self) -> &ConsumerSlot {
        // `join` found slot `self.slot` inside the region, and a region's length never changes.
        self.region.slot(self.slot).expect("slot checked at join")
    }

    /// Loads the published `write_pos` and checks that it is frame-aligned.
    fn published_write_pos(&self) -> Result<u64, ReadError> {
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
    fn load_write_pos(&self) -> Result<u64, ReadError> {
        let write_pos = self.published_write_pos()?;
        if write_pos.wrapping_sub(self.pos) > self.geometry.capacity {
            return Err(ReadError::Corrupt(
                "write position behind or a capacity ahead",
            ));
        }
        Ok(write_pos)
    }

    /// Lossy mode: reads the next intact frame into `out`, or finds the lap. Moves `self.pos`
    /// but does not store `read_pos` (the caller does, once).
    ///
    /// A lapped consumer resumes at the oldest intact frame (`oldest_pos`) and reads it in the
    /// same call: it returns the `Lagged` (the frame's sequence number tells how many were
    /// lost), and the next call returns the frame. Lapped again while it copies, it resumes
    /// again, up to [`LAP_RETRIES`] times; then it returns `Ok(None)` (its position has moved
    /// on, and the next call goes on from there).
    fn recv_lossy(&mut self, out: &mut Vec<u8>) -> Result<Option<bool>, ReadError> {
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
            return Ok(Some(frame.reference));
        }
        Ok(None)
    }

    /// Lossy mode: whether the producer may have overwritten bytes at or after `pos` since we
    /// loaded `write_pos` (the reader half of a seqlock: call it after copying).
    fn lapped(&self, pos: u64) -> Result<bool, ReadError> {
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
    fn resume(&mut self) -> Result<bool, ReadError> {
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

    /// Stores our position to the slot's `read_pos` (lossy mode: for observers only).
    fn publish_position(&self) {
        // SYNC POINT: Release, as in `advance`; the lossy producer does not read it.
        self.slot().read_pos.store(self.pos, Ordering::Release);
    }

    /// Reads frame bytes: with atomic words in a lossy ring (the producer may be overwriting
    /// them; the copy is validated afterwards), with a plain copy in a lossless one.
    fn read_bytes(&self, data_start: usize, offset: usize, dst: &mut [u8]) {
        if self.geometry.lossy {
            self.region.read_data_racy(data_start, offset, dst);
        } else {
            self.region.read_data(data_start, offset, dst);
        }
    }

    /// Finds the frame at `pos` (skipping a padding frame), checking everything read from the
    /// ring. On entry `write_pos - pos` (wrapping) is at most a capacity and `pos` is 8-aligned.
    fn locate(&self, write_pos: u64, mut pos: u64) -> Result<Option<Located>, ReadError> {
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
            let reference = tag & FRAME_PADDING == 0 && len_word & FRAME_REFERENCE != 0;
            let len = if reference {
                (len_word & !FRAME_REFERENCE) as usize
            } else {
                len_word as usize
            };
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
                reference,
            }));
        }
        Err(ReadError::Corrupt("padding frame after padding frame"))
    }

    /// Moves to `pos` and tells the producer.
    fn advance(&mut self, pos: u64) {
        self.pos = pos;
        // SYNC POINT: Release pairs with the producer's Acquire load of `read_pos` in its scan:
        // our copies out of the frames below `pos` happen-before it overwrites them.
        self.slot().read_pos.store(pos, Ordering::Release);
        wake_parked_producer(&self.region, self.light_barrier);
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

/// Consumer slot `index` of a ring with `geometry`, or `None` if it is out of range.
fn slot_in<'a>(
    region: &'a RingRegion,
    geometry: &RingGeometry,
    index: usize,
) -> Option<&'a ConsumerSlot> {
    if index >= geometry.max_consumers as usize {
        return None;
    }
    region.slot(index)
}

/// Claims a free slot of the ring in `region` and sets its `read_pos` to the published
/// `write_pos`; returns the slot index and that start position. Shared by
/// [`RingConsumer::join`] and [`reserve_slot`].
fn claim_slot(region: &RingRegion, geometry: &RingGeometry) -> Result<(usize, u64), RingError> {
    for index in 0..geometry.max_consumers as usize {
        let Some(slot) = region.slot(index) else {
            break;
        };
        // SYNC POINT: AcqRel CAS. Acquire pairs with the Release store of SLOT_FREE in the
        // previous holder's drop (or `release_slot`): its `read_pos` stores precede ours;
        // Release publishes the claim to the producer's Acquire load of `state` in its scan.
        let claimed = slot
            .state
            .compare_exchange(SLOT_FREE, SLOT_ACTIVE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if !claimed {
            continue;
        }
        // SYNC POINT: SeqCst fence pairs with the fence in the producer's scan: either the
        // producer sees our claim, or our load below sees its last publish, so it never writes
        // more than a capacity beyond where we start.
        fence(Ordering::SeqCst);
        // SYNC POINT: Acquire pairs with the producer's Release store in `publish`.
        let start = region.header().producer.write_pos.load(Ordering::Acquire);
        if start % FRAME_ALIGN as u64 != 0 {
            // SYNC POINT: Release pairs with the producer's and joiners' Acquire of `state`.
            slot.state.store(SLOT_FREE, Ordering::Release);
            return Err(RingError::Corrupt("write position not frame-aligned"));
        }
        // SYNC POINT: Release pairs with the producer's Acquire load of `read_pos` (and with
        // the Acquire load in `RingConsumer::adopt`).
        slot.read_pos.store(start, Ordering::Release);
        // SYNC POINT: Relaxed; clears a flag a previous holder (or a scribbler) left. At worst
        // the producer saw it first and sends us one spurious wake.
        slot.parked.store(PARKED_RUNNING, Ordering::Relaxed);
        // SYNC POINT: Relaxed; a previous holder's notice is not for us.
        slot.notice.store(NOTICE_NONE, Ordering::Relaxed);
        return Ok((index, start));
    }
    Err(RingError::NoFreeSlot)
}

/// Claims a free consumer slot of the ring in `region` for someone else, starting at the
/// current published `write_pos`, and returns its index: the broker reserves a slot, hands
/// its index (with the ring's segment) to a subscriber process, and that process takes it
/// over with [`RingConsumer::adopt`]. From now on the producer keeps every frame from that
/// position for the slot (in a lossless ring), exactly as for a joined consumer.
///
/// Nothing frees the slot on drop: the adopter's [`RingConsumer`] does when it is dropped,
/// and if the holder dies first, whoever reserved it calls [`release_slot`].
///
/// # Errors
///
/// As for [`RingConsumer::join`].
pub fn reserve_slot(region: &RingRegion) -> Result<usize, RingError> {
    let geometry = attach(region)?;
    claim_slot(region, &geometry).map(|(index, _)| index)
}

/// Frees consumer slot `slot` on behalf of a holder that died (or never adopted it): clears
/// its `parked` flag (and its count in `parked_consumers`, if it died parked), marks it free,
/// and wakes the producer if it waits for room, since the slot may have been the slowest.
///
/// Only for a slot whose holder is gone: releasing a live consumer's slot lets the producer
/// overwrite frames it is reading (it then reads garbage and reports
/// [`ReadError::Corrupt`], never more). Releasing a free slot changes nothing.
///
/// # Errors
///
/// Those of [`attach`]; [`RingError::BadSlot`] for an index out of range.
pub fn release_slot(region: &RingRegion, slot: usize) -> Result<(), RingError> {
    let geometry = attach(region)?;
    let slot_ref = slot_in(region, &geometry, slot).ok_or(RingError::BadSlot {
        index: slot,
        reason: "index out of range",
    })?;
    // SYNC POINT: Relaxed swap, so that only one of us and a racing producer wake scan sees
    // the flag set, and that one lowers `parked_consumers` for the dead holder.
    if slot_ref.parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
        decrement_parked_consumers(region);
    }
    // SYNC POINT: Release pairs with the producer's Acquire load of `state` in its scan and
    // with the next joiner's CAS, as a consumer's drop does.
    slot_ref.state.store(SLOT_FREE, Ordering::Release);
    wake_parked_producer(region, false);
    Ok(())
}

/// Raises the `notice` of slot `slot` and wakes its holder if it sleeps on this ring, without
/// publishing anything: the broker uses it to tell a subscriber to look at its control
/// socket. A running holder sees the notice with [`RingConsumer::take_notice`] (one load of
/// its own slot line), and is not disturbed otherwise (no syscall). Out-of-range slots are
/// ignored.
pub fn wake_consumer(region: &RingRegion, slot: usize) {
    let Ok(geometry) = attach(region) else {
        return;
    };
    let Some(slot) = slot_in(region, &geometry, slot) else {
        return;
    };
    // SYNC POINT: Release pairs with the Acquire swap in `take_notice`: what the caller did
    // before (sent the news on its control channel) is done when the holder sees the notice.
    // Ordered before the `parked` load below by the fence, so either the holder's park
    // re-check sees the notice or we see its flag.
    slot.notice.store(NOTICE_PENDING, Ordering::Release);
    fence(Ordering::SeqCst);
    // SYNC POINT: Relaxed, then a Relaxed swap, as in the producer's wake scan: clearing the
    // flag before the futex wake makes a consumer not yet asleep find the word changed; the
    // one who clears it lowers `parked_consumers`.
    if slot.parked.load(Ordering::Relaxed) != PARKED_RUNNING
        && slot.parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING
    {
        decrement_parked_consumers(region);
        let _ = wake::wake(region, &slot.parked);
    }
}

/// Lowers the header's `parked_consumers` by one, but never below zero (a scribbler may have
/// zeroed it; wrapping would make every publish scan forever).
pub(crate) fn decrement_parked_consumers(region: &RingRegion) {
    // SYNC POINT: Relaxed CAS loop; the counter is only a hint for the producer's wake scan,
    // ordered by the SeqCst fences of the park protocol, not by this operation. Failure (the
    // counter is 0) is the floor, not an error.
    let _ = region.header().parked_consumers.fetch_update(
        Ordering::Relaxed,
        Ordering::Relaxed,
        |count| count.checked_sub(1),
    );
}

/// After this consumer made room (a Release store of `read_pos` or of `state`): wakes the
/// producer if it is parked in [`RingProducer::push_blocking`](super::RingProducer). One
/// fence (a compiler fence only with `light`: this process is registered for the producer's
/// heavy barrier) and one Relaxed load when it is not: the per-batch cost of a lossless read.
fn wake_parked_producer(region: &RingRegion, light: bool) {
    let parked: &AtomicU32 = &region.header().producer_parked;
    // SYNC POINT: SeqCst fence pairs with the SeqCst fence at the start of the producer's
    // rescan in `push_blocking` (Dekker: store `read_pos`/`state`, fence, load
    // `producer_parked` here; raise `producer_parked`, fence, load `read_pos`/`state` there).
    // Either its rescan sees the room we made, or our load below sees its flag and we wake
    // it. Without the fence our load could be satisfied before our store is visible, and the
    // producer could sleep on a ring that has room. With `light`, the producer's
    // `heavy_barrier` before its rescan runs our half on our CPU (`barrier.rs`).
    if light {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    // SYNC POINT: Relaxed; ordered after our store by the fence above. The plain load keeps
    // the header line clean while the producer runs.
    if parked.load(Ordering::Relaxed) == PARKED_RUNNING {
        return;
    }
    // SYNC POINT: Relaxed swap: of all the consumers that see the flag, exactly one clears it
    // and makes the wake syscall. Cleared before the wake, so a producer not yet asleep finds
    // the word changed. Any non-zero (scribbled) value counts as parked: a spurious wake.
    if parked.swap(PARKED_RUNNING, Ordering::Relaxed) != PARKED_RUNNING {
        // A failed wake (an unexpected system-call error) leaves the producer to its timeout;
        // a read cannot report it, and must not fail because of it.
        let _ = wake::wake(region, parked);
    }
}

/// Waits until any of `consumers` may have a frame: for a subscriber that reads several rings
/// (one per publisher) from one thread. Parks on every consumer's slot (as
/// [`RingConsumer::recv_blocking`] does), returns at once if any already has data, and
/// otherwise sleeps in one `futex_waitv` on all their `parked` words until a producer wakes
/// one, `timeout` passes (`None`: none), or a spurious wake-up.
///
/// Returns `Ok(())` in every one of those cases: the caller then reads every consumer with
/// [`try_recv_into`](RingConsumer::try_recv_into) (or checks
/// [`has_data`](RingConsumer::has_data)) and calls this again when all are empty. An empty
/// `consumers` returns at once. Above 128 consumers (the kernel's limit for one
/// `futex_waitv`), or on a kernel without `futex_waitv` (before Linux 5.16), it sleeps on the
/// first consumer's word for at most 1 ms at a time, so the others are polled at least that
/// often.
///
/// # Errors
///
/// [`RecvError::Park`] if the futex wait fails unexpectedly.
#[cfg(not(loom))]
pub fn wait_any(consumers: &[&RingConsumer], timeout: Option<Duration>) -> Result<(), RecvError> {
    for consumer in consumers {
        consumer.park_begin();
    }
    let timeout = if consumers.is_empty() {
        timeout
    } else {
        nap_unless_fenced(barrier::heavy_barrier(), timeout)
    };
    let waited = if consumers
        .iter()
        .any(|consumer| consumer.has_data() || consumer.has_notice())
    {
        Ok(())
    } else {
        let words: Vec<&AtomicU32> = consumers
            .iter()
            .map(|consumer| &consumer.slot().parked)
            .collect();
        wake::wait_any(&words, PARKED, timeout)
    };
    for consumer in consumers {
        consumer.park_end();
    }
    waited.map_err(RecvError::Park)
}

#[cfg(all(test, not(loom)))]
thread_local! {
    /// Test-only: rounds of [`RingConsumer::recv_blocking`] on this thread that went back to
    /// reading without sleeping, because the spin or the park re-check (`has_data`) saw
    /// something. On a ring nobody writes to meanwhile it stays 0 unless those checks and the
    /// read disagree (a busy loop).
    pub(crate) static UNSLEPT_ROUNDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a round of `recv_blocking` that did not sleep (tests only; nothing otherwise).
fn count_unslept_round() {
    #[cfg(all(test, not(loom)))]
    UNSLEPT_ROUNDS.with(|rounds| rounds.set(rounds.get() + 1));
}

/// The sleep a parking consumer may take: `timeout`, or at most [`barrier::UNFENCED_NAP`] when
/// its heavy barrier failed (a producer publishing without a fence may then miss its flag).
fn nap_unless_fenced(fenced: bool, timeout: Option<Duration>) -> Option<Duration> {
    if fenced {
        timeout
    } else {
        Some(timeout.map_or(barrier::UNFENCED_NAP, |t| t.min(barrier::UNFENCED_NAP)))
    }
}
