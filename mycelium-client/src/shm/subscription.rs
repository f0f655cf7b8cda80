//! [`ShmSubscription`]: reads every ring of its topic, one hop from each publisher.
//!
//! - It keeps the receive contract ([`mycelium_transport::receive`]) through `recv`,
//!   `try_recv`, `recv_timeout` and their buffer-reusing twins. Inside, the reading methods
//!   say what went wrong as a `ClientError`; the contract's methods turn a lost ring or
//!   message into a counted fault ([`faults`](ShmSubscription::faults)), a lag into
//!   `Lagged`, and anything else into the end. The bullets below tell the inner story.
//! - Rings: the topic's relay ring (written by the broker) and one per shared-memory
//!   publisher; the broker reserved a slot in each before handing it over. Messages of one
//!   publisher come in its order; rings are taken in turns (up to [`TURN`] messages each), so
//!   a busy publisher cannot starve a quiet one.
//! - News (a publisher joined or left) arrives on the control socket. The broker raises the
//!   `notice` word of the subscriber's relay-ring slot when it sends some (and wakes it if it
//!   sleeps), so a subscriber looks at the socket only when there is something to read: one
//!   load of its own cache line per receive call, no syscall. It also looks before every
//!   sleep and every [`NEWS_EVERY`] calls, in case a peer cleared the word. A removed ring is
//!   read to its end first.
//! - On a `drop_oldest` topic the rings are lossy: a publisher never waits for this
//!   subscription, and when it overwrites frames not yet read, the next receive that reaches
//!   that ring returns [`ClientError::Lagged`] with the number of messages lost from it, once
//!   (as tokio's `broadcast::error::RecvError::Lagged`); the call after that returns the next
//!   intact message of that ring, and then every later one in order. Frames that were
//!   overwritten while being read are never returned. Other rings (other publishers) are not
//!   affected. `skipped` counts one ring's losses: with several lapped rings, one `Lagged` per
//!   ring.
//! - On a `drop_newest` topic the rings are lossless but their publishers (and the broker, for
//!   the relay ring) drop what does not fit, for every reader of the ring: the receive that
//!   reaches the message after such a gap first returns [`ClientError::Lagged`] with the
//!   number dropped, once, and the call after that returns the message. When no message
//!   follows the gap (the end of a burst), the first receive that finds the ring empty after
//!   the messages before it returns the `Lagged` (the ring's drop announcement), and a
//!   subscription asleep in a wait is woken for it; drops that go on after that are told in
//!   turn, so a gap may come as several `Lagged`s in a row, each message counted once. A
//!   queue consumer is not told (a message dropped before it was dealt was no consumer's).
//! - A reference frame names a payload segment (a message too large for its ring): its fd
//!   came on the control socket before the frame was written (the broker answers the
//!   publisher only once it is sent), so the subscription takes it from there, checks it
//!   (sealed against writes and resizing, long enough, within the topic's limit), maps it
//!   read-only and hands the bytes over without a copy in
//!   [`try_recv_batch`](ShmSubscription::try_recv_batch), then unmaps it and closes the fd. A
//!   segment the broker dropped for this subscriber (it held too many unread) is counted in
//!   [`segments_dropped`](ShmSubscription::segments_dropped).
//! - A frame marked [`FrameFlags::ENVELOPE`](mycelium_transport::shm::FrameFlags) (or a
//!   payload segment its reference frame names so) begins with an envelope: the
//!   subscription checks it whole before handing the message out, as a [`Message`] that
//!   carries it ([`Message::from_view`]); the buffer-reusing calls hand out the payload
//!   alone. An envelope that does not parse is the writer's protocol error: that message is
//!   lost, counted as a fault and reported once as [`ClientError::Shm`] naming the ring, and
//!   the ring is read on (never a panic).
//! - A ring whose memory turns out corrupt is dropped (its publisher's messages are lost from
//!   then on) and reported once as [`ClientError::Shm`]; the other rings carry on.
//! - When the broker ends the subscription (`ShmDetached`: a slow subscriber detached by the
//!   watchdog, its topic removed by a reload) it frees the subscription's slots first, then
//!   says why on the control socket. A subscription that meets a freed slot before the reason
//!   (a new ring whose slot is no longer active, a read that finds garbage where the
//!   publisher wrote on) reports the broker's reason, waiting for it up to the request
//!   timeout, never the symptom: [`ClientError::Refused`] with the broker's code
//!   (`SlowConsumer`, `TopicRemoved`), or [`ClientError::BrokerGone`] if the session ended.
//! - A pattern subscription (`orders.*`, granted with no ring) is handed each ring of each
//!   matching topic as news naming the topic (`ShmTopicRingAdded`), now and whenever a
//!   matching topic appears; a topic that goes away takes its rings back (`ShmRingRemoved`,
//!   read to their end first, dropped quietly if what is left no longer reads: the broker
//!   freed the slot) and the subscription goes on. Each message is handed out with
//!   the topic of the ring it came from. The broker raises the notice in any of the
//!   subscription's relay slots, so each receive call looks at all of them (and at the
//!   control socket while it has no ring at all); a subscription asleep when a new topic
//!   joins is woken through a ring it reads, or finds it at its next look (within
//!   [`MAX_SLEEP`]).
//! - The broker's death is seen at the next look at the control socket: before every sleep,
//!   after each sleep of at most [`MAX_SLEEP`], and every [`NEWS_EVERY`] receive calls while
//!   messages keep coming (a publisher that outlives the broker); the subscription then ends
//!   with [`ClientError::BrokerGone`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mycelium_transport::envelope::{EnvelopeError, EnvelopeView};
use mycelium_transport::shm::{wait_any, FrameFlags, ReadError, RingConsumer};
use mycelium_transport::{
    Message, MessageRules, RecvError, RecvTimeoutError, SubscriptionEnd, TopicName, TryRecvError,
};

