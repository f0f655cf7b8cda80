//! Reading a payload segment: the message a reference frame names, whose fd came on the
//! control socket.
//!
//! - The fd is taken from the session's news (it came before the frame was written) and
//!   checked (sealed against writes and resizing, long enough, within the topic's limit),
//!   then mapped read-only ([`PayloadView`]).
//! - News of other kinds that comes while waiting for a segment is kept for the subscription
//!   to apply at its next look.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use mycelium_transport::shm::reference::SegmentRef;
use mycelium_transport::shm::{Claimed, PayloadView, SegmentTable};

use crate::error::ClientError;
use crate::shm::control::RingNews;
use crate::shm::session::Session;

/// Payload segments announced and not yet read (no fd: dropped by the broker).
pub(super) type Segments = SegmentTable<OwnedFd>;

/// The message a reference frame (`body`) of ring `ring_id` names, mapped read-only; `None`
/// when the broker dropped it for us. Waits for the segment's fd on the control socket up to
/// the request timeout (it is normally there already); news of other kinds that comes
/// meanwhile is kept in `deferred`.
pub(super) fn resolve(
    session: &Session,
    attachment: u32,
    max_message_size: usize,
    segments: &mut Segments,
    deferred: &mut Vec<RingNews>,
    ring_id: u32,
    body: &[u8],
) -> Result<Option<PayloadView>, ClientError> {
    let reference = SegmentRef::decode(body)
        .ok_or_else(|| ClientError::Shm(format!("malformed reference frame in ring {ring_id}")))?;
    let deadline = Instant::now() + session.options().request_timeout;
    let claimed = loop {
        if let Some(claimed) = segments.claim(ring_id, &reference) {
            break claimed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Shm(format!(
                "the payload segment {} of ring {ring_id} never came (waited {:?})",
                reference.segment,
                session.options().request_timeout
            )));
        }
        // Short waits: the control lock is held while waiting, and other threads share it.
        for news in session.wait_news(attachment, left.min(Duration::from_millis(1)))? {
            file_news(segments, deferred, news);
        }
        if deferred
            .iter()
            .any(|news| matches!(news, RingNews::Detached(..)))
        {
            // The segment is not coming: the broker ended the subscription. The caller finds
            // the reason in `deferred`.
            return Err(ClientError::Shm(format!(
                "the payload segment {} of ring {ring_id} will not come: the subscription ended",
                reference.segment
            )));
        }
    };
    let fd = match claimed {
        Claimed::Segment(fd) => fd,
        Claimed::Dropped => return Ok(None),
        Claimed::LengthMismatch { announced } => {
            return Err(ClientError::Shm(format!(
                "ring {ring_id}: reference frame says {} bytes, its segment {announced}",
                reference.len
            )))
        }
    };
    PayloadView::open(fd.as_fd(), reference.len as usize, max_message_size)
        .map(Some)
        .map_err(|e| ClientError::Shm(format!("payload segment of ring {ring_id}: {e}")))
}

/// Files a payload segment in `segments`, and any other news in `deferred`.
pub(super) fn file_news(segments: &mut Segments, deferred: &mut Vec<RingNews>, news: RingNews) {
    match news {
        RingNews::Segment {
            ring_id,
            reference,
            fd,
        } => {
            segments.file(ring_id, reference, fd);
        }
        other => deferred.push(other),
    }
}
