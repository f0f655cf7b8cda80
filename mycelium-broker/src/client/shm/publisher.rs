//! [`ShmPublisher`]: writes messages into a ring of its own, read directly by subscribers.
//!
//! - [`publish`](ShmPublisher::publish) makes each message visible at once (one Release store)
//!   and wakes subscribers only if one sleeps; [`publish_batch`](ShmPublisher::publish_batch)
//!   makes a whole batch visible with one store.
//! - The ring is lossless: when the slowest subscriber is a whole ring behind, publishing waits
//!   (spin, then a futex sleep until a subscriber reads), as `backpressure = "block"` asks.
//!   [`try_publish`](ShmPublisher::try_publish) never waits.
//! - Dropping the publisher ends its attachment: subscribers read what it published, then drop
//!   its ring.

use std::sync::Arc;
use std::time::Instant;

use mycelium_transport::shm::{PushError, RingProducer, Segment};

use crate::client::error::ClientError;
use crate::client::shm::session::Session;
use mycelium_transport::shm::queue::{address, address_in_place, Dealer, QUEUE_PREFIX};
use mycelium_transport::shm::FrameLoan;

/// How often a queue publisher with no consumer looks for one.
const NO_CONSUMER_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// How long "spin, never sleep" spins before it re-checks: long enough to never sleep in
/// practice, short enough that deadline arithmetic cannot overflow.
pub(crate) const BUSY_POLL_SPIN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A shared-memory publisher on one topic; see the module docs.
pub struct ShmPublisher {
    session: Arc<Session>,
    topic: String,
    topic_id: u32,
    attachment: u32,
    max_message_size: usize,
    producer: RingProducer,
    /// Queue topics: who gets the next message, and the addressed frame being built.
    queue: Option<(Dealer, Vec<u8>)>,
    /// Keeps the memfd open for as long as the producer writes to its mapping.
    _segment: Segment,
}

impl std::fmt::Debug for ShmPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmPublisher")
            .field("topic", &self.topic)
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