use crate::error::ClientError;
use crate::shm::control::{GrantedRing, RingNews};
use crate::shm::options::BUSY_POLL_SPIN;
use crate::shm::segments::{resolve, Segments};
use crate::shm::session::{GrantedAttachment, Session};
use crate::shm::sub_ring::{adopt, slot_freed, AdoptError, SubRing};
use mycelium_transport::shm::queue;

/// Most messages taken from one ring before the next ring gets its turn.
pub(crate) const TURN: usize = 64;

/// Receive calls between two looks at the control socket, notice or not, while messages keep
/// coming.
pub(crate) const NEWS_EVERY: u32 = 64 * 1024;

/// Pause instructions (one per poll when busy polling) between two reads of the clock while
/// waiting.
const CLOCK_EVERY: u32 = 64;

/// A spinning subscription offers its core to other threads once in this many pause
/// instructions (a multiple of [`CLOCK_EVERY`]).
const YIELD_EVERY: u32 = 128;

/// Most pause instructions between two polls of the rings while spinning (not busy-polling).
///
/// A subscriber that keeps up finds the ring empty after nearly every message; polling
/// `write_pos` back to back then pulls its cache line away from the publisher before each of
/// its stores, and both can settle into a convoy at half speed (1→1 small messages: about
/// 21 M msg/s against 40 M, a state that code layout alone can tip the pair into). Doubling
/// the pause between polls up to this bound lets the publisher run ahead and the subscriber
/// take whole batches (33-37 M msg/s on the same machine). It costs at most this many pauses
/// (well under a microsecond) of reaction time; busy polling keeps polling back to back for
/// latency.
const MAX_BACKOFF_PAUSES: u32 = 32;

/// Largest buffer a subscription keeps between messages (one grown by a larger message is
/// let go).
const KEPT_BUFFER: usize = 64 * 1024;

/// Longest single sleep: how soon a sleeping subscription notices that the broker is gone.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// A shared-memory subscription; see the module docs.
pub(crate) struct ShmSubscription {
    session: Arc<Session>,
    /// Shared by every message handed out.
    topic: TopicName,
    topic_id: u32,
    attachment: u32,
    /// A queue topic: keep only the frames addressed to this subscription's slots.
    queue: bool,
    /// A pattern subscription: its rings name their topics, and any relay slot may carry
    /// the broker's notice.
    pattern: bool,
    /// A pattern subscription: the topic of the ring the last message came from.
    last_topic: Option<TopicName>,
    rings: Vec<SubRing>,
    /// The ring whose turn it is.
    current: usize,
    /// Messages taken from `current` in this turn.
    taken: usize,
    /// Receive calls since the last look at the control socket.
    calls: u32,
    /// Set when the broker ended the subscription; every later call returns it.
    ended: Option<ClientError>,
    /// The largest payload segment accepted: the topic's payload limit, plus the largest
    /// envelope its rules allow.
    max_message_size: usize,
    /// Payload segments received and not yet read, per ring.
    segments: Segments,
    /// News that came while waiting for a payload segment, applied at the next look.
    deferred: Vec<RingNews>,
    /// Messages lost because the broker dropped their payload segment for us.
    segments_dropped: u64,
    /// An error found in the middle of a batch, returned by the next call.
    pending_error: Option<ClientError>,
    /// How the subscription ended, as the receive contract says it; every later call
    /// returns it.
    end: Option<SubscriptionEnd>,
    /// Rings dropped as corrupt and reference frames that named no usable segment: each lost
    /// messages that no `Lagged` counts.
    faults: u64,
    /// The message being read by `recv`, `try_recv` and `recv_timeout`, kept for its capacity.
    buf: Vec<u8>,
}

