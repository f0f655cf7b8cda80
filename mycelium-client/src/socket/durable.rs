//! The requests of durable topics over the socket connection: a durable subscription, a
//! publish confirmed once stored, and a topic's consumer groups.
//!
//! - Each is a request: its answer (`TopicAck`, `Published`, `Groups`) or its refusal comes
//!   back under its request id, through the registry every request uses, so any number of
//!   confirmed publishes may be outstanding at once, each waiting on its own answer.
//! - A durable subscription's deliveries are ordinary `DeliverEnvelope` frames under the
//!   subscription's id: the reader task hands them to its queue as it does any
//!   subscription's.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mycelium_transport::envelope::{Envelope, Headers};
use mycelium_transport::{Frame, GroupStats, StartPosition};

use crate::error::ClientError;
use crate::socket::client::SocketClient;
use crate::socket::publisher::{check_headers, check_payloads};
use crate::socket::queue::SubscriptionQueue;
use crate::socket::subscription::SocketSubscription;

impl SocketClient {
    /// Opens a durable subscription of `topic`: a replay subscription (`group` `None`) or a
    /// member of `group`. Returns the receive side and the credit the broker granted.
    pub(crate) async fn subscribe_durable(
        &self,
        topic: &str,
        start: StartPosition,
        group: Option<&str>,
        prefetch: u32,
    ) -> Result<(SocketSubscription, u32), ClientError> {
        let queue = Arc::new(SubscriptionQueue::default());
        let request_id = self.shared.next_request_id();
        let frame = Frame::SubscribeDurable {
            request_id,
            prefetch,
            start,
            group: group.map(str::to_owned),
            topic: topic.to_owned(),
        };
        // As for `subscribe_with`: the reader registers the queue on the ack, before the
        // deliveries that follow it.
        match self
            .shared
            .request_with(request_id, &frame, Some(queue.clone()))
            .await?
        {
            Frame::TopicAck {
                topic_id, prefetch, ..
            } => {
                let subscription = SocketSubscription::durable(
                    self.shared.clone(),
                    queue,
                    topic,
                    topic_id,
                    prefetch,
                    group.is_none(),
                );
                Ok((subscription, prefetch))
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to SubscribeDurable: {other:?}"
            ))),
        }
    }

    /// Publishes one message on durable `topic` (with `headers`, and stamped when the topic
    /// stamps) and waits until the broker says it is stored: its offset in the log.
    pub(crate) async fn publish_durable(
        &self,
        topic: &str,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<u64, ClientError> {
        let info = self.shared.resolve(topic).await?;
        check_payloads(topic, info, &[payload])?;
        let headers = headers.filter(|h| !h.is_empty());
        if let Some(headers) = headers {
            check_headers(topic, &info.rules, headers)?;
        }
        let stamp = info.rules.stamp.then(|| {
            self.shared
                .stamper
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stamp()
        });
        let (enveloped, message) = if stamp.is_some() || headers.is_some() {
            let envelope = Envelope {
                stamp,
                headers,
                ..Envelope::default()
            };
            let mut bytes = BytesMut::with_capacity(envelope.len() + payload.len());
            envelope.encode(&mut bytes);
            bytes.extend_from_slice(payload);
            (true, bytes.freeze())
        } else {
            (false, Bytes::copy_from_slice(payload))
        };
        let request_id = self.shared.next_request_id();
        let frame = Frame::PublishDurable {
            request_id,
            topic_id: info.id,
            enveloped,
            message,
        };
        match self.shared.request_with(request_id, &frame, None).await? {
            Frame::Published { offset, .. } => Ok(offset),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to PublishDurable: {other:?}"
            ))),
        }
    }

    /// The consumer groups of durable `topic`.
    pub(crate) async fn groups(&self, topic: &str) -> Result<Vec<GroupStats>, ClientError> {
        let request_id = self.shared.next_request_id();
        let frame = Frame::GroupsRequest {
            request_id,
            topic: topic.to_owned(),
        };
        match self.shared.request_with(request_id, &frame, None).await? {
            Frame::Groups { groups, .. } => Ok(groups),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to GroupsRequest: {other:?}"
            ))),
        }
    }

    /// Queues `frame` (an acknowledgement, a nack, credit); false once the connection is
    /// gone.
    pub(crate) fn send_control(&self, frame: &Frame) -> bool {
        self.shared.send_control(frame)
    }
}
