//! Request/reply for the blocking client: the same protocol as the async client's
//! (`crate::request`), with the requester reading its inbox itself.
//!
//! - One inbox subscription per client, made by the first request. Requests of one client are
//!   served one at a time (the inbox is read under a lock); a reply that answers no request
//!   waiting (one that came after its request gave up) is dropped.
//! - Over shared memory nothing but the two rings is on the path: the request goes into the
//!   topic's ring and the reply comes back in the inbox's, read with the client's spin or
//!   busy-poll settings, so a round trip is two one-hop deliveries. A ring that no subscriber
//!   reads is "no responders" once no reply came within `NO_RESPONDERS_LOOK` (100 µs; the
//!   broker does not see shared-memory requests): the ring's readers are looked at only then,
//!   off a quick reply's path. A reply already in the inbox is taken even if its responder has
//!   left since.

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use mycelium_transport::envelope::{Envelope, Headers, ReplyStatus, RequestEnvelope, Stamper};
use mycelium_transport::{Message, RecvTimeoutError};

use super::{Client, Publisher, PublisherInside, Subscription};
use crate::error::{PublishError, ReplyError};
use crate::request::{inbox_of, outcome, reply_envelope};

/// How long a request waits for its reply before it looks whether anyone reads the topic's
/// ring at all. Looking costs a cache miss on a line the responder writes with every read,
/// so a quick reply is taken without it; a ring nobody reads is still "no responders" within
/// this (as the broker's answer over the socket comes within a round trip).
const NO_RESPONDERS_LOOK: Duration = Duration::from_micros(100);

/// A blocking client's request/reply state, behind its lock.
#[derive(Default)]
pub(super) struct BlockingRequests {
    inbox: Option<Subscription>,
    /// The inbox's name, made once.
    inbox_name: String,
    /// The envelope of a request without headers (the inbox as its reply address), encoded
    /// once with the inbox.
    request_envelope: RequestEnvelope,
    /// One per topic requested or answered: few, so found by a scan (cheaper than hashing
    /// a name per call).
    publishers: Vec<(String, Publisher)>,
    stamper: Option<Stamper>,
}

impl std::fmt::Debug for BlockingRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingRequests")
            .field("inbox", &self.inbox.is_some())
            .field("publishers", &self.publishers.len())
            .finish()
    }
}