impl std::fmt::Debug for ShmSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmSubscription")
            .field("topic", &self.topic)
            .field("topic_id", &self.topic_id)
            .field("attachment", &self.attachment)
            .field("rings", &self.rings.len())
            .finish_non_exhaustive()
    }
}

impl ShmSubscription {
    pub(crate) fn new(
        session: Arc<Session>,
        topic: &str,
        grant: GrantedAttachment,
        granted: Vec<GrantedRing>,
    ) -> Result<ShmSubscription, ClientError> {
        let GrantedAttachment {
            attachment,
            topic_id,
            max_message_size,
            queue,
            rules,
            pattern,
        } = grant;
        let rings = granted
            .into_iter()
            .map(|granted| adopt(granted, queue))
            .collect::<Result<Vec<_>, _>>();
        let rings = match rings {
            Ok(rings) => rings,
            Err(failed) => {
                session.detach(attachment);
                return Err(failed.error);
            }
        };
        Ok(ShmSubscription {
            session,
            topic: TopicName::from(topic),
            topic_id,
            attachment,
            queue,
            pattern,
            last_topic: None,
            rings,
            current: 0,
            taken: 0,
            calls: 0,
            ended: None,
            max_message_size: max_message_size.saturating_add(max_envelope_len(&rules)),
            segments: Segments::new(),
            deferred: Vec::new(),
            segments_dropped: 0,
            pending_error: None,
            end: None,
            faults: 0,
            buf: Vec::new(),
        })
    }

    /// The topic's name.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Messages lost because the broker dropped their payload segment for this subscription:
    /// it held [`MAX_SEGMENTS_IN_FLIGHT`](mycelium_transport::limits::MAX_SEGMENTS_IN_FLIGHT)
    /// large messages of one ring it had not read yet.
    pub(crate) fn segments_dropped(&self) -> u64 {
        self.segments_dropped
    }

    /// Rings read now: the relay ring plus one per shared-memory publisher.
    pub(crate) fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// Applies news if the broker raised the relay slot's notice, or every [`NEWS_EVERY`]
    /// calls.
    fn look_for_news(&mut self) -> Result<(), ClientError> {
        if let Some(ended) = &self.ended {
            return Err(ended.clone());
        }
        self.calls += 1;
        let noticed = if self.pattern {
            // Every ring's notice is taken (not only the first raised), and with no ring yet
            // the control socket is the only place news can be.
            self.rings.iter().fold(self.rings.is_empty(), |any, r| {
                r.consumer.take_notice() | any
            })
        } else {
            self.rings
                .first()
                .is_some_and(|relay| relay.consumer.take_notice())
        };
        if noticed || self.calls >= NEWS_EVERY {
            self.apply_news()?;
        }
        Ok(())
    }

