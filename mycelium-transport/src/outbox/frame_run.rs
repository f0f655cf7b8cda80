//! A publisher's batch of `Deliver`/`DeliverEnvelope` frames as read off its socket, queued
//! toward every subscriber by reference when it is large.

use std::ops::Range;

use bytes::Bytes;

use crate::frame::MESSAGE_OVERHEAD;

/// A run of frames at least this long is queued by reference; a shorter one is copied.
pub const SHARE_MIN_BYTES: usize = 16 * 1024;

/// Shared slices an outbox may hold before further runs are copied. Each slice may keep a whole
/// read buffer (a few hundred KiB) alive, so this bounds what a slow subscriber pins.
pub const MAX_SHARED_SEGMENTS: usize = 64;

/// Whole `Deliver`/`DeliverEnvelope` frames back to back, and where each ends: a publisher's
/// batch as read off its socket, relabelled from `Publish`/`PublishEnvelope`, ready to be
/// queued toward subscribers without copying.
#[derive(Debug, Clone, Copy)]
pub struct FrameRun<'a> {
    pub(super) frames: &'a Bytes,
    /// `ends[i]` is the offset just past frame `i`; increasing, the last is `frames.len()`.
    pub(super) ends: &'a [usize],
}

impl<'a> FrameRun<'a> {
    /// A run over `frames` whose frames end at `ends` (see the field docs). The broker builds
    /// these from frames `peek_frame` accepted, so each holds at least a topic id.
    pub fn new(frames: &'a Bytes, ends: &'a [usize]) -> FrameRun<'a> {
        FrameRun { frames, ends }
    }

    /// Frames in the run.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the run holds no frame.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(super) fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// The kind byte of frame `i` (`Deliver` or `DeliverEnvelope`).
    pub fn kind(&self, i: usize) -> u8 {
        self.frames[self.start_of(i) + 5]
    }

    /// The body of frame `i` after its topic id: the payload of a `Deliver`, the envelope
    /// then the payload of a `DeliverEnvelope`.
    pub fn payload(&self, i: usize) -> &'a [u8] {
        let frames: &'a [u8] = self.frames;
        &frames[self.start_of(i) + MESSAGE_OVERHEAD..self.ends[i]]
    }

    pub(super) fn bytes(&self, range: Range<usize>) -> Range<usize> {
        self.start_of(range.start)..self.start_of(range.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::test_support::{flat, payloads_in, run_of};
    use crate::outbox::{Appended, Drained, Outbox};

    #[test]
    fn a_large_run_is_queued_by_reference_and_a_small_one_by_copy() {
        let outbox = Outbox::new();
        let (big, big_ends) = run_of(64, 1024);
        let (small, small_ends) = run_of(3, 8);
        let big_run = FrameRun::new(&big, &big_ends);
        let small_run = FrameRun::new(&small, &small_ends);
        assert_eq!(
            outbox.append_run(1, &small_run, 0..3, Some(1000)),
            Appended::Queued(3)
        );
        assert_eq!(
            outbox.append_run(1, &big_run, 0..64, Some(1000)),
            Appended::Queued(64)
        );
        assert_eq!(
            outbox.append_run(1, &small_run, 0..2, Some(1000)),
            Appended::Queued(2)
        );
        assert_eq!(outbox.queued_messages(), 69);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let shared = taken.segments.iter().any(|s| s.as_ptr() == big.as_ptr());
        assert!(shared, "the large run was not queued by reference");
        let payloads = payloads_in(&flat(&mut taken));
        assert_eq!(payloads.len(), 69);
        assert_eq!(payloads[0], vec![0u8; 8]);
        assert_eq!(payloads[3], vec![0u8; 1024]);
        assert_eq!(payloads[66], vec![63u8; 1024]);
        assert_eq!(payloads[68], vec![1u8; 8]);
    }

    #[test]
    fn a_run_stops_at_the_message_limit_on_a_frame_boundary() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(10, 100);
        let run = FrameRun::new(&frames, &ends);
        assert_eq!(
            outbox.append_run(1, &run, 2..10, Some(5)),
            Appended::Queued(5)
        );
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let payloads = payloads_in(&flat(&mut taken));
        let expected: Vec<Vec<u8>> = (2..7).map(|i| vec![i as u8; 100]).collect();
        assert_eq!(payloads, expected);
        assert_eq!(run.payload(9), &[9u8; 100][..]);
    }
}
