//! The socket path's [`Delivery`]: a connection's [`Outbox`], which encodes what the topic
//! hands it as frames toward the client.
//!
//! - Payload slices become `Deliver` frames, enveloped items `DeliverEnvelope` frames (the
//!   envelope and payload as they are); a socket publisher's [`FrameRun`] (its `Publish` and
//!   `PublishEnvelope` frames relabelled as `Deliver` and `DeliverEnvelope` in place) is
//!   queued as it is, by reference when large: the zero-copy path from one socket to many.
//! - Losses become `Lagged` notices; the end of a subscription becomes an `Error` frame
//!   (`TopicRemoved`, non-fatal; `SlowConsumer`, fatal, after which the outbox closes).
//!
//! [`FrameRun`]: mycelium_transport::outbox::FrameRun

use std::ops::Range;

use mycelium_transport::frame::NO_REQUEST;
use mycelium_transport::outbox::{Appended, Outbox};
use mycelium_transport::{ErrorCode, Frame};

use crate::core::batch::BatchRef;
use crate::core::delivery::{Delivered, Delivery, Ending, RoomWait, SubscriberTransport};
use crate::core::ids::TopicId;

impl Delivery for Outbox {
    fn deliver(
        &self,
        topic: TopicId,
        batch: BatchRef<'_>,
        range: Range<usize>,
        limit: Option<usize>,
    ) -> Delivered {
        let appended = match (batch, limit) {
            (BatchRef::Payloads(payloads), Some(max)) => {
                self.append_messages(topic, &payloads[range], max)
            }
            (BatchRef::Payloads(payloads), None) => self.append_credited(topic, &payloads[range]),
            // Enveloped items become `DeliverEnvelope` frames, plain ones `Deliver` frames.
            (BatchRef::Items(items), limit) => self.append_items(
                topic,
                items[range].iter().map(|item| (item.bytes, item.enveloped)),
                limit,
            ),
            // The frames already carry this topic's id: the broker routes a run to its own topic.
            (BatchRef::Frames(run), limit) => self.append_run(topic, &run, range, limit),
        };
        match appended {
            Appended::Queued(n) => Delivered::Queued(n),
            Appended::Closed => Delivered::Closed,
        }
    }

    fn has_room(&self, topic: TopicId, limit: usize) -> bool {
        Outbox::has_room(self, topic, limit)
    }

    fn wait_for_room(&self, topic: TopicId, limit: usize) -> RoomWait<'_> {
        Box::pin(Outbox::wait_for_room(self, topic, limit))
    }

    fn evict_oldest(&self, topic: TopicId, max: usize) -> usize {
        Outbox::evict_oldest(self, topic, max)
    }

    fn report_lost(&self, topic: TopicId, count: u64) {
        Outbox::report_lost(self, topic, count);
    }

    fn transport(&self) -> SubscriberTransport {
        SubscriberTransport::Socket
    }

    /// All the connection's message frames, whatever their topic: the outbox counts per
    /// topic, but says only its total.
    fn queued(&self, _topic: TopicId) -> Option<usize> {
        Some(self.queued_messages())
    }

    fn end(&self, topic: TopicId, why: Ending<'_>) {
        let (code, fatal, message) = match why {
            Ending::TopicRemoved { message } => (ErrorCode::TopicRemoved, false, message),
            Ending::SlowConsumer { message } => (ErrorCode::SlowConsumer, true, message),
            Ending::StorageFailed { message } => (ErrorCode::StorageFailed, false, message),
        };
        let frame = Frame::Error {
            request_id: NO_REQUEST,
            code,
            fatal,
            topic_id: topic,
            message: message.to_owned(),
            refused: 0,
        };
        if fatal {
            self.close_with(&frame);
        } else {
            self.append_control(&frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use mycelium_transport::outbox::Drained;
    use mycelium_transport::peek_frame;

    use super::*;
    use crate::core::delivery_conformance::{self, Reader, Seen};

    impl Reader for Outbox {
        fn open(_topic: u32) -> Outbox {
            Outbox::new()
        }

        fn read_all(&self) -> Vec<Seen> {
            let mut seen = Vec::new();
            let mut drained = Drained::default();
            if !self.take(&mut drained) {
                return seen;
            }
            let buf = drained.flatten();
            let mut rest: &[u8] = &buf;
            while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
                seen.push(match view.message() {
                    Some((_, payload)) => Seen::Message(payload.to_vec()),
                    None => match view.to_frame().expect("a frame") {
                        Frame::Lagged { skipped, .. } => Seen::Lagged(skipped),
                        Frame::Error { .. } => Seen::End,
                        other => panic!("unexpected frame {other:?}"),
                    },
                });
                rest = &rest[used..];
            }
            seen
        }
    }

    #[tokio::test]
    async fn the_socket_outbox_keeps_the_delivery_contract() {
        delivery_conformance::run::<Outbox>().await;
    }
}