impl ShmPublisher {
    pub(crate) fn new(
        session: Arc<Session>,
        topic: &str,
        topic_id: u32,
        attachment: u32,
        max_message_size: usize,
        queue: bool,
        segment: Segment,
    ) -> Result<ShmPublisher, ClientError> {
        let fail = |error: String| {
            session.detach(attachment);
            ClientError::Shm(error)
        };
        let region = segment.ring_region().map_err(|e| fail(e.to_string()))?;
        let producer = RingProducer::adopt(&region).map_err(|e| fail(e.to_string()))?;
        // Messages up to the topic's limit must fit the ring; the broker sizes rings so.
        let prefix = if queue { QUEUE_PREFIX } else { 0 };
        let max_message_size = max_message_size.min(producer.max_payload().saturating_sub(prefix));
        Ok(ShmPublisher {
            session,
            topic: topic.to_owned(),
            topic_id,
            attachment,
            max_message_size,
            producer,
            queue: queue.then(|| (Dealer::default(), Vec::new())),
            _segment: segment,
        })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic's id in this broker run.
    pub fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// The largest payload this publisher accepts.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn check_size(&self, payload: &[u8]) -> Result<(), ClientError> {
        if payload.len() > self.max_message_size {
            return Err(ClientError::MessageTooLarge {
                topic: self.topic.clone(),
                size: payload.len(),
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    /// Writes one message into the ring, waiting while the ring is full (and, on a queue
    /// topic, while no consumer is there to take it).
    fn push(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let options = self.session.options();
        let spin = if options.busy_poll {
            BUSY_POLL_SPIN
        } else {
            options.spin
        };
        let slot = self.next_consumer()?;
        let frame = match (&mut self.queue, slot) {
            (Some((_, frame)), Some(slot)) => {
                address(frame, slot, payload);
                frame.as_slice()
            }
            _ => payload,
        };
        self.producer
            .push_blocking(frame, spin, None)
            .map_err(|error| match error {
                PushError::TooLarge { len, max } => ClientError::MessageTooLarge {
                    topic: self.topic.clone(),
                    size: len,
                    max,
                },
                other => ClientError::Shm(other.to_string()),
            })
    }

    /// Queue topics: the consumer slot the next message goes to, waiting up to the request
    /// timeout for a consumer to appear (the message waits with the publisher: no broker
    /// holds a backlog on this path). `None` on a fanout topic.
    fn next_consumer(&mut self) -> Result<Option<usize>, ClientError> {
        let Some((dealer, _)) = &mut self.queue else {
            return Ok(None);
        };
        let deadline = Instant::now() + self.session.options().request_timeout;
        loop {
            if let Some(slot) = dealer.next(&self.producer) {
                return Ok(Some(slot));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::NoConsumer {
                    topic: self.topic.clone(),
                    waited: self.session.options().request_timeout,
                });
            }
            self.producer.publish_and_wake().ok();
            std::thread::sleep(NO_CONSUMER_POLL);
        }
    }

    /// Publishes one message: visible to subscribers when this returns.
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`]; nothing else fails on the data path (a full ring
    /// makes this wait).
    pub fn publish(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.check_size(payload)?;
        self.push(payload)?;
        self.wake();
        Ok(())
    }

    /// Publishes several messages, made visible together (one store for the batch, unless
    /// the ring fills on the way).
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`] before anything is written, if any payload is too
    /// large.
    pub fn publish_batch(&mut self, payloads: &[&[u8]]) -> Result<(), ClientError> {
        for payload in payloads {
            self.check_size(payload)?;
        }
        for payload in payloads {
            self.push(payload)?;
        }
        self.wake();
        Ok(())
    }

    /// Publishes one message if the ring has room now; `Ok(false)` (nothing written) when the
    /// slowest subscriber is a whole ring behind.
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`].
    pub fn try_publish(&mut self, payload: &[u8]) -> Result<bool, ClientError> {
        self.check_size(payload)?;
        let frame = match &mut self.queue {
            None => payload,
            Some((dealer, frame)) => {
                let Some(slot) = dealer.next(&self.producer) else {
                    return Ok(false);
                };
                address(frame, slot, payload);
                frame.as_slice()
            }
        };
        match self.producer.try_push(frame) {
            Ok(()) => {
                self.wake();
                Ok(true)
            }
            Err(PushError::Full) => {
                // try_push may have published earlier frames while looking for room.
                self.wake();
                if let Some((dealer, _)) = &mut self.queue {
                    // The slot dealt to may be the slow (or dead) one: choose afresh.
                    dealer.reset();
                }
                Ok(false)
            }
            Err(other) => Err(ClientError::Shm(other.to_string())),
        }
    }

    /// Lends `len` bytes of the ring to write the next message in place (zero copy), waiting
    /// while the ring is full (and, on a queue topic, for a consumer). The message is published
    /// by [`ShmLoan::commit`]; dropping the loan publishes nothing.
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`] for a `len` above the topic's limit.
    pub fn loan(&mut self, len: usize) -> Result<ShmLoan<'_>, ClientError> {
        if len > self.max_message_size {
            return Err(ClientError::MessageTooLarge {
                topic: self.topic.clone(),
                size: len,
                max: self.max_message_size,
            });
        }
        let options = self.session.options();
        let spin = if options.busy_poll {
            BUSY_POLL_SPIN
        } else {
            options.spin
        };
        let recipient = self.next_consumer()?;
        let prefix = if recipient.is_some() { QUEUE_PREFIX } else { 0 };
        let mut loan = self
            .producer
            .loan_blocking(prefix + len, spin, None)
            .map_err(|error| ClientError::Shm(error.to_string()))?;
        if let Some(slot) = recipient {
            address_in_place(&mut loan.as_mut_slice()[..QUEUE_PREFIX], slot);
        }
        Ok(ShmLoan {
            loan,
            prefix,
            topic: &self.topic,
        })
    }

    /// Publishes what is pushed and wakes sleeping subscribers; a failed wake syscall only
    /// delays them until their own timeout, so it is logged, not returned.
    fn wake(&mut self) {
        if let Err(error) = self.producer.publish_and_wake() {
            tracing::warn!(%error, topic = %self.topic, "waking shared-memory subscribers failed");
        }
    }
}

/// Bytes of the ring lent by [`ShmPublisher::loan`]: write the message into
/// [`as_mut_slice`](Self::as_mut_slice), then [`commit`](Self::commit).
pub struct ShmLoan<'a> {
    loan: FrameLoan<'a>,
    /// Bytes of queue address before the message.
    prefix: usize,
    topic: &'a str,
}

impl std::fmt::Debug for ShmLoan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLoan")
            .field("topic", &self.topic)
            .field("len", &(self.loan.len() - self.prefix))
            .finish()
    }
}

impl ShmLoan<'_> {
    /// The lent bytes. Their contents before writing are unspecified.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let prefix = self.prefix;
        &mut self.loan.as_mut_slice()[prefix..]
    }

    /// Publishes the message (all the lent bytes): visible to subscribers when this returns.
    pub fn commit(self) {
        let len = self.loan.len() - self.prefix;
        self.commit_len(len);
    }

    /// Publishes the first `len` lent bytes as the message (for a message serialised in place
    /// whose size was known only afterwards); a `len` above the loan is clamped to it.
    pub fn commit_len(self, len: usize) {
        let producer = self.loan.commit_len(self.prefix + len);
        if let Err(error) = producer.publish_and_wake() {
            tracing::warn!(%error, topic = %self.topic, "waking shared-memory subscribers failed");
        }
    }
}

impl Drop for ShmPublisher {
    fn drop(&mut self) {
        self.wake();
        self.session.detach(self.attachment);
    }
}