    /// Applies what the broker said about this subscription's rings.
    fn apply_news(&mut self) -> Result<(), ClientError> {
        self.calls = 0;
        if let Some(ended) = &self.ended {
            return Err(ended.clone());
        }
        let mut first_error = None;
        let mut slot_lost = false;
        let mut all = std::mem::take(&mut self.deferred);
        all.extend(self.session.poll_news(self.attachment)?);
        for news in all {
            match news {
                RingNews::Segment {
                    ring_id,
                    reference,
                    fd,
                } => {
                    self.segments.file(ring_id, reference, fd);
                }
                RingNews::Added(granted) => match adopt(granted, self.queue) {
                    Ok(ring) => self.rings.push(ring),
                    Err(AdoptError {
                        slot_freed: true,
                        error,
                    }) if self.pattern => {
                        // Its topic went away before we took the ring (its removal follows);
                        // the pattern goes on.
                        tracing::debug!(%error, topic = %self.topic, "a pattern's ring was gone before it was read");
                    }
                    Err(AdoptError {
                        slot_freed: true,
                        error,
                    }) => {
                        // The broker ended us after it sent the ring: its reason follows.
                        slot_lost = true;
                        first_error.get_or_insert(error);
                    }
                    Err(AdoptError { error, .. }) => {
                        tracing::warn!(%error, topic = %self.topic, "could not read a new publisher's ring");
                        first_error.get_or_insert(error);
                    }
                },
                RingNews::Removed(id) => {
                    if let Some(ring) = self.rings.iter_mut().find(|r| r.id == id) {
                        ring.removed = true;
                    }
                }
                RingNews::Detached(code, message) => {
                    return Err(self.end(ClientError::Refused { code, message }));
                }
            }
        }
        if slot_lost {
            if let Some(end) = self.await_end(self.session.options().request_timeout) {
                return Err(end);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ends the subscription with `error`, which every later call returns.
    fn end(&mut self, error: ClientError) -> ClientError {
        // The broker freed our slots: what the rings hold now may be overwritten.
        self.rings.clear();
        self.current = 0;
        self.taken = 0;
        self.ended = Some(error.clone());
        error
    }

    /// The broker's word on the end of this subscription, waiting for it up to `wait` (zero:
    /// only what is there now): the reason of its `ShmDetached`, or the end of the session.
    /// The subscription is then ended with it. `None` if no such word came; news of other
    /// kinds read meanwhile is kept for the next look.
    fn await_end(&mut self, wait: Duration) -> Option<ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Short waits: the control lock is held while waiting, and other threads share it.
            let read = self
                .session
                .wait_news(self.attachment, left.min(Duration::from_millis(1)));
            let mut gone = None;
            match read {
                Ok(news) => self.deferred.extend(news),
                Err(error) => gone = Some(error),
            }
            let detached = self
                .deferred
                .iter()
                .position(|news| matches!(news, RingNews::Detached(..)));
            if let Some(at) = detached {
                if let RingNews::Detached(code, message) = self.deferred.remove(at) {
                    return Some(self.end(ClientError::Refused { code, message }));
                }
            }
            if let Some(gone) = gone {
                return Some(self.end(gone));
            }
            if left.is_zero() {
                return None;
            }
        }
    }

    /// The error to report for ring `index`'s read error; a corrupt ring is dropped. A ring
    /// whose slot the broker freed under us reads as corrupt (the publisher wrote on over
    /// what we had not read): then the broker's reason is reported instead, as it is for any
    /// read error when the broker has already said why it ended the subscription.
    fn ring_failed(&mut self, index: usize, error: ReadError) -> ClientError {
        if let ReadError::Lagged { skipped } = error {
            return ClientError::Lagged { skipped };
        }
        let ring = &self.rings[index];
        let wait = if slot_freed(&ring.segment, ring.consumer.slot_index()) {
            self.session.options().request_timeout
        } else {
            Duration::ZERO
        };
        if let Some(end) = self.await_end(wait) {
            return end;
        }
        let id = self.rings[index].id;
        self.drop_ring(index);
        ClientError::Shm(format!("ring {id} dropped: {error}"))
    }

    /// Whether `error` on ring `index` of a pattern subscription is only the end of a topic
    /// that left the pattern: the broker took the ring back (and freed our slot, so what is
    /// left may be overwritten). The ring is then dropped quietly, the subscription goes on;
    /// a lag is still reported.
    fn left_with_its_topic(&self, index: usize, error: &ReadError) -> bool {
        self.pattern && self.rings[index].removed && !matches!(error, ReadError::Lagged { .. })
    }

    /// Drops ring `index` and keeps the turn order sane. Order is kept, so the relay ring
    /// (whose slot carries the broker's notices) stays first.
    fn drop_ring(&mut self, index: usize) {
        let ring = self.rings.remove(index);
        self.segments.forget_ring(ring.id);
        if self.current >= self.rings.len() {
            self.current = 0;
        }
        self.taken = 0;
    }

    /// Takes one message into `out`; `Ok(false)` when no ring has one now.
    ///
    /// # Errors
    ///
    /// [`ClientError::Lagged`] (`drop_oldest`, `drop_newest`) when messages were lost before this
    /// subscription read them; [`ClientError::Shm`] once for a ring found corrupt (it is
    /// dropped); [`ClientError::BrokerGone`] when the session is over and every ring is read
    /// to its end.
    ///
    /// `Some(taken)` when a message was taken; its envelope, if it has one, is not checked yet
    /// (the caller reads it once, as it needs it).
    fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<Taken>, ClientError> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        self.look_for_news()?;
        let mut checked = 0;
        while checked < self.rings.len() {
            let index = self.current;
            let result = self.rings[index].consumer.try_recv_marked(out);
            match result {
                Ok(Some(flags)) => {
                    let reference = flags.is_reference();
                    if self.pattern {
                        self.last_topic.clone_from(&self.rings[index].topic);
                    }
                    if self.queue {
                        let slot = self.rings[index].consumer.slot_index();
                        if queue::addressed_to(out, slot).is_none() {
                            // Another consumer's message: read past it.
                            continue;
                        }
                        out.drain(..queue::QUEUE_PREFIX);
                    } else {
                        self.taken += 1;
                        if self.taken >= TURN {
                            self.next_turn();
                        }
                    }
                    if reference && !self.resolve_into(index, out)? {
                        continue;
                    }
                    return Ok(Some(Taken {
                        enveloped: flags.is_envelope(),
                        ring_id: self.rings[index].id,
                    }));
                }
                Ok(None) => {
                    if self.rings[index].removed {
                        self.drop_ring(index);
                        continue;
                    }
                    self.next_turn();
                    checked += 1;
                }
                Err(error) if self.left_with_its_topic(index, &error) => {
                    self.drop_ring(index);
                }
                Err(error) => return Err(self.ring_failed(index, error)),
            }
        }
        Ok(None)
    }

