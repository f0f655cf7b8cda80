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
//! - A message too large for the ring (above its frames' largest payload, less the queue
//!   address on a queue topic) travels in a payload segment of its own: a sealed memfd of
//!   exactly its size, handed to the subscribers by the broker (`ShmSegment`), after which a
//!   small reference frame in the ring names it (`docs/shm-layout.md`, Payload segments).
//!   [`loan`](ShmPublisher::loan) of such a size lends the segment's bytes, so the message is
//!   still written in place. Each costs a round trip to the broker.
//! - Envelopes: on a topic that stamps (the grant's [`MessageRules`]) every message gets an
//!   envelope with a stamp (a UUIDv7 id and the publish time, one clock read), and
//!   [`publish_with`](ShmPublisher::publish_with) adds headers, checked here against the
//!   topic's `max_headers` and `max_header_bytes` ([`ClientError::HeadersTooLarge`]): the
//!   broker cannot refuse what is written into a ring. Envelope and payload go into one frame
//!   (or loan, or payload segment) marked [`FrameFlags::ENVELOPE`]. A message with neither
//!   is written as before, plain, byte for byte.
//! - Dropping the publisher ends its attachment: subscribers read what it published, then drop
//!   its ring.
//! - The end of its session (the broker stopped or died) or of its attachment (the broker
//!   detached it: its topic was removed by a reload) is learnt from the control socket, which
//!   the data path does not touch on every message: a publishing call looks at it before
//!   writing once [`LOOK_EVERY`](crate::shm::watch::LOOK_EVERY) messages were written since the last look, a wait for room
//!   (or for a queue consumer) looks at least every [`WAIT_SLICE`](crate::shm::watch::WAIT_SLICE), and
//!   [`check`](ShmPublisher::check) looks at once. From then on every publishing call returns
//!   the end: [`ClientError::BrokerGone`], or [`ClientError::Refused`] with the reason the
//!   broker gave (`TopicRemoved`). **The guarantee**: once the end is readable on the control
//!   socket (the broker's `ShmDetached` sent, or its process gone), at most `LOOK_EVERY - 1`
//!   more messages (or the messages of one `publish_batch` call, if more) are written into the
//!   ring before a publishing call fails; they are lost, silently, as is what was written
//!   after the end and before it was readable (a ring nobody reads any more: the broker freed
//!   its slots, or is dead). One exception stretches the bound: a look due while another
//!   thread of the same [`ShmClient`](crate::shm::ShmClient) holds the control
//!   session is put off by [`LOOK_RETRY`](crate::shm::watch::LOOK_RETRY) messages (that thread files what it reads, and the
//!   next look finds it). A publisher that must not lose a message unawares calls `check`
//!   after it (a syscall), as `mycelium pub --transport shm` does when it reads its input.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use mycelium_transport::envelope::{Envelope, Headers, Stamper};
use mycelium_transport::shm::reference::{SegmentRef, REFERENCE_LEN};
use mycelium_transport::shm::{FrameFlags, PayloadWriter, PushError, RingProducer, Segment};
use mycelium_transport::{ErrorCode, MessageRules, NO_SLOT};

use crate::error::{ClientError, HeaderLimit};
use crate::shm::options::BUSY_POLL_SPIN;
use crate::shm::session::{GrantedAttachment, Look, Session};
use crate::shm::watch::{wait_in_slices, Watch};
use mycelium_transport::shm::queue::{address, address_in_place, Dealer, QUEUE_PREFIX};

