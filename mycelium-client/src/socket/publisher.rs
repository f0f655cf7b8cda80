//! [`SocketPublisher`]: publishing over the socket connection.
//!
//! - Publishing appends the message to the connection's outgoing queue under a short lock
//!   and returns; the writer task sends it. A full queue ([`PUBLISH_QUEUE_MESSAGES`]) makes
//!   `publish` wait: backpressure, not unbounded memory.
//! - A publisher resolves its topic once, and learns from the broker's answer what the topic
//!   asks of its messages ([`MessageRules`]). The payload limit, and the header limits of a
//!   message with headers, are checked before queueing: a message past them is never sent.
//! - On a topic that does not stamp, a message without headers is a plain `Publish` frame,
//!   exactly as before envelopes existed. On a topic that stamps, every message gets an id and
//!   a timestamp from the publisher's [`Stamper`] (one clock read), and goes as a
//!   `PublishEnvelope`, as does any message with headers.

use std::sync::{Arc, Mutex};

use mycelium_transport::envelope::{Envelope, Headers, Stamper};
use mycelium_transport::outbox::Appended;
use mycelium_transport::MessageRules;

use crate::error::{ClientError, HeaderLimit};
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
    /// Set when the topic stamps its messages. Shared by the publisher's clones, and held
    /// from the stamp to the queueing of its message, so that ids are distinct and follow
    /// the order of the messages.
    stamper: Option<Arc<Mutex<Stamper>>>,
}

impl SocketPublisher {
    /// A publisher on `topic`, resolved to `info`.
    pub(super) fn new(shared: Arc<Shared>, topic: &str, info: TopicInfo) -> SocketPublisher {
        SocketPublisher {
            shared,
            topic: Arc::from(topic),
            info,
            stamper: info
                .rules
                .stamp
                .then(|| Arc::new(Mutex::new(Stamper::new()))),
        }
    }

    /// Publishes one message; see `SocketClient::publish`.
    pub(crate) async fn publish(&self, payload: &[u8]) -> Result<(), ClientError> {
        match &self.stamper {
            None => {
                self.shared
                    .publish(&self.topic, self.info, &[payload])
                    .await
            }
            Some(stamper) => {
                self.shared
                    .publish_enveloped(&self.topic, self.info, Some(stamper), None, payload)
                    .await
            }
        }
    }

    /// Publishes one message with exactly `envelope` (a request or a reply: the caller
    /// stamps it), waiting while the outgoing queue is full.
    pub(crate) async fn publish_envelope(
        &self,
        envelope: &Envelope<'_>,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        check_payloads(&self.topic, self.info, &[payload])?;
        if let Some(headers) = envelope.headers {
            check_headers(&self.topic, &self.info.rules, headers)?;
        }
        loop {
            match self.shared.outbox.append_enveloped(
                self.info.id,
                envelope,
                payload,
                PUBLISH_QUEUE_MESSAGES,
            ) {
                Ok(Appended::Queued(n)) if n > 0 => return Ok(()),
                Ok(Appended::Queued(_)) => {
                    self.shared
                        .outbox
                        .wait_for_room(self.info.id, PUBLISH_QUEUE_MESSAGES)
                        .await
                }
                Ok(Appended::Closed) => return Err(self.shared.gone_error()),
                Err(_) => {
                    return Err(ClientError::MessageTooLarge {
                        topic: self.topic.to_string(),
                        size: envelope.len().saturating_add(payload.len()),
                        max: self.info.max_message_size,
                    })
                }
            }
        }
    }