    /// Replaces the reference in `out` (read from ring `index`) by the message it names;
    /// `false` if the broker dropped that message for us (counted).
    fn resolve_into(&mut self, index: usize, out: &mut Vec<u8>) -> Result<bool, ClientError> {
        let ring_id = self.rings.get(index).map_or(0, |r| r.id);
        let view = resolve(
            &self.session,
            self.attachment,
            self.max_message_size,
            &mut self.segments,
            &mut self.deferred,
            ring_id,
            out,
        );
        let view = match view {
            Ok(view) => view,
            Err(error) => return Err(self.await_end(Duration::ZERO).unwrap_or(error)),
        };
        match view {
            Some(view) => {
                out.clear();
                out.extend_from_slice(view.as_slice());
                Ok(true)
            }
            None => {
                self.segments_dropped += 1;
                Ok(false)
            }
        }
    }

    fn next_turn(&mut self) {
        self.taken = 0;
        self.current = (self.current + 1) % self.rings.len().max(1);
    }

    /// Takes up to `max` messages, handing each to `each`; returns how many. Zero when none
    /// is there now. The batch comes from one ring (the one whose turn it is).
    ///
    /// # Errors
    ///
    /// As for [`try_recv_into`](Self::try_recv_into). A batch that meets a lap after it has
    /// handed out messages returns their count; the next call returns the
    /// [`ClientError::Lagged`], and the one after continues with the intact messages.
    fn next_batch(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, ClientError> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        self.look_for_news()?;
        let mut checked = 0;
        while checked < self.rings.len() {
            let index = self.current;
            let queue = self.queue;
            let ring = &mut self.rings[index];
            let slot = ring.consumer.slot_index();
            let ring_id = ring.id;
            let (session, attachment, max_size) =
                (&self.session, self.attachment, self.max_message_size);
            let (segments, deferred) = (&mut self.segments, &mut self.deferred);
            let (mut mine, mut dropped, mut malformed) = (0, 0u64, None);
            let mut failed: Option<ClientError> = None;
            let read = ring.consumer.try_recv_batch_marked(max, |frame, flags| {
                let reference = flags.is_reference();
                let message = if queue {
                    match queue::addressed_to(frame, slot) {
                        Some(message) => message,
                        None => return,
                    }
                } else {
                    frame
                };
                if !reference {
                    match payload_of(message, flags) {
                        Ok(payload) => {
                            mine += 1;
                            each(payload);
                        }
                        Err(error) => {
                            malformed.get_or_insert(error);
                        }
                    }
                    return;
                }
                if failed.is_some() {
                    // Reported once; later references of the batch are skipped unread.
                    dropped += 1;
                    return;
                }
                match resolve(
                    session, attachment, max_size, segments, deferred, ring_id, message,
                ) {
                    Ok(Some(view)) => match payload_of(view.as_slice(), flags) {
                        Ok(payload) => {
                            mine += 1;
                            each(payload);
                        }
                        Err(error) => {
                            malformed.get_or_insert(error);
                        }
                    },
                    Ok(None) => dropped += 1,
                    Err(error) => failed = Some(error),
                }
            });
            self.segments_dropped += dropped;
            if let Some(error) = malformed {
                let error = bad_envelope(ring_id, error);
                if failed.is_none() {
                    failed = Some(error);
                } else {
                    // Counted, if not reported on its own: the other error comes first.
                    self.faults += 1;
                }
            }
            match read {
                Ok(count) => {
                    if let Some(error) = failed {
                        // A segment that will not come because the broker ended us: its
                        // reason, not the symptom.
                        let error = self.await_end(Duration::ZERO).unwrap_or(error);
                        if mine == 0 {
                            return Err(error);
                        }
                        self.pending_error = Some(error);
                    }
                    if mine > 0 {
                        self.next_turn();
                        return Ok(mine);
                    }
                    if count > 0 {
                        // Only other consumers' (or dropped) messages: ours may be right
                        // behind them.
                        continue;
                    }
                    if self.rings[index].removed {
                        self.drop_ring(index);
                        continue;
                    }
                    self.next_turn();
                    checked += 1;
                }
                Err(error) if self.left_with_its_topic(index, &error) => {
                    self.drop_ring(index);
                }
                Err(error) => return Err(self.ring_failed(index, error)),
            }
        }
        Ok(0)
    }