/// How often a queue publisher with no consumer looks for one.
const NO_CONSUMER_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// A shared-memory publisher on one topic; see the module docs.
pub(crate) struct ShmPublisher {
    pub(super) session: Arc<Session>,
    pub(super) topic: String,
    pub(super) topic_id: u32,
    pub(super) attachment: u32,
    pub(super) max_message_size: usize,
    pub(super) producer: RingProducer,
    /// Queue topics: who gets the next message, and the addressed frame being built.
    pub(super) queue: Option<(Dealer, Vec<u8>)>,
    /// The id of the next payload segment (increasing, as the broker requires).
    pub(super) next_segment: u64,
    /// When to look at the control session next, and the end it found.
    pub(super) watch: Watch,
    /// What the topic asks of each message: header limits, and whether to stamp.
    pub(super) rules: MessageRules,
    /// Stamps every message, when the topic asks for stamps.
    pub(super) stamper: Option<Stamper>,
    /// An enveloped message being built (envelope, then payload), kept for its capacity.
    pub(super) scratch: BytesMut,
    /// Keeps the memfd open for as long as the producer writes to its mapping.
    pub(super) _segment: Segment,
}

impl std::fmt::Debug for ShmPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmPublisher")
            .field("topic", &self.topic)
            .field("topic_id", &self.topic_id)
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

