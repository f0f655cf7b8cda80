//! [`Loan`]: bytes of a publisher's ring (or of a payload segment) lent to write a message in
//! place, published by [`Loan::commit`].
//!
//! - A message that fits the ring is written into the ring's next frame (zero copy); on a
//!   `drop_oldest` or `drop_newest` topic into a buffer copied in at commit.
//! - A larger message is written into a payload segment made for it, handed to the broker at
//!   commit, as [`ShmPublisher::publish`] does.
//! - On a topic that stamps, the envelope (the stamp, taken when the loan is made) is written
//!   before the lent bytes, and the frame is marked [`FrameFlags::ENVELOPE`] at commit.

use bytes::BytesMut;
use mycelium_transport::shm::queue::{address_in_place, QUEUE_PREFIX};
use mycelium_transport::shm::{FrameFlags, FrameLoan, PayloadWriter, PushError, RingProducer};

use crate::error::{ClientError, PublishError};
use crate::shm::publisher::ShmPublisher;
use crate::shm::watch::wait_in_slices;

impl ShmPublisher {
    /// Lends `len` bytes of the ring to write the next message in place (zero copy), waiting
    /// while the ring is full (and, on a queue topic, for a consumer). The message is published
    /// by [`Loan::commit`]; dropping the loan publishes nothing.
    ///
    /// On a `drop_oldest` topic (a lossy ring, whose bytes readers may be copying while they
    /// are overwritten, so the transport lends none: `PushError::LossyLoan`) and on a
    /// `drop_newest` topic (which must not wait for room to lend) the loan is a buffer of the
    /// publisher's instead, copied into the ring at commit: it works the same, with one copy.
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`] for a `len` above the topic's limit; the end of the
    /// session or attachment as for [`publish`](Self::publish).
    pub(crate) fn loan(&mut self, len: usize) -> Result<Loan<'_>, ClientError> {
        if len > self.max_message_size {
            return Err(ClientError::MessageTooLarge {
                topic: self.topic.clone(),
                size: len,
                max: self.max_message_size,
            });
        }
        self.watch.count(&self.session, self.attachment, 1)?;
        let spin = self.spin();
        let recipient = self.next_consumer()?;
        let mut envelope = BytesMut::new();
        let flags = FrameFlags::new(false, self.envelope_into(None, &mut envelope));
        if self.needs_segment(envelope.len() + len) {
            let mut writer = self.new_segment(envelope.len() + len)?;
            writer.as_mut_slice()[..envelope.len()].copy_from_slice(&envelope);
            return Ok(Loan {
                inner: LoanInner::Segment {
                    publisher: self,
                    writer,
                    recipient,
                    prefix: envelope.len(),
                    flags,
                },
            });
        }
        let address = if recipient.is_some() { QUEUE_PREFIX } else { 0 };
        let prefix = address + envelope.len();
        if self.producer.geometry().lossy || self.producer.drops_when_full() {
            // The copying fallback (see above), kept apart from the zero-copy path.
            let mut buf = vec![0; prefix + len];
            if let Some(slot) = recipient {
                address_in_place(&mut buf[..QUEUE_PREFIX], slot);
            }
            buf[address..prefix].copy_from_slice(&envelope);
            return Ok(Loan {
                inner: LoanInner::Copy {
                    producer: &mut self.producer,
                    buf,
                    prefix,
                    flags,
                    topic: &self.topic,
                },
            });
        }
        // Wait for room in slices (a loan cannot be taken out of a closure that is retried),
        // then take it: room only grows until the next push, so the loan does not wait.
        let producer = &mut self.producer;
        while !producer.has_room(prefix + len) {
            wait_in_slices(
                spin,
                &mut self.watch,
                &self.session,
                self.attachment,
                |spin, slice| producer.loan_blocking(prefix + len, spin, slice).map(drop),
            )?
            .map_err(|error| ClientError::Shm(error.to_string()))?;
        }
        let mut loan = producer
            .loan_blocking(prefix + len, spin, None)
            .map_err(|error| ClientError::Shm(error.to_string()))?;
        if let Some(slot) = recipient {
            address_in_place(&mut loan.as_mut_slice()[..QUEUE_PREFIX], slot);
        }
        loan.as_mut_slice()[address..prefix].copy_from_slice(&envelope);
        Ok(Loan {
            inner: LoanInner::Ring {
                loan,
                prefix,
                flags,
                topic: &self.topic,
            },
        })
    }
}

/// Bytes lent by [`Publisher::loan`](crate::blocking::Publisher::loan): write the message into
/// [`as_mut_slice`](Self::as_mut_slice), then [`commit`](Self::commit). For a message that fits
/// the ring they are the ring's own bytes; for a larger one, a payload segment made for it.
/// Either way the message is written once, in place.
pub struct Loan<'a> {
    inner: LoanInner<'a>,
}

/// Where a loan's bytes are.
enum LoanInner<'a> {
    /// The next frame's bytes in the ring (zero copy).
    Ring {
        loan: FrameLoan<'a>,
        /// Bytes of queue address and envelope before the lent bytes.
        prefix: usize,
        /// The frame's flags: [`FrameFlags::ENVELOPE`] when an envelope is written.
        flags: FrameFlags,
        topic: &'a str,
    },
    /// A buffer copied into the ring at commit: a lossy ring lends no bytes, and a
    /// `drop_newest` ring must not wait for room to lend (see [`ShmPublisher::loan`]).
    Copy {
        producer: &'a mut RingProducer,
        buf: Vec<u8>,
        /// Bytes of queue address and envelope before the lent bytes.
        prefix: usize,
        /// As for `Ring`.
        flags: FrameFlags,
        topic: &'a str,
    },
    /// A payload segment, handed over on commit.
    Segment {
        publisher: &'a mut ShmPublisher,
        writer: PayloadWriter,
        /// Queue topics: the consumer slot dealt to.
        recipient: Option<usize>,
        /// Bytes of envelope before the lent bytes.
        prefix: usize,
        /// As for `Ring`.
        flags: FrameFlags,
    },
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (topic, len, segment) = match &self.inner {
            LoanInner::Ring {
                loan,
                prefix,
                topic,
                ..
            } => (*topic, loan.len() - prefix, false),
            LoanInner::Copy {
                buf, prefix, topic, ..
            } => (*topic, buf.len() - prefix, false),
            LoanInner::Segment {
                publisher,
                writer,
                prefix,
                ..
            } => (publisher.topic.as_str(), writer.len() - prefix, true),
        };
        f.debug_struct("Loan")
            .field("topic", &topic)
            .field("len", &len)
            .field("segment", &segment)
            .finish()
    }
}

impl Loan<'_> {
    /// The lent bytes. Their contents before writing are unspecified.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.inner {
            LoanInner::Ring { loan, prefix, .. } => &mut loan.as_mut_slice()[*prefix..],
            LoanInner::Copy { buf, prefix, .. } => &mut buf[*prefix..],
            LoanInner::Segment { writer, prefix, .. } => &mut writer.as_mut_slice()[*prefix..],
        }
    }

    /// Bytes lent.
    pub fn len(&self) -> usize {
        match &self.inner {
            LoanInner::Ring { loan, prefix, .. } => loan.len() - prefix,
            LoanInner::Copy { buf, prefix, .. } => buf.len() - prefix,
            LoanInner::Segment { writer, prefix, .. } => writer.len() - prefix,
        }
    }

    /// Whether zero bytes were lent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishes the message (all the lent bytes): visible to subscribers when this returns.
    ///
    /// # Errors
    ///
    /// For a payload segment only: the broker refused it ([`PublishError::Refused`]), or the
    /// session is gone; the message is then not published.
    pub fn commit(self) -> Result<(), PublishError> {
        let len = self.len();
        self.commit_len(len)
    }

    /// Publishes the first `len` lent bytes as the message (for a message serialised in place
    /// whose size was known only afterwards); a `len` above the loan is clamped to it.
    ///
    /// # Errors
    ///
    /// As for [`commit`](Self::commit).
    pub fn commit_len(self, len: usize) -> Result<(), PublishError> {
        Ok(self.commit_inner(len)?)
    }

    fn commit_inner(self, len: usize) -> Result<(), ClientError> {
        match self.inner {
            LoanInner::Ring {
                loan,
                prefix,
                flags,
                topic,
            } => {
                let producer = loan.commit_flagged(prefix + len, flags);
                if let Err(error) = producer.publish_and_wake() {
                    tracing::warn!(%error, topic = %topic, "waking shared-memory subscribers failed");
                }
                Ok(())
            }
            LoanInner::Copy {
                producer,
                buf,
                prefix,
                flags,
                topic,
            } => {
                let end = buf.len().min(prefix + len);
                // The loan's length was checked against the ring's limit, so only a full
                // `drop_newest` ring refuses it: dropped and counted there.
                let pushed = match producer.try_push_marked(&buf[..end], flags) {
                    Err(PushError::Full) if producer.drops_when_full() => {
                        producer.skip_dropped(1);
                        Ok(())
                    }
                    other => other,
                };
                if let Err(error) = pushed {
                    tracing::warn!(%error, topic = %topic, "a loaned message could not be copied into the ring");
                }
                if let Err(error) = producer.publish_and_wake() {
                    tracing::warn!(%error, topic = %topic, "waking shared-memory subscribers failed");
                }
                Ok(())
            }
            LoanInner::Segment {
                publisher,
                mut writer,
                recipient,
                prefix,
                flags,
            } => {
                let len = (prefix + len).min(writer.len());
                if !publisher.needs_segment(len) {
                    // Shorter than it was lent for: it fits a frame of the ring after all
                    // (envelope included, as made for the loan).
                    let message = writer.as_mut_slice()[..len].to_vec();
                    publisher.push_flagged(&message, flags)?;
                    publisher.wake();
                    return Ok(());
                }
                publisher.publish_segment(writer, len, recipient, flags.is_envelope())
            }
        }
    }
}
