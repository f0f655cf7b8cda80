//! Requests to the broker over the socket connection, and their answers.
//!
//! - Each request (advertise, subscribe, unsubscribe, stats, reload, flush) carries a request
//!   id; the caller waits in the registry under it until the reader task hands it the answer,
//!   for at most the connection's `request_timeout`.
//! - A subscribe that timed out is remembered: if its ack still comes, the reader tells the
//!   broker to drop the subscription nobody reads.
//! - [`BrokerStats`] and [`ReloadReport`] are the answers to `stats` and `reload`.

use std::sync::Arc;

use mycelium_transport::{ConfigStatus, Frame, ReloadOutcome, TopicStats};
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::socket::connection::{PublishErrors, Shared, TopicInfo};
use crate::socket::queue::SubscriptionQueue;

/// A snapshot of the broker's counters, from [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStats {
    /// Open client connections.
    pub connections: u32,
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Per topic, in declaration order.
    pub topics: Vec<TopicStats>,
    /// The config's generation and the outcome of the last reload.
    pub config: ConfigStatus,
}

/// What [`Client::reload`](crate::Client::reload) got back: the reload's outcome and the
/// config's status after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Applied, unchanged, or failed (then `status.last_error` says why).
    pub outcome: ReloadOutcome,
    /// The config's generation and what the reload changed or did not apply.
    pub status: ConfigStatus,
}

impl Shared {
    async fn request(&self, request_id: u32, frame: &Frame) -> Result<Frame, ClientError> {
        self.request_with(request_id, frame, None).await
    }

    /// Sends `frame` and waits for the answer carrying `request_id`. A subscription queue, if
    /// given, is registered by the reader as it sees a `TopicAck`, before any later frame.
    pub(super) async fn request_with(
        &self,
        request_id: u32,
        frame: &Frame,
        queue: Option<Arc<SubscriptionQueue>>,
    ) -> Result<Frame, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut registry = self.lock();
            if let Some(gone) = &registry.gone {
                return Err(gone.clone());
            }
            registry.pending.insert(request_id, tx);
            if let Some(queue) = queue {
                // Moved to `subscriptions` on the ack.
                registry.parked.insert(request_id, queue);
            }
        }
        if !self.send_control(frame) {
            self.lock().pending.remove(&request_id);
            return Err(self.gone_error());
        }
        match tokio::time::timeout(self.options.request_timeout, rx).await {
            Err(_) => {
                let mut registry = self.lock();
                registry.pending.remove(&request_id);
                if registry.parked.remove(&request_id).is_some() {
                    registry.abandoned_subscribes.insert(request_id);
                }
                Err(ClientError::Timeout("waiting for an answer"))
            }
            Ok(Err(_)) => Err(self.gone_error()),
            Ok(Ok(answer)) => answer,
        }
    }

    pub(super) async fn resolve(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        if let Some(info) = self.lock().publish_topics.get(topic) {
            return Ok(*info);
        }
        let request_id = self.next_request_id();
        match self
            .request(
                request_id,
                &Frame::Advertise {
                    request_id,
                    topic: topic.to_owned(),
                },
            )
            .await?
        {
            Frame::TopicAck {
                topic_id,
                max_message_size,
                rules,
                ..
            } => {
                let info = TopicInfo {
                    id: topic_id,
                    max_message_size: max_message_size as usize,
                    rules,
                };
                self.lock().publish_topics.insert(topic.to_owned(), info);
                Ok(info)
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Advertise: {other:?}"
            ))),
        }
    }

    pub(crate) async fn unsubscribe(&self, topic_id: u32) -> Result<(), ClientError> {
        self.lock().subscriptions.remove(&topic_id);
        let request_id = self.next_request_id();
        match self
            .request(
                request_id,
                &Frame::Unsubscribe {
                    request_id,
                    topic_id,
                },
            )
            .await?
        {
            Frame::Ack { .. } => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to Unsubscribe: {other:?}"
            ))),
        }
    }

    /// A dropped subscription: stop dispatching to it and tell the broker, without waiting.
    pub(crate) fn forget_subscription(&self, topic_id: u32) {
        if self.lock().subscriptions.remove(&topic_id).is_some() {
            let request_id = self.next_request_id();
            self.send_control(&Frame::Unsubscribe {
                request_id,
                topic_id,
            });
        }
    }

    /// Waits until the broker has processed everything this client sent before the call.
    /// Returns the first publish the broker refused since the last flush, if any.
    pub(super) async fn flush(&self) -> Result<(), ClientError> {
        let token = self.next_request_id();
        self.request(
            token,
            &Frame::Ping {
                token: u64::from(token),
            },
        )
        .await?;
        let refused = self.lock().publish_errors.take();
        match refused {
            None => Ok(()),
            Some(PublishErrors {
                first: ClientError::Refused { code, message },
                more,
                ..
            }) if more > 0 => Err(ClientError::Refused {
                code,
                message: format!(
                    "{message} (and {more} more refused publishes since the last flush)"
                ),
            }),
            Some(PublishErrors { first, .. }) => Err(first),
        }
    }

    /// The broker's counters.
    pub(super) async fn stats(&self) -> Result<BrokerStats, ClientError> {
        let request_id = self.next_request_id();
        match self
            .request(request_id, &Frame::StatsRequest { request_id })
            .await?
        {
            Frame::Stats {
                connections,
                uptime_ms,
                topics,
                config,
                ..
            } => Ok(BrokerStats {
                connections,
                uptime_ms,
                topics,
                config,
            }),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to StatsRequest: {other:?}"
            ))),
        }
    }

    /// Asks the broker to re-read its config file now, and waits for the outcome. A failed
    /// reload is an `Ok` report with [`ReloadOutcome::Failed`]: the broker answered, and kept
    /// its running config.
    pub(super) async fn reload(&self) -> Result<ReloadReport, ClientError> {
        let request_id = self.next_request_id();
        match self
            .request(request_id, &Frame::ReloadRequest { request_id })
            .await?
        {
            Frame::ReloadResult {
                outcome, status, ..
            } => Ok(ReloadReport { outcome, status }),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to ReloadRequest: {other:?}"
            ))),
        }
    }
}