    /// Waits until some ring may have a message, or `deadline`; `false` once it has passed.
    /// Picks up news first, so a message on a ring added meanwhile is not slept through.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        let busy_poll = self.session.options().busy_poll;
        let spin = if busy_poll {
            BUSY_POLL_SPIN
        } else {
            self.session.options().spin
        };
        // The spin is the latency path: one check of every ring per iteration, the clock
        // read and the control socket looked at only every so often (a syscall costs more
        // than a whole one-way hop).
        let mut last_look = Instant::now();
        let spin_until = last_look + spin;
        // Counted in pause instructions, not polls: with the back-off a poll may stand for up
        // to MAX_BACKOFF_PAUSES of them, and the yield must come as often in time whatever
        // the back-off (a peer queued on this core waits for it: W4 with sleeping sides went
        // from 4 to 38 us when it was counted in polls).
        let mut paused: u32 = 0;
        let mut checks: u32 = 0;
        let mut backoff: u32 = 1;
        while !spin.is_zero() {
            if self.ready() {
                return Ok(true);
            }
            let pauses = if busy_poll { 1 } else { backoff };
            paused += pauses;
            if paused >= CLOCK_EVERY {
                paused = 0;
                checks = checks.wrapping_add(1);
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(false);
                }
                if now >= spin_until {
                    break;
                }
                if checks % (YIELD_EVERY / CLOCK_EVERY) == 0 {
                    // On a machine with fewer cores than runnable threads, a spinner that never
                    // yields keeps the very thread it waits for off its core: the scheduler
                    // often queues a woken peer (who will answer us) on the waker's core, here.
                    // Offering the core between polls lets it run at once.
                    std::thread::yield_now();
                }
                if busy_poll && now.duration_since(last_look) >= MAX_SLEEP {
                    // Busy polling looks at the control socket as often as a sleeper would:
                    // a broker that died cannot raise a notice.
                    self.apply_news()?;
                    last_look = now;
                }
            }
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
            backoff = (backoff * 2).min(MAX_BACKOFF_PAUSES);
        }
        // About to sleep: pick up news first, so a message on a ring added meanwhile is not
        // slept through.
        self.apply_news()?;
        if self.ready() {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        // Sleep in slices: a broker that died cannot wake us to say so, and a peer may clear
        // our parked flag; each slice ends with a look at the control socket.
        let left = deadline
            .map_or(MAX_SLEEP, |d| d.saturating_duration_since(now))
            .min(MAX_SLEEP);
        let consumers: Vec<&RingConsumer> = self.rings.iter().map(|r| &r.consumer).collect();
        wait_any(&consumers, Some(left)).map_err(|e| ClientError::Wait(e.to_string()))?;
        Ok(true)
    }
}