impl ShmPublisher {
    pub(crate) fn new(
        session: Arc<Session>,
        topic: &str,
        grant: GrantedAttachment,
        segment: Segment,
    ) -> Result<ShmPublisher, ClientError> {
        let GrantedAttachment {
            attachment,
            topic_id,
            max_message_size,
            queue,
            rules,
            ..
        } = grant;
        let fail = |error: String| {
            session.detach(attachment);
            ClientError::Shm(error)
        };
        let region = segment.ring_region().map_err(|e| fail(e.to_string()))?;
        let producer = RingProducer::adopt(&region).map_err(|e| fail(e.to_string()))?;
        if producer.max_payload() < QUEUE_PREFIX + REFERENCE_LEN {
            return Err(fail("the ring is too small for a reference frame".into()));
        }
        // Larger messages than the ring's frames take travel in payload segments; the limit
        // is the topic's, and a reference frame's length field is a u32.
        let max_message_size = max_message_size.min(u32::MAX as usize);
        Ok(ShmPublisher {
            session,
            topic: topic.to_owned(),
            topic_id,
            attachment,
            max_message_size,
            producer,
            queue: queue.then(|| (Dealer::default(), Vec::new())),
            next_segment: 0,
            watch: Watch::new(),
            rules,
            stamper: rules.stamp.then(Stamper::new),
            scratch: BytesMut::new(),
            _segment: segment,
        })
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The largest payload this publisher accepts.
    pub(crate) fn max_message_size(&self) -> usize {
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

    /// Refuses `headers` beyond the topic's `max_headers` or `max_header_bytes`.
    pub(super) fn check_headers(&self, headers: &Headers) -> Result<(), ClientError> {
        match HeaderLimit::broken_by(&self.rules, headers) {
            None => Ok(()),
            Some(limit) => Err(ClientError::HeadersTooLarge {
                topic: self.topic.clone(),
                limit,
            }),
        }
    }

    /// Writes the envelope of the next message (a stamp if the topic stamps, `headers` if
    /// any) into `dst`; `false` (nothing written) when the message needs none.
    pub(super) fn envelope_into(&mut self, headers: Option<&Headers>, dst: &mut BytesMut) -> bool {
        let envelope = Envelope {
            stamp: self.stamper.as_mut().map(Stamper::stamp),
            headers: headers.filter(|h| !h.is_empty()),
            ..Envelope::default()
        };
        if envelope.is_plain() {
            return false;
        }
        envelope.encode(dst);
        true
    }

    /// Writes one message with its envelope (see [`envelope_into`](Self::envelope_into)) as
    /// [`push`](Self::push) does.
    fn push_enveloped(
        &mut self,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.with_message(
            |publisher, dst| publisher.envelope_into(headers, dst),
            payload,
            Self::push_flagged,
        )
    }

    /// Builds a message in the scratch buffer (whatever `envelope` writes, true if it wrote an
    /// envelope, then `payload`) and hands it to `push` with its frame flags.
    fn with_message<R>(
        &mut self,
        envelope: impl FnOnce(&mut Self, &mut BytesMut) -> bool,
        payload: &[u8],
        push: impl FnOnce(&mut Self, &[u8], FrameFlags) -> R,
    ) -> R {
        let mut message = std::mem::take(&mut self.scratch);
        message.clear();
        let flags = FrameFlags::new(false, envelope(self, &mut message));
        message.extend_from_slice(payload);
        let result = push(self, &message, flags);
        self.scratch = message;
        result
    }

    /// Writes one message into the ring, waiting while the ring is full (and, on a queue
    /// topic, while no consumer is there to take it).
    #[inline]
    fn push(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.push_flagged(payload, FrameFlags::PLAIN)
    }

    /// [`push`](Self::push) of `message` (with its envelope, if `flags` says so).
    pub(super) fn push_flagged(
        &mut self,
        message: &[u8],
        flags: FrameFlags,
    ) -> Result<(), ClientError> {
        let payload = message;
        let options = self.session.options();
        let spin = if options.busy_poll {
            BUSY_POLL_SPIN
        } else {
            options.spin
        };
        let slot = self.next_consumer()?;
        if self.needs_segment(payload.len()) {
            let mut writer = self.new_segment(payload.len())?;
            writer.as_mut_slice().copy_from_slice(payload);
            return self.publish_segment(writer, payload.len(), slot, flags.is_envelope());
        }
        let frame = match (&mut self.queue, slot) {
            (Some((_, frame)), Some(slot)) => {
                address(frame, slot, payload);
                frame.as_slice()
            }
            _ => payload,
        };
        let producer = &mut self.producer;
        let pushed = if producer.drops_when_full() {
            // drop_newest: never wait; a message that does not fit is counted by the ring.
            match producer.try_push_marked(frame, flags) {
                Err(PushError::Full) => {
                    producer.skip_dropped(1);
                    Ok(())
                }
                other => other,
            }
        } else {
            // A lossy ring never reports Full, so this waits only on a lossless one (block).
            // The first try is outside the sliced wait, which reads the clock on entry: the
            // data path with room reads none (as `push_blocking` without a timeout).
            match producer.try_push_marked(frame, flags) {
                Err(PushError::Full) => wait_in_slices(
                    spin,
                    &mut self.watch,
                    &self.session,
                    self.attachment,
                    |spin, slice| producer.push_marked_blocking(frame, flags, spin, slice),
                )?,
                other => other,
            }
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

    /// Whether a message of `len` bytes is too large for a frame of the ring.
    pub(super) fn needs_segment(&self, len: usize) -> bool {
        let prefix = if self.queue.is_some() {
            QUEUE_PREFIX
        } else {
            0
        };
        len.saturating_add(prefix) > self.producer.max_payload()
    }

    /// A payload segment of `len` bytes to write a message into.
    pub(super) fn new_segment(&mut self, len: usize) -> Result<PayloadWriter, ClientError> {
        let name = format!("mycelium:{}:msg:{}", self.topic, self.next_segment);
        PayloadWriter::create(&name, len).map_err(|e| ClientError::Shm(e.to_string()))
    }

    /// Bytes of the reference frame's payload for a message to `slot` (a queue consumer).
    fn reference_frame_len(slot: Option<usize>) -> usize {
        REFERENCE_LEN + if slot.is_some() { QUEUE_PREFIX } else { 0 }
    }

    /// Seals `writer`, whose first `len` bytes are the message, hands it to the broker (which
    /// passes it to the readers of the ring and answers once they have it), then writes the
    /// reference frame (addressed to `slot` on a queue topic, marked
    /// [`FrameFlags::ENVELOPE`] when the message begins with an envelope) and publishes it.
    ///
    /// On a `drop_newest` topic nothing waits: when the ring has no room for the reference
    /// frame now, the message is dropped (counted, as for a message in the ring) before its
    /// segment leaves, so no reader is handed a segment that no frame will ever name.
    pub(super) fn publish_segment(
        &mut self,
        writer: PayloadWriter,
        len: usize,
        slot: Option<usize>,
        enveloped: bool,
    ) -> Result<(), ClientError> {
        if self.producer.drops_when_full()
            && !self.producer.has_room(Self::reference_frame_len(slot))
        {
            self.producer.skip_dropped(1);
            self.wake();
            return Ok(());
        }
        let len32 = u32::try_from(len).map_err(|_| ClientError::MessageTooLarge {
            topic: self.topic.clone(),
            size: len,
            max: self.max_message_size,
        })?;
        let sealed = writer.seal().map_err(|e| ClientError::Shm(e.to_string()))?;
        let reference = SegmentRef {
            segment: self.next_segment,
            len: len32,
        };
        self.next_segment += 1;
        // The broker counts a reader's segments in flight by ring positions: every earlier
        // reference frame must be published before the next segment is handed over.
        self.wake();
        let recipient = slot.map_or(NO_SLOT, |slot| slot as u32);
        let sent = self
            .session
            .send_segment(self.attachment, reference, recipient, sealed.fd());
        if let Err(refused @ ClientError::Refused { .. }) = sent {
            return Err(self.broker_reason(refused));
        }
        sent?;
        // Our fd is closed here; the readers hold theirs.
        drop(sealed);
        let mut frame = Vec::with_capacity(QUEUE_PREFIX + REFERENCE_LEN);
        if let Some(slot) = slot {
            frame.resize(QUEUE_PREFIX, 0);
            address_in_place(&mut frame, slot);
        }
        frame.extend_from_slice(&reference.encode());
        let spin = self.spin();
        let producer = &mut self.producer;
        wait_in_slices(
            spin,
            &mut self.watch,
            &self.session,
            self.attachment,
            |spin, slice| {
                let flags = FrameFlags::new(true, enveloped);
                producer.push_marked_blocking(&frame, flags, spin, slice)
            },
        )?
        .map_err(|error| ClientError::Shm(error.to_string()))?;
        self.wake();
        Ok(())
    }

    /// The error to report for a request the broker refused: a refusal of our own attachment
    /// (`NotSubscribed`: it has no such attachment) means the broker ended it, and the reason
    /// it gave (`ShmDetached`, sent around the same time) is the one to report, not the echo.
    fn broker_reason(&mut self, refused: ClientError) -> ClientError {
        if refused.code() != Some(ErrorCode::NotSubscribed) {
            return refused;
        }
        let wait = Look::Wait(self.session.options().request_timeout);
        match self.watch.look(&self.session, self.attachment, wait) {
            Err(reason) => reason,
            Ok(_) => refused,
        }
    }

    pub(super) fn spin(&self) -> std::time::Duration {
        let options = self.session.options();
        if options.busy_poll {
            BUSY_POLL_SPIN
        } else {
            options.spin
        }
    }

    /// Queue topics: the consumer slot the next message goes to, waiting up to the request
    /// timeout for a consumer to appear (the message waits with the publisher: no broker
    /// holds a backlog on this path). `None` on a fanout topic.
    pub(super) fn next_consumer(&mut self) -> Result<Option<usize>, ClientError> {
        let Some((dealer, _)) = &mut self.queue else {
            return Ok(None);
        };
        // The clock is read only once no consumer was found (a clock read on every message
        // cost the queue path a good part of its throughput).
        if let Some(slot) = dealer.next(&self.producer) {
            return Ok(Some(slot));
        }
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
            // No consumer may be coming because there is no broker any more.
            self.watch
                .look(&self.session, self.attachment, Look::IfFree)?;
            self.producer.publish_and_wake().ok();
            std::thread::sleep(NO_CONSUMER_POLL);
        }
    }

    /// Messages this publisher dropped because its ring was full (`drop_newest` topics; always
    /// 0 on others). The same count is in the ring, where the broker's `dropped` stat reads it.
    pub(crate) fn dropped(&self) -> u64 {
        self.producer.dropped()
    }

    /// Publishes one message: visible to subscribers when this returns (unless the topic is
    /// `drop_newest` and the ring is full: then it is dropped and counted, see
    /// [`dropped`](Self::dropped)).
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`]; the end of the session ([`ClientError::BrokerGone`])
    /// or of the attachment ([`ClientError::Refused`] with the broker's reason), once a look
    /// at the control session found it (see the module docs: not on the very next message);
    /// nothing is written then. A full ring makes this wait, on a `block` topic.
    pub(crate) fn publish(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.check_size(payload)?;
        self.watch.count(&self.session, self.attachment, 1)?;
        if self.stamper.is_some() {
            self.push_enveloped(None, payload)?;
        } else {
            self.push(payload)?;
        }
        self.wake();
        Ok(())
    }

    /// [`publish`](Self::publish) with `headers` (and a stamp, if the topic stamps) in the
    /// message's envelope. No headers and no stamp: a plain message, as `publish` writes.
    ///
    /// # Errors
    ///
    /// [`ClientError::HeadersTooLarge`] beyond the topic's `max_headers` or
    /// `max_header_bytes`, before anything is written; otherwise as for
    /// [`publish`](Self::publish).
    pub(crate) fn publish_with(
        &mut self,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.check_size(payload)?;
        self.check_headers(headers)?;
        self.watch.count(&self.session, self.attachment, 1)?;
        self.push_enveloped(Some(headers), payload)?;
        self.wake();
        Ok(())
    }

    /// Publishes one message with exactly `envelope` (requests and replies: the caller
    /// stamps), as [`publish`](Self::publish) does.
    pub(crate) fn publish_envelope(
        &mut self,
        envelope: &Envelope<'_>,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.check_size(payload)?;
        if let Some(headers) = envelope.headers {
            self.check_headers(headers)?;
        }
        self.watch.count(&self.session, self.attachment, 1)?;
        let written = self.write_in_place(envelope.len(), payload, |frame| {
            envelope.encode_to_slice(frame).is_some()
        });
        if !written {
            self.with_message(
                |_, dst| {
                    envelope.encode(dst);
                    true
                },
                payload,
                Self::push_flagged,
            )?;
        }
        self.wake();
        Ok(())
    }

    /// [`publish_envelope`](Self::publish_envelope) of an envelope already encoded (an
    /// [`Envelope`] without headers, as [`Envelope::encode`] writes it: a requester's
    /// [`RequestEnvelope`](mycelium_transport::envelope::RequestEnvelope)).
    pub(crate) fn publish_encoded(
        &mut self,
        envelope: &[u8],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.check_size(payload)?;
        self.watch.count(&self.session, self.attachment, 1)?;
        let written = self.write_in_place(envelope.len(), payload, |frame| {
            frame.copy_from_slice(envelope);
            true
        });
        if !written {
            self.with_message(
                |_, dst| {
                    dst.extend_from_slice(envelope);
                    true
                },
                payload,
                Self::push_flagged,
            )?;
        }
        self.wake();
        Ok(())
    }

    /// Writes an envelope of `envelope_len` bytes (by `write_envelope`, given exactly those
    /// bytes; `false` if it could not) and `payload` straight into the ring's next frame (no
    /// scratch buffer to encode into and copy out of) when the message fits a frame and there
    /// is room now, on a ring that lends its bytes (lossless, not `drop_newest`, not a
    /// queue's). `false`, and nothing written, otherwise: the caller takes the general path,
    /// which waits for room.
    fn write_in_place(
        &mut self,
        envelope_len: usize,
        payload: &[u8],
        write_envelope: impl FnOnce(&mut [u8]) -> bool,
    ) -> bool {
        let len = envelope_len + payload.len();
        if self.queue.is_some()
            || self.producer.geometry().lossy
            || self.producer.drops_when_full()
            || self.needs_segment(len)
        {
            return false;
        }
        let Ok(mut loan) = self.producer.try_loan(len) else {
            return false;
        };
        let (envelope, rest) = loan.as_mut_slice().split_at_mut(envelope_len);
        if !write_envelope(envelope) {
            return false;
        }
        rest.copy_from_slice(payload);
        loan.commit_flagged(len, FrameFlags::ENVELOPE);
        true
    }

    /// Whether any subscriber reads this publisher's ring now (an active consumer slot: a
    /// shared-memory subscriber, or the broker reading it for socket subscribers). A request
    /// published to a ring nobody reads has no responder.
    pub(crate) fn has_readers(&self) -> bool {
        self.producer.active_consumers().next().is_some()
    }

    /// Looks at the control session now (a `poll` of its socket, and a read if the broker sent
    /// something): `Ok` while the broker still serves this publisher. Everything published so
    /// far is in the ring already; this tells whether anyone can still be reading it.
    ///
    /// # Errors
    ///
    /// [`ClientError::BrokerGone`] when the session is over (the broker stopped or died);
    /// [`ClientError::Refused`] with the broker's reason when it ended this attachment (its
    /// topic was removed). Every later publishing call returns the same.
    pub(crate) fn check(&mut self) -> Result<(), ClientError> {
        self.watch
            .look(&self.session, self.attachment, Look::Now)
            .map(|_| ())
    }

    /// Publishes several messages, made visible together (one store for the batch, unless
    /// the ring fills on the way).
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`] before anything is written, if any payload is too
    /// large; the end of the session or attachment as for [`publish`](Self::publish).
    pub(crate) fn publish_batch(&mut self, payloads: &[&[u8]]) -> Result<(), ClientError> {
        for payload in payloads {
            self.check_size(payload)?;
        }
        let count = u32::try_from(payloads.len()).unwrap_or(u32::MAX);
        self.watch.count(&self.session, self.attachment, count)?;
        for payload in payloads {
            if self.stamper.is_some() {
                self.push_enveloped(None, payload)?;
            } else {
                self.push(payload)?;
            }
        }
        self.wake();
        Ok(())
    }

    /// Publishes one message if the ring has room now; `Ok(false)` (nothing written) when the
    /// slowest subscriber is a whole ring behind.
    ///
    /// # Errors
    ///
    /// [`ClientError::MessageTooLarge`]; the end of the session or attachment as for
    /// [`publish`](Self::publish).
    pub(crate) fn try_publish(&mut self, payload: &[u8]) -> Result<bool, ClientError> {
        self.check_size(payload)?;
        self.watch.count(&self.session, self.attachment, 1)?;
        if self.stamper.is_none() {
            return self.try_push(payload, FrameFlags::PLAIN);
        }
        self.with_message(
            |publisher, dst| publisher.envelope_into(None, dst),
            payload,
            Self::try_push,
        )
    }

    /// The writing half of [`try_publish`](Self::try_publish): `message` (with its envelope,
    /// if `flags` says so) if the ring has room now.
    fn try_push(&mut self, message: &[u8], flags: FrameFlags) -> Result<bool, ClientError> {
        let payload = message;
        if self.needs_segment(payload.len()) {
            let slot = match &mut self.queue {
                None => None,
                Some((dealer, _)) => match dealer.next(&self.producer) {
                    Some(slot) => Some(slot),
                    None => return Ok(false),
                },
            };
            // Room for the reference frame is there before the segment's round trip to the
            // broker, and stays (only this publisher takes it): nothing waits.
            if !self.producer.has_room(Self::reference_frame_len(slot)) {
                self.wake();
                return Ok(false);
            }
            let mut writer = self.new_segment(payload.len())?;
            writer.as_mut_slice().copy_from_slice(payload);
            self.publish_segment(writer, payload.len(), slot, flags.is_envelope())?;
            return Ok(true);
        }
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
        match self.producer.try_push_marked(frame, flags) {
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

    /// Publishes what is pushed and wakes sleeping subscribers; a failed wake syscall only
    /// delays them until their own timeout, so it is logged, not returned.
    pub(super) fn wake(&mut self) {
        if let Err(error) = self.producer.publish_and_wake() {
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
