//! `drop_oldest`: cutting a topic's oldest queued messages out of an outbox, leaving one
//! `Lagged` notice where they were.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Buf, BytesMut};

use crate::frame::{kind, MESSAGE_OVERHEAD};
use crate::outbox::state::{encode_lagged, State};

impl State {
    /// Cuts up to `max` of the oldest message frames (either of `kinds`: plain and enveloped)
    /// of `topic_id` out of the queue;
    /// returns how many it cut. Segments stay zero-copy (a cut segment becomes the slices
    /// around the cut); the tail is advanced past the cut frames, and the frames of other
    /// topics (or control frames) that sat among them are moved into a small copied segment
    /// ahead of it, so queue order never changes.
    ///
    /// The peer is told where the gap is: a `Lagged` notice of the topic goes just after the
    /// last frame cut (before the first message of the topic left). Every earlier notice of
    /// the topic lies among the cut messages, so it is cut too and its count added: a peer
    /// that keeps losing its oldest messages gets one notice, not one per eviction.
    pub(super) fn evict_oldest(&mut self, topic_id: u32, kinds: [u8; 2], max: usize) -> usize {
        let wanted = max.min(self.queued_for(topic_id));
        let mut left = wanted;
        if left == 0 {
            return 0;
        }
        let mut cut_bytes = 0;
        let mut told = 0u64;
        // Where in `segments` the notice goes when the last cut is in a segment.
        let mut notice_at = None;
        let mut segments = VecDeque::with_capacity(self.segments.len() + 2);
        for segment in std::mem::take(&mut self.segments) {
            if left == 0 {
                segments.push_back(segment);
                continue;
            }
            let cuts = frames_to_cut(&segment, topic_id, kinds, &mut left, &mut told);
            let mut at = 0;
            for cut in cuts {
                if cut.start > at {
                    segments.push_back(segment.slice(at..cut.start));
                }
                cut_bytes += cut.len();
                at = cut.end;
                notice_at = Some(segments.len());
            }
            if at < segment.len() {
                segments.push_back(segment.slice(at..));
            }
        }
        let cuts = if left > 0 {
            frames_to_cut(&self.tail, topic_id, kinds, &mut left, &mut told)
        } else {
            Vec::new()
        };
        let cut = wanted - left;
        let skipped = (cut as u64).saturating_add(told);
        let mut notice_bytes = 0;
        if let Some(last) = cuts.last() {
            let end = last.end;
            let mut kept = BytesMut::new();
            let mut at = 0;
            for cut in &cuts {
                kept.extend_from_slice(&self.tail[at..cut.start]);
                cut_bytes += cut.len();
                at = cut.end;
            }
            notice_bytes = encode_lagged(&mut kept, topic_id, skipped);
            segments.push_back(kept.freeze());
            self.tail.advance(end);
        } else if let Some(i) = notice_at {
            let mut notice = BytesMut::new();
            notice_bytes = encode_lagged(&mut notice, topic_id, skipped);
            segments.insert(i, notice.freeze());
        }
        self.segments = segments;
        self.bytes = self.bytes - cut_bytes + notice_bytes;
        self.messages -= cut;
        if let Some((_, n)) = self.per_topic.iter_mut().find(|(t, _)| *t == topic_id) {
            *n -= cut;
        }
        cut
    }
}

/// The byte ranges of the first message frames (either of `kinds`, on `topic_id`) in
/// `frames`, at most `*left` of them (lowered by as many), and of the topic's `Lagged`
/// notices among and before them (their counts added to `*told`); adjacent frames make one
/// range. `frames` holds whole
/// frames that this outbox encoded or that the broker's reader validated, so a length that
/// runs past the end only ends the walk.
fn frames_to_cut(
    frames: &[u8],
    topic_id: u32,
    kinds: [u8; 2],
    left: &mut usize,
    told: &mut u64,
) -> Vec<Range<usize>> {
    /// A `Lagged` frame: header, topic id, count.
    const LAGGED_LEN: usize = MESSAGE_OVERHEAD + 8;
    let mut cuts: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    while *left > 0 && frames.len() - at >= MESSAGE_OVERHEAD {
        let header = &frames[at..at + MESSAGE_OVERHEAD];
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(end) = at.checked_add(4 + len).filter(|&end| end <= frames.len()) else {
            break;
        };
        let topic = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
        let cut = if topic != topic_id {
            false
        } else if header[5] == kinds[0] || header[5] == kinds[1] {
            *left -= 1;
            true
        } else if header[5] == kind::LAGGED && end - at == LAGGED_LEN {
            let mut count = [0u8; 8];
            count.copy_from_slice(&frames[at + MESSAGE_OVERHEAD..end]);
            *told = told.saturating_add(u64::from_le_bytes(count));
            true
        } else {
            false
        };
        if cut {
            match cuts.last_mut() {
                Some(last) if last.end == at => last.end = end,
                _ => cuts.push(at..end),
            }
        }
        at = end;
    }
    cuts
}

#[cfg(test)]
mod tests {
    use crate::outbox::test_support::{flat, notices_in, payloads_in, run_of};
    use crate::outbox::{Appended, Drained, FrameRun, Outbox};
    use crate::{peek_frame, Frame};

