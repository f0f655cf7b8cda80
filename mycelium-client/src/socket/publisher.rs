//! [`SocketPublisher`]: publishing over the socket connection.
//!
//! - Publishing appends the message to the connection's outgoing queue under a short lock
//!   and returns; the writer task sends it. A full queue ([`PUBLISH_QUEUE_MESSAGES`]) makes
//!   `publish` wait: backpressure, not unbounded memory.
//! - A publisher resolves its topic once; the payload limit is checked before queueing.

use std::sync::Arc;

use mycelium_transport::outbox::Appended;

use crate::error::ClientError;
use crate::socket::connection::{Shared, TopicInfo};

/// Messages the outgoing queue holds before `publish` waits for the writer.
pub(crate) const PUBLISH_QUEUE_MESSAGES: usize = 64 * 1024;

/// Publishes on one topic without looking the topic up again; see
/// `SocketClient::publisher`.
#[derive(Debug, Clone)]
pub(crate) struct SocketPublisher {
    shared: Arc<Shared>,
    topic: Arc<str>,
    info: TopicInfo,
}

impl SocketPublisher {
    /// A publisher on `topic`, resolved to `info`.
    pub(super) fn new(shared: Arc<Shared>, topic: &str, info: TopicInfo) -> SocketPublisher {
        SocketPublisher {
            shared,
            topic: Arc::from(topic),
            info,
        }
    }

    /// Publishes one message; see `SocketClient::publish`.
    pub(crate) async fn publish(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.shared
            .publish(&self.topic, self.info, &[payload])
            .await
    }

    /// Queues one message if the outgoing queue has room now; `false` (nothing queued) when
    /// it has not.
    #[inline]
    pub(crate) fn try_publish(&self, payload: &[u8]) -> Result<bool, ClientError> {
        if payload.len() > self.info.max_message_size {
            return Err(ClientError::MessageTooLarge {
                topic: self.topic.to_string(),
                size: payload.len(),
                max: self.info.max_message_size,
            });
        }
        match self
            .shared
            .outbox
            .append_messages(self.info.id, &[payload], PUBLISH_QUEUE_MESSAGES)
        {
            Appended::Closed => Err(self.shared.gone_error()),
            Appended::Queued(n) => Ok(n > 0),
        }
    }

    /// `Ok` while the connection serves; the broker's reason once it has gone (what every
    /// later publish would return).
    pub(crate) fn check(&self) -> Result<(), ClientError> {
        match self.shared.lock().gone.clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Publishes several messages in order with one lock.
    pub(crate) async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), ClientError> {
        self.shared.publish(&self.topic, self.info, payloads).await
    }

    /// The topic's payload limit.
    pub(crate) fn max_message_size(&self) -> usize {
        self.info.max_message_size
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }
}

impl Shared {
    pub(super) async fn publish(
        &self,
        topic: &str,
        info: TopicInfo,
        payloads: &[&[u8]],
    ) -> Result<(), ClientError> {
        if let Some(big) = payloads.iter().find(|p| p.len() > info.max_message_size) {
            return Err(ClientError::MessageTooLarge {
                topic: topic.to_owned(),
                size: big.len(),
                max: info.max_message_size,
            });
        }
        let mut rest = payloads;
        while !rest.is_empty() {
            match self
                .outbox
                .append_messages(info.id, rest, PUBLISH_QUEUE_MESSAGES)
            {
                Appended::Closed => return Err(self.gone_error()),
                Appended::Queued(n) => rest = &rest[n..],
            }
            if !rest.is_empty() {
                self.outbox
                    .wait_for_room(info.id, PUBLISH_QUEUE_MESSAGES)
                    .await;
            }
        }
        Ok(())
    }
}
