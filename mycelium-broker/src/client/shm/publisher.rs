//! [`ShmPublisher`]: writes messages into a ring of its own, read directly by subscribers.
//!
//! - [`publish`](ShmPublisher::publish) makes each message visible at once (one Release store)
//!   and wakes subscribers only if one sleeps; [`publish_batch`](ShmPublisher::publish_batch)
//!   makes a whole batch visible with one store.
//! - What a full ring does follows the topic's `backpressure`, which the broker wrote into the
//!   ring when it created it:
//!   - `block` / `disconnect` (lossless ring): when the slowest subscriber is a whole ring
//!     behind, publishing waits (spin, then a futex sleep until a subscriber reads);
//!   - `drop_newest` (lossless ring, "drop when full"): the message that does not fit is
//!     dropped and counted ([`dropped`](ShmPublisher::dropped), and in the ring, where the
//!     broker's stats read it); every subscriber of the ring misses it, since they share it;
//!   - `drop_oldest` (lossy ring): nothing waits, the oldest frames are overwritten, and a
//!     subscriber that was lapped gets [`ClientError::Lagged`] once.
//!
//!   [`try_publish`](ShmPublisher::try_publish) never waits (and counts nothing as dropped).
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
        let pushed = if self.producer.drops_when_full() {
            // drop_newest: never wait; a message that does not fit is counted by the ring.
            self.producer.try_push_or_drop(frame).map(|_| ())
        } else {
            // A lossy ring never reports Full, so this waits only on a lossless one (block).
            self.producer.push_blocking(frame, spin, None)
        };
        pushed.map_err(|error| match error {
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

    /// Messages this publisher dropped because its ring was full (`drop_newest` topics; always
    /// 0 on others). The same count is in the ring, where the broker's `dropped` stat reads it.
    pub fn dropped(&self) -> u64 {
        self.producer.dropped()
    }

    /// Publishes one message: visible to subscribers when this returns (unless the topic is
    /// `drop_newest` and the ring is full: then it is dropped and counted, see
    /// [`dropped`](Self::dropped)).
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`]; nothing else fails on the data path (a full ring
    /// makes this wait, on a `block` topic).
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
    /// On a `drop_oldest` topic (a lossy ring, whose bytes readers may be copying while they
    /// are overwritten, so the transport lends none: `PushError::LossyLoan`) and on a
    /// `drop_newest` topic (which must not wait for room to lend) the loan is a buffer of the
    /// publisher's instead, copied into the ring at commit: it works the same, with one copy.
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
        if self.producer.geometry().lossy || self.producer.drops_when_full() {
            // The copying fallback (see above), kept apart from the zero-copy path.
            let mut buf = vec![0; prefix + len];
            if let Some(slot) = recipient {
                address_in_place(&mut buf[..QUEUE_PREFIX], slot);
            }
            return Ok(ShmLoan {
                inner: LoanInner::Copy {
                    producer: &mut self.producer,
                    buf,
                },
                prefix,
                topic: &self.topic,
            });
        }
        let mut loan = self
            .producer
            .loan_blocking(prefix + len, spin, None)
            .map_err(|error| ClientError::Shm(error.to_string()))?;
        if let Some(slot) = recipient {
            address_in_place(&mut loan.as_mut_slice()[..QUEUE_PREFIX], slot);
        }
        Ok(ShmLoan {
            inner: LoanInner::Ring(loan),
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
    inner: LoanInner<'a>,
    /// Bytes of queue address before the message.
    prefix: usize,
    topic: &'a str,
}

/// Where a loan's bytes are.
enum LoanInner<'a> {
    /// In the ring itself (zero copy).
    Ring(FrameLoan<'a>),
    /// In a buffer copied into the ring at commit: a lossy ring lends no bytes, and a
    /// `drop_newest` ring must not wait for room to lend (see [`ShmPublisher::loan`]).
    Copy {
        producer: &'a mut RingProducer,
        buf: Vec<u8>,
    },
}

impl std::fmt::Debug for ShmLoan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = match &self.inner {
            LoanInner::Ring(loan) => loan.len(),
            LoanInner::Copy { buf, .. } => buf.len(),
        };
        f.debug_struct("ShmLoan")
            .field("topic", &self.topic)
            .field("len", &(len - self.prefix))
            .finish()
    }
}

impl ShmLoan<'_> {
    /// The lent bytes. Their contents before writing are unspecified.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let prefix = self.prefix;
        match &mut self.inner {
            LoanInner::Ring(loan) => &mut loan.as_mut_slice()[prefix..],
            LoanInner::Copy { buf, .. } => &mut buf[prefix..],
        }
    }

    /// Publishes the message (all the lent bytes): visible to subscribers when this returns.
    pub fn commit(self) {
        let len = match &self.inner {
            LoanInner::Ring(loan) => loan.len(),
            LoanInner::Copy { buf, .. } => buf.len(),
        } - self.prefix;
        self.commit_len(len);
    }

    /// Publishes the first `len` lent bytes as the message (for a message serialised in place
    /// whose size was known only afterwards); a `len` above the loan is clamped to it.
    pub fn commit_len(self, len: usize) {
        let producer = match self.inner {
            LoanInner::Ring(loan) => loan.commit_len(self.prefix + len),
            LoanInner::Copy { producer, buf } => {
                let end = buf.len().min(self.prefix + len);
                // The loan's length was checked against the ring's limit, so only a full
                // `drop_newest` ring refuses it: dropped and counted there.
                let pushed = if producer.drops_when_full() {
                    producer.try_push_or_drop(&buf[..end]).map(|_| ())
                } else {
                    producer.try_push(&buf[..end])
                };
                if let Err(error) = pushed {
                    tracing::warn!(%error, topic = %self.topic, "a loaned message could not be copied into the ring");
                }
                producer
            }
        };
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
