//! [`SegmentTable`]: the payload segments a ring reader has been handed and not yet read.
//!
//! - A message too large for its ring travels in a payload segment; its fd reaches the reader
//!   on the control channel (`ShmSegmentAdded`) before the ring's reference frame naming it
//!   (`docs/shm-layout.md`, Payload segments). The reader files each announcement here, by ring
//!   and segment id, and claims it when the reference frame comes.
//! - An announcement without an fd says the broker dropped the message for this reader (it held
//!   [`MAX_SEGMENTS_IN_FLIGHT`](crate::limits::MAX_SEGMENTS_IN_FLIGHT) already).
//! - Segment ids increase per ring, and a sender announces a segment before it publishes the
//!   reference frame, in order: once a reference is claimed, the earlier segments of its ring
//!   that were never referenced are not coming, and are dropped (their fds closed).
//! - The table is generic over how the fd is held (`OwnedFd` in a client, a shared handle in
//!   the broker); it never maps anything: [`PayloadView::open`](crate::shm::PayloadView::open)
//!   checks the segment itself.

use std::collections::{BTreeMap, HashMap};

use crate::shm::reference::SegmentRef;

/// What a reference frame finds in the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed<F> {
    /// The segment's fd, announced with the length the reference frame says.
    Segment(F),
    /// The broker dropped the message for this reader: no fd came.
    Dropped,
    /// The announcement and the reference frame disagree on the length: the segment is
    /// refused (its fd closed).
    LengthMismatch {
        /// The length the announcement gave.
        announced: u32,
    },
}

/// Payload segments announced to one reader, per ring id, then by segment id.
#[derive(Debug)]
pub struct SegmentTable<F> {
    rings: HashMap<u32, BTreeMap<u64, (SegmentRef, Option<F>)>>,
}

impl<F> Default for SegmentTable<F> {
    fn default() -> Self {
        SegmentTable {
            rings: HashMap::new(),
        }
    }
}

impl<F> SegmentTable<F> {
    /// An empty table.
    pub fn new() -> SegmentTable<F> {
        SegmentTable::default()
    }

    /// Files the announcement of `reference` in ring `ring_id`; `fd` is `None` when the broker
    /// dropped the message for this reader. A second announcement of one id replaces the first.
    pub fn file(&mut self, ring_id: u32, reference: SegmentRef, fd: Option<F>) {
        self.rings
            .entry(ring_id)
            .or_default()
            .insert(reference.segment, (reference, fd));
    }

    /// Claims the segment a reference frame of ring `ring_id` names: `None` while it has not
    /// been announced (the caller waits for it, and decides for how long). Claiming drops the
    /// earlier segments of the ring, which no reference frame will name any more.
    pub fn claim(&mut self, ring_id: u32, reference: &SegmentRef) -> Option<Claimed<F>> {
        let ring = self.rings.get_mut(&ring_id)?;
        let (announced, fd) = ring.remove(&reference.segment)?;
        ring.retain(|&id, _| id > reference.segment);
        Some(match fd {
            None => Claimed::Dropped,
            Some(_) if announced.len != reference.len => Claimed::LengthMismatch {
                announced: announced.len,
            },
            Some(fd) => Claimed::Segment(fd),
        })
    }

    /// Forgets ring `ring_id` and every segment announced for it (the reader stopped reading
    /// it).
    pub fn forget_ring(&mut self, ring_id: u32) {
        self.rings.remove(&ring_id);
    }

    /// Segments announced and not yet claimed, over all rings.
    pub fn len(&self) -> usize {
        self.rings.values().map(BTreeMap::len).sum()
    }

    /// Whether no segment is waiting to be claimed.
    pub fn is_empty(&self) -> bool {
        self.rings.values().all(BTreeMap::is_empty)
    }
}

#[cfg(test)]
mod claims {
    use super::*;

    fn r(segment: u64, len: u32) -> SegmentRef {
        SegmentRef { segment, len }
    }

    #[test]
    fn a_reference_claims_its_announced_segment() {
        let mut table = SegmentTable::new();
        table.file(1, r(5, 100), Some("fd5"));
        assert_eq!(table.claim(1, &r(5, 100)), Some(Claimed::Segment("fd5")));
        assert!(table.is_empty());
    }

    #[test]
    fn a_segment_not_announced_yet_is_not_found_and_nothing_is_dropped() {
        let mut table = SegmentTable::new();
        table.file(1, r(3, 10), Some("fd3"));
        assert_eq!(table.claim(1, &r(4, 10)), None);
        assert_eq!(table.claim(2, &r(3, 10)), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn claiming_drops_the_earlier_segments_of_the_ring_only() {
        let mut table = SegmentTable::new();
        for id in 1..=4 {
            table.file(1, r(id, 10), Some(id));
        }
        table.file(2, r(1, 10), Some(100));
        assert_eq!(table.claim(1, &r(3, 10)), Some(Claimed::Segment(3)));
        assert_eq!(table.claim(1, &r(1, 10)), None);
        assert_eq!(table.claim(1, &r(4, 10)), Some(Claimed::Segment(4)));
        assert_eq!(table.claim(2, &r(1, 10)), Some(Claimed::Segment(100)));
    }

    #[test]
    fn an_announcement_without_fd_is_a_drop_and_a_length_disagreement_a_refusal() {
        let mut table: SegmentTable<u8> = SegmentTable::new();
        table.file(1, r(1, 10), None);
        table.file(1, r(2, 10), Some(2));
        assert_eq!(table.claim(1, &r(1, 10)), Some(Claimed::Dropped));
        assert_eq!(
            table.claim(1, &r(2, 11)),
            Some(Claimed::LengthMismatch { announced: 10 })
        );
    }

    #[test]
    fn forgetting_a_ring_drops_its_segments() {
        let mut table = SegmentTable::new();
        table.file(1, r(1, 10), Some(1));
        table.file(2, r(1, 10), Some(2));
        table.forget_ring(1);
        assert_eq!(table.claim(1, &r(1, 10)), None);
        assert_eq!(table.len(), 1);
    }
}
