//! The [`Client`] methods of durable topics: subscribing to a log, publishing with
//! confirmation, listing consumer groups.

use std::sync::Arc;

use mycelium_transport::envelope::Headers;
use mycelium_transport::GroupStats;

use super::acks::AckBatch;
use super::{DurableOptions, DurableSubscription};
use crate::error::{PublishError, RequestError, SubscribeError};
use crate::Client;

impl Client {
    /// Subscribes to durable `topic`'s log as `options` say: from a start position, alone (a
    /// replay subscription) or as a member of a consumer group, with a prefetch.
    ///
    /// Refused with [`SubscribeError::Refused`] and
    /// [`ErrorCode::Unsupported`](mycelium_transport::ErrorCode::Unsupported) when the topic
    /// is not durable (or the broker does not serve durable topics), `UnknownTopic`,
    /// `InvalidTopicName` for a bad group name, `PermissionDenied`.
    ///
    /// ```no_run
    /// use mycelium_client::{Client, DurableOptions, StartPosition};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Client::connect("/tmp/mycelium.sock").await?;
    /// let options = DurableOptions::group("billing").start(StartPosition::Earliest);
    /// let mut orders = client.subscribe_durable("orders", options).await?;
    /// while let Ok(message) = orders.recv().await {
    ///     println!("order at offset {}: {} bytes", message.offset(), message.len());
    ///     message.ack();
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_durable(
        &self,
        topic: &str,
        options: DurableOptions,
    ) -> Result<DurableSubscription, SubscribeError> {
        let socket = self.socket().await?;
        let (inner, prefetch) = socket
            .subscribe_durable(
                topic,
                options.start,
                options.group.as_deref(),
                options.prefetch,
            )
            .await?;
        // A group's window is freed by acknowledgements: send them by half windows, as a
        // queue consumer returns credit.
        let batch = usize::try_from(prefetch / 2).unwrap_or(usize::MAX).max(1);
        let acks = AckBatch::new(
            socket.clone(),
            inner.topic_id(),
            batch,
            tokio::runtime::Handle::current(),
        );
        Ok(DurableSubscription::new(
            inner,
            Arc::new(acks),
            options.group,
            prefetch,
        ))
    }

    /// Publishes one message on durable `topic` and waits until the broker has stored it
    /// (as the topic's `fsync` policy defines stored): the message's offset in the log. On a
    /// topic that stamps, the message is stamped.
    ///
    /// Any number may be outstanding at once: each waits for its own answer, so a batch is
    /// published by starting them all and then awaiting them (for instance with
    /// `futures::future::join_all`); the broker stores them in the order they were started.
    ///
    /// Fails with [`PublishError::Refused`] carrying
    /// [`ErrorCode::StorageFailed`](mycelium_transport::ErrorCode::StorageFailed) when the
    /// log could not store it, [`ErrorCode::Unsupported`](mycelium_transport::ErrorCode::Unsupported)
    /// when the topic is not durable; [`PublishError::MessageTooLarge`] and
    /// [`PublishError::HeadersTooLarge`] before sending.
    pub async fn publish_durable(&self, topic: &str, payload: &[u8]) -> Result<u64, PublishError> {
        Ok(self
            .socket()
            .await?
            .publish_durable(topic, None, payload)
            .await?)
    }

    /// As [`publish_durable`](Self::publish_durable), with `headers` (checked against the
    /// topic's header limits before sending).
    pub async fn publish_durable_with(
        &self,
        topic: &str,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<u64, PublishError> {
        Ok(self
            .socket()
            .await?
            .publish_durable(topic, Some(headers), payload)
            .await?)
    }

    /// The consumer groups of durable `topic`: each one's committed position, lag, pending
    /// messages, members and counters.
    pub async fn groups(&self, topic: &str) -> Result<Vec<GroupStats>, RequestError> {
        Ok(self.socket().await?.groups(topic).await?)
    }
}
