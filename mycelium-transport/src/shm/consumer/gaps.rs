//! Counting lost messages by the frames' sequence numbers: the gap before a frame (a lossless
//! ring whose producer drops, or a lossy ring that lapped this consumer), and the drops a
//! producer announced after the last frame read.

use crate::shm::error::ReadError;
use crate::shm::layout::FRAME_SEQ_MODULUS;
use crate::shm::sync::Ordering;

use super::RingConsumer;

impl RingConsumer {
    /// The messages dropped before the frame numbered `seq`, if it is not the one expected.
    pub(super) fn gap(&self, seq: u64) -> Option<u64> {
        let expected = self.expected?;
        // Both below 2^31, and 2^64 is a multiple of 2^31: the difference mod 2^31 is exact.
        (seq != expected).then(|| seq.wrapping_sub(expected) % FRAME_SEQ_MODULUS)
    }

    /// Checks the frame numbered `seq`, about to be read: `Lagged` with the gap if messages
    /// were lost (dropped, or overwritten in a lossy ring) before it (expecting it next, so that the next call reads it); otherwise
    /// expects the number after it.
    pub(super) fn check_gap(&mut self, seq: u64) -> Result<(), ReadError> {
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
    pub(super) fn announced_gap(&mut self) -> Result<(), ReadError> {
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
    pub(super) fn drop_announced(&self) -> bool {
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
}