impl Client {
    /// Sends `payload` as a request on `topic` and waits up to `timeout` for the first reply;
    /// see [`crate::Client::request`].
    pub fn request(
        &self,
        topic: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ReplyError> {
        self.request_with(topic, &Headers::new(), payload, timeout)
    }

    /// [`request`](Self::request) with `headers` on the request.
    pub fn request_with(
        &self,
        topic: &str,
        headers: &Headers,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ReplyError> {
        let mut state = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        if state.inbox.is_none() {
            state.inbox_name = inbox_of(self.inner.options.client_id);
            state.request_envelope = RequestEnvelope::new(&state.inbox_name);
            state.inbox = Some(self.subscribe(&state.inbox_name)?);
        }
        let publisher = self.cached_publisher(&mut state.publishers, topic)?;
        let stamp = state.stamper.get_or_insert_with(Stamper::new).stamp();
        let envelope = Envelope {
            stamp: Some(stamp),
            reply_to: Some(&state.inbox_name),
            headers: Some(headers),
            ..Envelope::default()
        };
        if headers.is_empty() {
            let encoded = state.request_envelope.stamped(stamp);
            publisher.publish_request(encoded, &envelope, payload)?;
        } else {
            publisher.publish_envelope(&envelope, payload)?;
        }
        // Read after the request left: the time waited is the reply's, and the clock read is
        // not on the way out.
        let deadline = Instant::now() + timeout;
        let Some(inbox) = state.inbox.as_mut() else {
            return Err(ReplyError::InboxEnded);
        };
        let mut left = timeout;
        let mut readers_looked_at = false;
        loop {
            let wait = if readers_looked_at {
                left
            } else {
                left.min(NO_RESPONDERS_LOOK)
            };
            let reply = match inbox.recv_timeout(wait) {
                Ok(reply) => reply,
                Err(RecvTimeoutError::Timeout) if !readers_looked_at => {
                    readers_looked_at = true;
                    if publisher.has_readers() {
                        left = deadline.saturating_duration_since(Instant::now());
                        continue;
                    }
                    // SYNC POINT: pairs with the Release store of a leaving subscriber's slot
                    // state: a reply its responder wrote before leaving is visible now.
                    fence(Ordering::Acquire);
                    match inbox.try_recv() {
                        Ok(reply) => reply,
                        Err(_) => {
                            return Err(ReplyError::NoResponders {
                                topic: topic.to_owned(),
                            })
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ReplyError::Timeout {
                        topic: topic.to_owned(),
                        waited: timeout,
                    })
                }
                // A reply lost to a full inbox: this request times out if it was its.
                Err(RecvTimeoutError::Lagged(_)) => {
                    left = deadline.saturating_duration_since(Instant::now());
                    continue;
                }
                Err(_) => {
                    state.inbox = None;
                    return Err(ReplyError::InboxEnded);
                }
            };
            match reply.reply() {
                Some(answer) if answer.correlation == stamp.id => {
                    return outcome(topic, reply, answer)
                }
                // Late for a request that gave up, or not a reply at all.
                _ => left = deadline.saturating_duration_since(Instant::now()),
            }
        }
    }

    /// Answers `request` with `payload`; see [`crate::Client::reply`].
    pub fn reply(&self, request: &Message, payload: &[u8]) -> Result<(), PublishError> {
        self.send_reply(request, ReplyStatus::Ok, 0, payload)
    }

    /// Answers `request` with an error; see [`crate::Client::reply_error`].
    pub fn reply_error(
        &self,
        request: &Message,
        code: u16,
        message: &str,
    ) -> Result<(), PublishError> {
        self.send_reply(request, ReplyStatus::Error, code, message.as_bytes())
    }

    fn send_reply(
        &self,
        request: &Message,
        status: ReplyStatus,
        code: u16,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let (reply_to, envelope) = reply_envelope(request, status, code)?;
        let mut state = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let publisher = self.cached_publisher(&mut state.publishers, reply_to)?;
        publisher.publish_envelope(&envelope, payload)
    }

    fn cached_publisher<'a>(
        &self,
        publishers: &'a mut Vec<(String, Publisher)>,
        topic: &str,
    ) -> Result<&'a mut Publisher, PublishError> {
        let index = match publishers.iter().position(|(name, _)| name == topic) {
            Some(index) => index,
            None => {
                // A responder answers a new inbox per requester: keep a bounded few (each may
                // hold a ring), the oldest going first.
                if publishers.len() >= crate::client::MAX_CACHED_PUBLISHERS {
                    publishers.remove(0);
                }
                publishers.push((topic.to_owned(), self.publisher(topic)?));
                publishers.len() - 1
            }
        };
        Ok(&mut publishers[index].1)
    }
}

impl Publisher {
    /// Publishes one message with exactly `envelope` (requests and replies).
    pub(super) fn publish_envelope(
        &mut self,
        envelope: &Envelope<'_>,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => publisher
                .publish_envelope(envelope, payload)
                .map_err(|error| PublishError::on_topic(error, publisher.topic())),
            PublisherInside::Socket { publisher, runtime } => {
                runtime.block_on(publisher.publish_envelope(envelope, payload))
            }
        }
    }

    /// Publishes a request without headers: `envelope`, whose encoding is `encoded`. Over
    /// shared memory the encoded bytes are written as they are.
    fn publish_request(
        &mut self,
        encoded: &[u8],
        envelope: &Envelope<'_>,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        match &mut self.inner {
            PublisherInside::Shm(publisher) => publisher
                .publish_encoded(encoded, payload)
                .map_err(|error| PublishError::on_topic(error, publisher.topic())),
            PublisherInside::Socket { .. } => self.publish_envelope(envelope, payload),
        }
    }

    /// Whether anyone reads what this publisher writes (over the socket the broker answers
    /// for nobody, so: yes).
    fn has_readers(&self) -> bool {
        match &self.inner {
            PublisherInside::Shm(publisher) => publisher.has_readers(),
            PublisherInside::Socket { .. } => true,
        }
    }
}