/// The receive contract: what the rest of the crate calls.
impl ShmSubscription {
    /// What an error of the inner calls means under the receive contract: a lag notice, the
    /// end (kept for every later call), or `None` for a fault that ends nothing (a ring
    /// dropped as corrupt, a reference frame naming no usable segment), which is counted in
    /// [`faults`](Self::faults) and logged, after which receiving goes on.
    fn settle(&mut self, error: ClientError) -> Option<RecvError> {
        match error {
            ClientError::Lagged { skipped } => Some(RecvError::Lagged(skipped)),
            // One ring or one message lost; the others carry on. (A timeout is not among
            // them: the session keeps failing with it, so it ends the subscription.)
            ClientError::Shm(_)
            | ClientError::NoConsumer { .. }
            | ClientError::MessageTooLarge { .. } => {
                self.faults += 1;
                tracing::warn!(topic = %self.topic, %error, "shared-memory subscription lost messages");
                None
            }
            other => {
                let end = other.into_end();
                self.end = Some(end.clone());
                Some(RecvError::Ended(end))
            }
        }
    }

    fn ended(&self) -> Result<(), RecvError> {
        match &self.end {
            Some(end) => Err(RecvError::Ended(end.clone())),
            None => Ok(()),
        }
    }

    /// Rings dropped as corrupt and reference frames that named no usable payload segment
    /// so far: each lost messages that no lag notice counts.
    pub(crate) fn faults(&self) -> u64 {
        self.faults
    }

    /// Takes one message into `out` (replacing its contents); `Ok(false)` when none is
    /// there now.
    /// The payload alone: an envelope the message came with is left out.
    pub(crate) fn try_recv_into(&mut self, out: &mut Vec<u8>) -> Result<bool, RecvError> {
        let taken = self.try_recv_raw(out, &envelope_len)?;
        if let Some(envelope_len) = taken {
            out.drain(..envelope_len);
        }
        Ok(taken.is_some())
    }

    /// Takes one message into `out`, envelope included, and reads it with `finish` (given its
    /// bytes and whether they begin with an envelope); `None` when none is there now. A
    /// message whose envelope `finish` finds malformed is lost, counted as a fault, and the
    /// next one is taken.
    fn try_recv_raw<T>(
        &mut self,
        out: &mut Vec<u8>,
        finish: &Finish<T>,
    ) -> Result<Option<T>, RecvError> {
        self.ended()?;
        loop {
            let error = match self.next_into(out) {
                Ok(None) => return Ok(None),
                Ok(Some(taken)) => match finish(self, out, taken.enveloped) {
                    Ok(done) => return Ok(Some(done)),
                    Err(error) => bad_envelope(taken.ring_id, error),
                },
                Err(error) => error,
            };
            if let Some(error) = self.settle(error) {
                return Err(error);
            }
        }
    }

