//! Helpers the outbox's tests share: reading back what a drainer took.

use bytes::{Bytes, BytesMut};

use crate::outbox::Drained;
use crate::{codec, frame::kind, peek_frame, Frame};

pub(super) fn flat(taken: &mut Drained) -> Vec<u8> {
    taken.flatten()
}

pub(super) fn payloads_in(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("outbox holds valid frames")
    {
        if let Some((_, payload)) = view.message() {
            out.push(payload.to_vec());
        }
        rest = &rest[used..];
    }
    out
}

/// Every `Lagged` notice in `buf`, as (topic id, skipped), with the messages around them:
/// `Ok(payload)` for a message, `Err((topic, skipped))` for a notice.
pub(super) fn notices_in(buf: &[u8]) -> Vec<Result<Vec<u8>, (u32, u64)>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
        match view.message() {
            Some((_, payload)) => out.push(Ok(payload.to_vec())),
            None => {
                if let Frame::Lagged { topic_id, skipped } = view.to_frame().expect("a frame") {
                    out.push(Err((topic_id, skipped)));
                }
            }
        }
        rest = &rest[used..];
    }
    out
}

/// `n` Deliver frames of `size`-byte payloads on topic 1, back to back, and their ends.
pub(super) fn run_of(n: usize, size: usize) -> (Bytes, Vec<usize>) {
    let mut buf = BytesMut::new();
    let mut ends = Vec::new();
    for i in 0..n {
        let payload = vec![i as u8; size];
        codec::encode_message(&mut buf, kind::DELIVER, 1, &payload);
        ends.push(buf.len());
    }
    (buf.freeze(), ends)
}