    /// Publishes one message with `headers` (stamped too when the topic stamps). Fails with
    /// [`ClientError::HeadersTooLarge`], sending nothing, past the topic's header limits.
    pub(crate) async fn publish_with(
        &self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.shared
            .publish_enveloped(
                &self.topic,
                self.info,
                self.stamper.as_deref(),
                Some(headers),
                payload,
            )
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
        if let Some(stamper) = &self.stamper {
            return self.shared.try_append_enveloped(
                &self.topic,
                self.info,
                Some(stamper),
                None,
                payload,
            );
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

    /// Publishes several messages in order with one lock (one lock each when the topic
    /// stamps).
    pub(crate) async fn publish_batch(&self, payloads: &[&[u8]]) -> Result<(), ClientError> {
        let Some(stamper) = &self.stamper else {
            return self.shared.publish(&self.topic, self.info, payloads).await;
        };
        check_payloads(&self.topic, self.info, payloads)?;
        for payload in payloads {
            self.shared
                .publish_enveloped(&self.topic, self.info, Some(stamper), None, payload)
                .await?;
        }
        Ok(())
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

/// Fails if any payload exceeds the topic's limit.
pub(super) fn check_payloads(
    topic: &str,
    info: TopicInfo,
    payloads: &[&[u8]],
) -> Result<(), ClientError> {
    match payloads.iter().find(|p| p.len() > info.max_message_size) {
        Some(big) => Err(ClientError::MessageTooLarge {
            topic: topic.to_owned(),
            size: big.len(),
            max: info.max_message_size,
        }),
        None => Ok(()),
    }
}

/// Fails if `headers` break one of the topic's header limits.
pub(super) fn check_headers(
    topic: &str,
    rules: &MessageRules,
    headers: &Headers,
) -> Result<(), ClientError> {
    match HeaderLimit::broken_by(rules, headers) {
        None => Ok(()),
        Some(limit) => Err(ClientError::HeadersTooLarge {
            topic: topic.to_owned(),
            limit,
        }),
    }
}

impl Shared {
    pub(super) async fn publish(
        &self,
        topic: &str,
        info: TopicInfo,
        payloads: &[&[u8]],
    ) -> Result<(), ClientError> {
        check_payloads(topic, info, payloads)?;
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

    /// Publishes one message stamped by `stamper` (if any) and carrying `headers` (if any),
    /// waiting while the outgoing queue is full. Limits are checked first: past one, nothing
    /// is sent.
    pub(super) async fn publish_enveloped(
        &self,
        topic: &str,
        info: TopicInfo,
        stamper: Option<&Mutex<Stamper>>,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        check_payloads(topic, info, &[payload])?;
        if let Some(headers) = headers {
            check_headers(topic, &info.rules, headers)?;
        }
        while !self.try_append_enveloped(topic, info, stamper, headers, payload)? {
            self.outbox
                .wait_for_room(info.id, PUBLISH_QUEUE_MESSAGES)
                .await;
        }
        Ok(())
    }

    /// Queues one message as `publish_enveloped` does if the queue has room now; `false`
    /// (nothing queued) when it has not. The limits must have been checked. A stamp taken for
    /// a message not queued is not used again: ids stay distinct and increasing, with gaps.
    pub(super) fn try_append_enveloped(
        &self,
        topic: &str,
        info: TopicInfo,
        stamper: Option<&Mutex<Stamper>>,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<bool, ClientError> {
        let headers = headers.filter(|h| !h.is_empty());
        // Held until the message is queued: ids follow the queue's order.
        let mut stamper = stamper.map(|s| s.lock().unwrap_or_else(|p| p.into_inner()));
        if stamper.is_none() && headers.is_none() {
            return match self
                .outbox
                .append_messages(info.id, &[payload], PUBLISH_QUEUE_MESSAGES)
            {
                Appended::Closed => Err(self.gone_error()),
                Appended::Queued(n) => Ok(n > 0),
            };
        }
        let envelope = Envelope {
            stamp: stamper.as_mut().map(|s| s.stamp()),
            headers,
            ..Envelope::default()
        };
        match self
            .outbox
            .append_enveloped(info.id, &envelope, payload, PUBLISH_QUEUE_MESSAGES)
        {
            Ok(Appended::Closed) => Err(self.gone_error()),
            Ok(Appended::Queued(n)) => Ok(n > 0),
            Err(_) => Err(ClientError::MessageTooLarge {
                topic: topic.to_owned(),
                size: envelope.len().saturating_add(payload.len()),
                max: info.max_message_size,
            }),
        }
    }
}