    /// Takes up to `max` messages of one ring, handing each to `each`; returns how many
    /// (zero when none is there now). A batch that meets a lap after it has handed out
    /// messages returns their count, and the next call the lag notice.
    pub(crate) fn try_recv_batch(
        &mut self,
        max: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        self.ended()?;
        loop {
            match self.next_batch(max, &mut each) {
                Ok(count) => return Ok(count),
                Err(error) => {
                    if let Some(error) = self.settle(error) {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Waits for a message (up to `timeout`; `None`: for ever) and puts its payload in `out`
    /// (an envelope it came with left out); `Ok(false)` on timeout. A lag notice ends the
    /// wait at once.
    pub(crate) fn recv_timeout_into(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<bool, RecvError> {
        let taken = self.recv_timeout_raw(out, timeout, &envelope_len)?;
        if let Some(envelope_len) = taken {
            out.drain(..envelope_len);
        }
        Ok(taken.is_some())
    }

    /// [`recv_timeout_into`](Self::recv_timeout_into), envelope included, read with `finish`
    /// as [`try_recv_raw`](Self::try_recv_raw) does; `None` on timeout.
    fn recv_timeout_raw<T>(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
        finish: &Finish<T>,
    ) -> Result<Option<T>, RecvError> {
        self.ended()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let waited = self.try_recv_raw(out, finish).and_then(|taken| {
                if taken.is_some() {
                    return Ok(Some(taken));
                }
                match self.wait(deadline) {
                    Ok(true) => Ok(None),
                    Ok(false) => Ok(Some(None)),
                    Err(error) => match self.settle(error) {
                        Some(error) => Err(error),
                        None => Ok(None),
                    },
                }
            })?;
            if let Some(done) = waited {
                return Ok(done);
            }
        }
    }

    /// The message in `bytes` (beginning with an envelope if `enveloped`), copied out: its
    /// payload, and its envelope, each in a buffer of exactly its size.
    fn message(&self, bytes: &[u8], enveloped: bool) -> Result<Message, EnvelopeError> {
        // A pattern's message carries the topic of its ring; a plain one the subscribed name.
        let topic = match &self.last_topic {
            Some(topic) if self.pattern => topic.clone(),
            _ => self.topic.clone(),
        };
        if !enveloped {
            return Ok(Message::new(topic, Bytes::copy_from_slice(bytes)));
        }
        EnvelopeView::parse(bytes).map(|view| Message::from_view(topic, &view))
    }

    /// The next message, waiting up to `timeout` (`None`: for ever); `None` on timeout. It is
    /// read through the subscription's own buffer, so only the message's own bytes are
    /// allocated.
    fn recv_message(&mut self, timeout: Option<Duration>) -> Result<Option<Message>, RecvError> {
        let mut buf = std::mem::take(&mut self.buf);
        let message = self.recv_timeout_raw(&mut buf, timeout, &Self::message);
        self.keep_buffer(buf);
        message
    }

    /// Keeps `buf` for the next message, unless a large one grew it.
    fn keep_buffer(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= KEPT_BUFFER {
            self.buf = buf;
        }
    }

    /// Waits for the next message.
    pub(crate) fn recv(&mut self) -> Result<Message, RecvError> {
        match self.recv_message(None)? {
            Some(message) => Ok(message),
            // Without a deadline the wait returns only with a message or an error.
            None => Err(RecvError::Ended(SubscriptionEnd::Closed)),
        }
    }

    /// The next message if one is there now.
    pub(crate) fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        let mut buf = std::mem::take(&mut self.buf);
        let message = self.try_recv_raw(&mut buf, &Self::message);
        self.keep_buffer(buf);
        match message? {
            Some(message) => Ok(message),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Waits up to `timeout` for the next message.
    pub(crate) fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        match self.recv_message(Some(timeout))? {
            Some(message) => Ok(message),
            None => Err(RecvTimeoutError::Timeout),
        }
    }
}

impl ShmSubscription {
    /// Whether some ring has a message, or a removed ring is to be dropped.
    fn ready(&self) -> bool {
        self.rings
            .iter()
            .any(|r| r.consumer.has_data() || r.removed || r.consumer.has_notice())
    }
}

impl Drop for ShmSubscription {
    fn drop(&mut self) {
        self.session.detach(self.attachment);
    }
}

/// The payload of a message read from a ring: after its envelope (checked) when `flags` says
/// it has one.
#[inline]
fn payload_of(message: &[u8], flags: FrameFlags) -> Result<&[u8], EnvelopeError> {
    if !flags.is_envelope() {
        return Ok(message);
    }
    EnvelopeView::parse(message).map(|view| view.payload)
}

/// A message [`next_into`](ShmSubscription::next_into) took.
struct Taken {
    /// It begins with an envelope (not checked yet).
    enveloped: bool,
    /// The ring it came from.
    ring_id: u32,
}

/// How a receive reads the message it took: given its bytes and whether they begin with an
/// envelope, what it hands out, or why the envelope is malformed.
type Finish<T> = dyn Fn(&ShmSubscription, &[u8], bool) -> Result<T, EnvelopeError>;

/// The length of the envelope `bytes` begin with (checked) if `enveloped`, else 0.
fn envelope_len(
    _: &ShmSubscription,
    bytes: &[u8],
    enveloped: bool,
) -> Result<usize, EnvelopeError> {
    if !enveloped {
        return Ok(0);
    }
    EnvelopeView::parse(bytes).map(|view| view.len)
}

/// The fault a frame marked envelope whose envelope does not parse makes: its writer broke
/// the protocol; the message is lost, the ring read on.
fn bad_envelope(ring_id: u32, error: EnvelopeError) -> ClientError {
    ClientError::Shm(format!(
        "ring {ring_id}: a message marked as enveloped was dropped: {error}"
    ))
}

/// The most bytes an envelope may take under `rules`: a stamp, a topic and a reply-to name
/// (255 bytes each), a reply block, and the headers the rules allow.
pub(crate) fn max_envelope_len(rules: &MessageRules) -> usize {
    use mycelium_transport::envelope::{REPLY_LEN, STAMP_LEN};
    1 + STAMP_LEN
        + 2 * (1 + 255)
        + REPLY_LEN
        + 2
        + 3 * usize::from(rules.max_headers)
        + rules.max_header_bytes as usize
}
