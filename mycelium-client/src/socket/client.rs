//! [`SocketClient`]: a cheap `Clone` handle over one broker connection.
//!
//! - [`SocketClient::connect_with`] performs the handshake (Hello → Welcome) before returning,
//!   so a client in hand is a client the broker accepted; it then starts the connection's
//!   tasks (`connection.rs`).
//! - Publishers and subscriptions made here share the connection; so do clones.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mycelium_transport::Frame;

use crate::error::ClientError;
use crate::socket::connection::Shared;
use crate::socket::handshake::{handshake, BrokerInfo, SocketOptions};
use crate::socket::publisher::SocketPublisher;
use crate::socket::queue::SubscriptionQueue;
use crate::socket::requests::{BrokerStats, ReloadReport};
use crate::socket::subscription::SocketSubscription;
use crate::subscribe_options::SubscribeOptions;

/// A handle on one broker connection; clones share it. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct SocketClient {
    pub(super) shared: Arc<Shared>,
}

impl SocketClient {
    /// Connects with explicit options.
    pub(crate) async fn connect_with(
        path: impl AsRef<Path>,
        options: SocketOptions,
    ) -> Result<SocketClient, ClientError> {
        let path = path.as_ref().to_owned();
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, handshake(&path, &options)).await {
            Err(_) => Err(ClientError::Timeout("connecting to the broker")),
            Ok(Err(error)) => Err(error),
            Ok(Ok((stream, info, leftover))) => Ok(SocketClient {
                shared: Shared::start(stream, info, leftover, options),
            }),
        }
    }

    /// What the broker announced at the handshake.
    pub(crate) fn broker_info(&self) -> &BrokerInfo {
        &self.shared.info
    }

    /// A publisher for `topic`: asks the broker for the topic once (an unknown topic is refused
    /// here, with the broker's message naming it).
    pub(crate) async fn publisher(&self, topic: &str) -> Result<SocketPublisher, ClientError> {
        let info = self.shared.resolve(topic).await?;
        Ok(SocketPublisher::new(self.shared.clone(), topic, info))
    }

    /// Publishes one message on `topic`. Returns once the message is queued for sending;
    /// [`SocketClient::flush`] confirms the broker processed it.
    pub(crate) async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), ClientError> {
        let info = self.shared.resolve(topic).await?;
        if info.rules.stamp {
            return self
                .shared
                .publish_enveloped(topic, info, Some(&self.shared.stamper), None, payload)
                .await;
        }
        self.shared.publish(topic, info, &[payload]).await
    }

    /// Subscribes with `options`: `prefetch` credit on a queue topic (`None` = the topic's
    /// default), and whether to leave out what this connection publishes (`no_echo`).
    pub(crate) async fn subscribe_with(
        &self,
        topic: &str,
        options: &SubscribeOptions,
    ) -> Result<SocketSubscription, ClientError> {
        let queue = Arc::new(SubscriptionQueue::default());
        let request_id = self.shared.next_request_id();
        let frame = Frame::Subscribe {
            request_id,
            prefetch: options.wire_prefetch(),
            no_echo: options.no_echo,
            topic: topic.to_owned(),
        };
        // The queue must be registered before the ack is processed, since Deliver frames follow
        // the ack immediately: the reader registers it on seeing the ack (`connection.rs`).
        let answer = self
            .shared
            .request_with(request_id, &frame, Some(queue.clone()))
            .await?;
        match answer {
            Frame::TopicAck {
                topic_id,
                routing,
                prefetch,
                ..
            } => Ok(SocketSubscription::new(
                self.shared.clone(),
                queue,
                topic,
                topic_id,
                routing,
                prefetch,
            )),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Subscribe: {other:?}"
            ))),
        }
    }

    /// Waits until the broker has processed everything this client sent before the call.
    /// Returns the first publish the broker refused since the last flush, if any.
    pub(crate) async fn flush(&self) -> Result<(), ClientError> {
        self.shared.flush().await
    }

    /// How many published messages the broker has refused this client since it connected, as
    /// received so far: after [`SocketClient::flush`], every publish sent before it is
    /// answered.
    /// Exact: each refusal says how many messages it refuses (one, or a whole batch held back
    /// by a slow reader and given up after `publish_deadline_ms`, or cut short by the
    /// removal of its topic), and this adds them up. What was sent less this was accepted.
    pub(crate) fn refused_publishes(&self) -> u64 {
        self.shared.lock().refused_publishes
    }

    /// The broker's counters.
    pub(crate) async fn stats(&self) -> Result<BrokerStats, ClientError> {
        self.shared.stats().await
    }

    /// Asks the broker to re-read its config file now, and waits for the outcome. A failed
    /// reload is an `Ok` report with [`ReloadOutcome::Failed`](mycelium_transport::ReloadOutcome::Failed):
    /// the broker answered, and kept its running config.
    pub(crate) async fn reload(&self) -> Result<ReloadReport, ClientError> {
        self.shared.reload().await
    }

    /// Flushes, then closes the connection and waits until it is released. Subscriptions end.
    pub(crate) async fn close(self) -> Result<(), ClientError> {
        let flushed = self.flush().await;
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.outbox.close();
        let reader = self
            .shared
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(self.shared.options.request_timeout, reader).await;
        }
        flushed
    }
}