    /// Every frame in `buf`: (topic id, payload) for messages, `None` for control frames.
    fn frames_in(buf: &[u8]) -> Vec<Option<(u32, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
            out.push(view.message().map(|(t, p)| (t, p.to_vec())));
            rest = &rest[used..];
        }
        out
    }

    #[test]
    fn evicting_cuts_only_the_oldest_messages_of_one_topic_and_keeps_the_rest_in_order() {
        let outbox = Outbox::new();
        let ping = Frame::Pong { token: 9 };
        outbox.append_messages(1, &[b"a1", b"a2"], 100);
        outbox.append_control(&ping);
        outbox.append_messages(2, &[b"b1"], 100);
        outbox.append_messages(1, &[b"a3", b"a4"], 100);
        assert_eq!(outbox.evict_oldest(1, 3), 3);
        assert_eq!(outbox.queued_messages(), 2);
        assert!(outbox.has_room(1, 2), "the topic's count went down");
        assert_eq!(outbox.evict_oldest(3, 5), 0, "no message of that topic");
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        // The notice of the three (`None`) sits where they were: before a4, after b1.
        assert_eq!(
            frames_in(&flat(&mut taken)),
            vec![
                None,
                Some((2, b"b1".to_vec())),
                None,
                Some((1, b"a4".to_vec()))
            ]
        );
    }

    #[test]
    fn repeated_evictions_leave_one_notice_just_before_the_oldest_message_kept() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(40, 400);
        let run = FrameRun::new(&frames, &ends);
        // A shared run, copied messages of another topic, a copied message: notices end up
        // in segments and in the tail.
        assert_eq!(
            outbox.append_run(1, &run, 0..20, None),
            Appended::Queued(20)
        );
        outbox.append_messages(2, &[b"b"], 10);
        outbox.append_messages(1, &[b"t"], 100);
        let mut evicted = 0;
        for n in [3, 5, 1, 11] {
            evicted += outbox.evict_oldest(1, n);
        }
        assert_eq!(evicted, 20);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let mut expected = vec![Err((1, 20))];
        expected.push(Ok(b"b".to_vec()));
        expected.push(Ok(b"t".to_vec()));
        assert_eq!(notices_in(&flat(&mut taken)), expected);
        // Evicting everything tells everything, once.
        outbox.append_messages(1, &[b"x", b"y"], 100);
        outbox.evict_oldest(1, 1);
        outbox.evict_oldest(1, 1);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        assert_eq!(notices_in(&flat(&mut taken)), vec![Err((1, 2))]);
    }

    #[test]
    fn evicting_from_a_shared_run_keeps_the_rest_of_it_by_reference() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(100, 400);
        let run = FrameRun::new(&frames, &ends);
        assert_eq!(
            outbox.append_run(1, &run, 0..100, None),
            Appended::Queued(100)
        );
        outbox.append_messages(1, &[b"last"], 1000);
        assert_eq!(outbox.evict_oldest(1, 30), 30);
        assert_eq!(outbox.queued_messages(), 71);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let got = payloads_in(&flat(&mut taken));
        assert_eq!(got.len(), 71);
        assert_eq!(got[0], run.payload(30));
        assert_eq!(got[70], b"last");
        // Evicting more than is queued takes what there is, from a closed outbox nothing.
        outbox.append_messages(1, &[b"x"], 10);
        assert_eq!(outbox.evict_oldest(1, 10), 1);
        outbox.append_messages(1, &[b"y"], 10);
        outbox.close();
        assert_eq!(outbox.evict_oldest(1, 10), 0);
    }

    #[test]
    fn enveloped_and_plain_messages_count_alike_and_are_evicted_alike() {
        use crate::frame::kind;
        let outbox = Outbox::new();
        let items: Vec<(&[u8], bool)> = vec![
            (b"p1", false),
            (b"\x00e2", true),
            (b"p3", false),
            (b"\x00e4", true),
        ];
        assert_eq!(
            outbox.append_items(1, items.iter().copied(), Some(3)),
            Appended::Queued(3),
            "the limit counts both kinds"
        );
        assert!(!outbox.has_room(1, 3));
        assert_eq!(outbox.evict_oldest(1, 2), 2, "a plain and an enveloped one");
        assert_eq!(
            outbox.append_items(1, items[3..].iter().copied(), None),
            Appended::Queued(1)
        );
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let buf = flat(&mut taken);
        let mut rest: &[u8] = &buf;
        let mut seen = Vec::new();
        while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
            seen.push(match view.message() {
                Some((_, body)) => (view.kind, body.to_vec()),
                None => match view.to_frame().expect("a frame") {
                    Frame::Lagged { skipped, .. } => (kind::LAGGED, vec![skipped as u8]),
                    other => panic!("unexpected {other:?}"),
                },
            });
            rest = &rest[used..];
        }
        assert_eq!(
            seen,
            vec![
                (kind::LAGGED, vec![2]),
                (kind::DELIVER, b"p3".to_vec()),
                (kind::DELIVER_ENVELOPE, b"\x00e4".to_vec()),
            ]
        );
        // Toward the broker, enveloped messages are `PublishEnvelope` frames.
        let publishing = Outbox::for_publishing();
        publishing.append_items(1, items[1..2].iter().copied(), None);
        let mut taken = Drained::default();
        assert!(publishing.take(&mut taken));
        let buf = flat(&mut taken);
        let (view, _) = peek_frame(&buf, usize::MAX).expect("valid").expect("whole");
        assert_eq!(view.kind, kind::PUBLISH_ENVELOPE);
    }
}
