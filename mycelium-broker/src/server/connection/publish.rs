//! Routing a run of publishes to its topic: waiting while a `block` policy holds it back (up
//! to `publish_deadline_ms`, and on shutdown up to the flush deadline), and telling the
//! publisher what was not routed.

use std::ops::Range;
use std::sync::Arc;

use mycelium_transport::frame::NO_REQUEST;
use mycelium_transport::{ErrorCode, Frame};
use tokio_util::sync::CancellationToken;

use crate::core::topic::{Batch, GaveUp, HeldBack, Progress, PublishCursor, Topic};

use super::context::Connection;
use super::stop::Stop;

impl Connection {
    /// Routes a batch, waiting while a `block` policy holds it back.
    pub(super) async fn route<B: Batch + ?Sized>(
        &self,
        topic: &Arc<Topic>,
        payloads: &B,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        self.route_answering(&[], topic, payloads, stop)
            .await
            .map(drop)
    }

    /// [`Self::route`] for a batch of `PublishDurable` messages when `requests` (their request
    /// ids, one per message) is not empty; returns a durable topic's offsets of the batch once
    /// stored. A batch the log refused is refused to each request; what happens to live
    /// delivery afterwards (a slow subscriber given up on, the topic removed) does not undo
    /// the storing, so it refuses no durable publish.
    pub(super) async fn route_answering<B: Batch + ?Sized>(
        &self,
        requests: &[u32],
        topic: &Arc<Topic>,
        payloads: &B,
        stop: &CancellationToken,
    ) -> Result<Option<Range<u64>>, Stop> {
        if payloads.is_empty() {
            return Ok(None);
        }
        // When the batch was read off the socket, if its latency is recorded: the clock is
        // read again only then, once the batch is routed.
        let read = topic.latency_on().then_some(self.last_read);
        // Marked with the connection: its own no-echo subscriptions skip the batch.
        let mut cursor = PublishCursor::from_origin(self.id);
        // A batch already read was accepted: on shutdown it is still routed, while the
        // writers drain, for up to the flush deadline; only a subscriber that takes nothing
        // for that long loses the rest of it.
        let give_up = async {
            stop.cancelled().await;
            tokio::time::sleep(self.state.shutdown_deadline()).await;
        };
        tokio::pin!(give_up);
        // `block` waits on one slow reader at most `publish_deadline_ms` (0: for ever),
        // counted over every wake-up of this batch's wait on it, not afresh at each.
        let mut held = HeldBack::default();
        // Messages of the batch already refused to the publisher (given up on), and whether a
        // slow reader held the batch back.
        let (mut told, mut was_held) = (0, false);
        loop {
            let blocker = match topic.publish(payloads, &mut cursor) {
                Progress::Done => break,
                Progress::Blocked(blocker) => blocker,
                Progress::Refused(refusal) => {
                    if requests.is_empty() {
                        let refused = payloads.len().saturating_sub(cursor.routed() + told);
                        self.refuse_publishes(
                            ErrorCode::StorageFailed,
                            topic.id(),
                            refused,
                            refusal.message.clone(),
                        );
                    }
                    for &request_id in requests {
                        self.refuse_publishes_answering(
                            request_id,
                            ErrorCode::StorageFailed,
                            topic.id(),
                            1,
                            refusal.message.clone(),
                        );
                    }
                    return Ok(None);
                }
            };
            was_held = true;
            tokio::select! {
                gave_up = topic.wait_or_give_up(&blocker, payloads, &mut cursor, &mut held) => {
                    if let Some(GaveUp::Dropped(n)) = gave_up.filter(|_| requests.is_empty()) {
                        told += n;
                        let waited = topic.config().publish_deadline_ms;
                        let batch = payloads.len();
                        self.refuse_publishes(ErrorCode::SlowConsumer, topic.id(), n, format!(
                            "topic '{}' could take no more for {waited} ms (backpressure = block, \
                             publish_deadline_ms = {waited}): of a batch of {batch} message(s), \
                             {} were routed and {n} dropped",
                            topic.name(),
                            batch - n,
                        ));
                    }
                }
                _ = &mut give_up => {
                    tracing::warn!(topic = topic.name(), "shutdown deadline passed with a batch still blocked on a slow subscriber");
                    return Err(Stop::Shutdown);
                }
                _ = self.outbox.closed() => return Err(Stop::Gone),
            }
        }
        // Removed while the batch was in hand (perhaps held back by a slow subscriber): what
        // had not been routed is lost (and what was given up on was told already); say so
        // once, with how many.
        let batch = payloads.len();
        let lost = batch.saturating_sub(cursor.routed() + told);
        if lost > 0 && topic.is_removed() && requests.is_empty() {
            let how = if was_held {
                "was held back by a slow subscriber"
            } else {
                "was being routed"
            };
            let routed = batch - lost - told;
            let before = match told {
                0 => String::new(),
                told => format!(" ({told} more had been dropped before)"),
            };
            self.refuse_publishes(
                ErrorCode::TopicRemoved,
                topic.id(),
                lost,
                format!(
                    "topic '{}' was removed from the broker's config while a batch of {batch} \
                     message(s) to it {how}: {routed} were routed, {lost} were not{before}",
                    topic.name(),
                ),
            );
        }
        if let Some(read) = read {
            topic.record_latency(read);
        }
        Ok(cursor.logged())
    }

    /// Tells the client that `refused` of the messages it published on `topic_id` were not
    /// routed: a non-fatal error with request id 0 that carries the count, so a client that
    /// adds them up knows exactly what was accepted.
    pub(super) fn refuse_publishes(
        &self,
        code: ErrorCode,
        topic_id: u32,
        refused: usize,
        message: String,
    ) {
        self.refuse_publishes_answering(NO_REQUEST, code, topic_id, refused, message);
    }

    /// [`Self::refuse_publishes`], answering `request_id`.
    pub(super) fn refuse_publishes_answering(
        &self,
        request_id: u32,
        code: ErrorCode,
        topic_id: u32,
        refused: usize,
        message: String,
    ) {
        tracing::debug!(connection = self.id, ?code, refused, %message, "refused publishes");
        self.outbox.append_control(&Frame::Error {
            request_id,
            code,
            fatal: false,
            topic_id,
            message,
            // A batch is bounded by the read buffer, far below u32::MAX messages.
            refused: u32::try_from(refused).unwrap_or(u32::MAX),
        });
    }
}
