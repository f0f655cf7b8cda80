//! The outbox: a bounded, coalescing queue of encoded frames toward one peer (see the
//! module docs of [`crate::outbox`]).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use crate::envelope::Envelope;
use crate::error::EncodeError;
use crate::frame::MESSAGE_OVERHEAD;
use crate::outbox::drained::REUSE_CAPACITY;
use crate::outbox::state::{fits, State};
use crate::outbox::{ByteBudget, Drained, FrameRun, MAX_SHARED_SEGMENTS, SHARE_MIN_BYTES};
use crate::{codec, frame::kind, Frame};

/// Bytes an outbox may hold before message appends count as full, whatever the message limit.
/// Bounds the memory one slow peer can pin, and keeps every drained buffer small enough to be
/// reused (see `REUSE_CAPACITY`): at 2 GB/s, 8 MiB is 4 ms of smoothing, on top of the
/// socket's own 4 MiB. An outbox may exceed it by one message, and an empty outbox always
/// accepts one, so a message larger than this still moves.
pub const OUTBOX_MAX_BYTES: usize = 8 * 1024 * 1024;

/// What an append of messages achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// This many leading messages were queued (possibly all of them); the rest did not fit.
    Queued(usize),
    /// The outbox is closed: nothing was queued and nothing ever will be.
    Closed,
}

/// A queue of encoded frames toward one peer; see the module docs.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the drainer on the empty → non-empty transition and on close.
    readable: Notify,
    /// Wakes producers that found the outbox full, when the drainer takes or on close.
    writable: Notify,
    /// Mirrors `State::closed` so tasks can poll it without the lock.
    closed_flag: AtomicBool,
    /// Woken once when the outbox closes, for tasks that must stop with it (the connection reader).
    closed_notify: Notify,
    /// The frame kind messages are queued as: `Deliver` toward clients, `Publish` toward the broker.
    message_kind: u8,
    /// The broker-wide budget this outbox's queued bytes count against, if any.
    budget: Option<Arc<ByteBudget>>,
}

/// Keeps an outbox's drainer waiting; see [`Outbox::append_control_held`].
#[derive(Debug)]
pub struct HoldGuard<'a> {
    outbox: &'a Outbox,
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.outbox.lock();
        state.holds -= 1;
        let wake = state.holds == 0 && state.has_news();
        drop(state);
        if wake {
            self.outbox.readable.notify_one();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Whatever is still queued leaves the broker-wide count with the outbox.
        let bytes = self.lock().bytes;
        self.settle(bytes, 0);
    }
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new()
    }
}

impl Outbox {
    /// A new, empty, open outbox whose messages are `Deliver` frames, or `DeliverEnvelope`
    /// with an envelope (broker → client).
    pub fn new() -> Outbox {
        Outbox::with_message_kind(kind::DELIVER)
    }

    /// A new outbox whose messages are `Publish` frames (client → broker).
    pub fn for_publishing() -> Outbox {
        Outbox::with_message_kind(kind::PUBLISH)
    }

    /// A new outbox toward a client whose queued bytes count against `budget`.
    pub fn with_budget(budget: Arc<ByteBudget>) -> Outbox {
        let mut outbox = Outbox::with_message_kind(kind::DELIVER);
        outbox.budget = Some(budget);
        outbox
    }

    fn with_message_kind(message_kind: u8) -> Outbox {
        Outbox {
            state: Mutex::default(),
            readable: Notify::new(),
            writable: Notify::new(),
            closed_flag: AtomicBool::new(false),
            closed_notify: Notify::new(),
            message_kind,
            budget: None,
        }
    }

    /// Whether the broker-wide budget is spent (never, without one).
    fn spent(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.is_spent())
    }

    /// Tells the budget that this outbox went from `before` to `after` queued bytes.
    fn settle(&self, before: usize, after: usize) {
        if let Some(budget) = &self.budget {
            budget.settle(before, after);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves only whole frames behind (each append is one
        // `extend`), so the state is still consistent: recover it instead of poisoning every peer.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues as many of `payloads` as fit, as message frames on `topic_id`, in order.
    ///
    /// `max_messages` is the caller's message limit; the byte limit is [`OUTBOX_MAX_BYTES`].
    pub fn append_messages(
        &self,
        topic_id: u32,
        payloads: &[&[u8]],
        max_messages: usize,
    ) -> Appended {
        self.append(topic_id, plain(payloads), Some(max_messages))
    }

    /// Queues as many of `items` as fit, in order, within `max_messages` (no limit when
    /// `None`) and the byte limit: each `(bytes, enveloped)` becomes a message frame on
    /// `topic_id`, of this outbox's message kind for plain bytes and of its envelope kind
    /// (`DeliverEnvelope`, `PublishEnvelope`) for bytes that begin with an envelope. Both
    /// kinds count alike: per topic, toward the limits, and for `drop_oldest`.
    pub fn append_items<'a, I>(
        &self,
        topic_id: u32,
        items: I,
        max_messages: Option<usize>,
    ) -> Appended
    where
        I: ExactSizeIterator<Item = (&'a [u8], bool)> + Clone,
    {
        self.append(topic_id, items, max_messages)
    }

    /// Appends messages, within `max_messages` and the byte limit when a limit is given.
    #[inline]
    fn append<'a, I>(&self, topic_id: u32, items: I, max_messages: Option<usize>) -> Appended
    where
        I: ExactSizeIterator<Item = (&'a [u8], bool)> + Clone,
    {
        let mut state = self.lock();
        if state.closed {
            return Appended::Closed;
        }
        let was_empty = state.is_empty();
        let already = state.queued_for(topic_id);
        let (before, spent) = (state.bytes, self.spent());
        // How many fit, judged before a loss notice is queued ahead of them (a notice is a
        // control frame: it takes no message's room).
        let queued = match max_messages {
            None => items.len(),
            Some(max) => {
                let (mut bytes, mut n) = (state.bytes, 0);
                for (payload, _) in items.clone() {
                    if !fits(already + n, bytes, max, spent) {
                        break;
                    }
                    bytes += payload.len() + MESSAGE_OVERHEAD;
                    n += 1;
                }
                n
            }
        };
        if queued > 0 && !state.lost.is_empty() {
            state.tell_lost(topic_id);
        }
        let envelope_kind = envelope_kind(self.message_kind);
        for (payload, enveloped) in items.take(queued) {
            let kind = if enveloped {
                envelope_kind
            } else {
                self.message_kind
            };
            codec::encode_message(&mut state.tail, kind, topic_id, payload);
            state.bytes += payload.len() + MESSAGE_OVERHEAD;
        }
        state.count(topic_id, queued);
        self.settle(before, state.bytes);
        drop(state);
        if was_empty && queued > 0 {
            self.readable.notify_one();
        }
        Appended::Queued(queued)
    }

    /// Queues as many frames of `run[range]` as fit under `max_messages` (no limit when `None`):
    /// by reference when they are many, else by copy. The frames are queued as they are, so
    /// they must already be `Deliver` or `DeliverEnvelope` frames of this outbox's topic.
    pub fn append_run(
        &self,
        topic_id: u32,
        run: &FrameRun<'_>,
        range: Range<usize>,
        max_messages: Option<usize>,
    ) -> Appended {
        let mut state = self.lock();
        if state.closed {
            return Appended::Closed;
        }
        let was_empty = state.is_empty();
        let (before, spent) = (state.bytes, self.spent());
        let end = match max_messages {
            None => range.end,
            Some(max) => {
                let already = state.queued_for(topic_id);
                let mut bytes = state.bytes;
                let mut end = range.start;
                while end < range.end && fits(already + (end - range.start), bytes, max, spent) {
                    bytes += run.ends[end] - run.start_of(end);
                    end += 1;
                }
                end
            }
        };
        let queued = end - range.start;
        if queued > 0 {
            if !state.lost.is_empty() {
                state.tell_lost(topic_id);
            }
            let bytes = run.bytes(range.start..end);
            let len = bytes.len();
            state.count(topic_id, queued);
            if len >= SHARE_MIN_BYTES && state.shared_segments() < MAX_SHARED_SEGMENTS {
                state.push_shared(run.frames.slice(bytes));
            } else {
                let frames: &[u8] = run.frames;
                state.tail.extend_from_slice(&frames[bytes]);
                state.bytes += len;
            }
        }
        self.settle(before, state.bytes);
        drop(state);
        if was_empty && queued > 0 {
            self.readable.notify_one();
        }
        Appended::Queued(queued)
    }

    /// Queues all of `payloads` regardless of the limits: for queue deliveries, which the
    /// consumer's credit already bounds (with envelopes: [`Self::append_items`] without a
    /// limit).
    pub fn append_credited(&self, topic_id: u32, payloads: &[&[u8]]) -> Appended {
        self.append(topic_id, plain(payloads), None)
    }

    /// Queues one message with an envelope on `topic_id` if it fits under `max_messages` and
    /// the byte limit, as [`append_messages`](Self::append_messages) does for plain ones:
    /// `Queued(1)`, or `Queued(0)` when there is no room now. The frame is this outbox's
    /// enveloped message kind (`PublishEnvelope` toward the broker, `DeliverEnvelope` toward a
    /// client), written in place ([`codec::encode_enveloped`]).
    ///
    /// Fails, queueing nothing, only when the frame would exceed `u32::MAX` bytes.
    pub fn append_enveloped(
        &self,
        topic_id: u32,
        envelope: &Envelope<'_>,
        payload: &[u8],
        max_messages: usize,
    ) -> Result<Appended, EncodeError> {
        let kind = match self.message_kind {
            kind::PUBLISH => kind::PUBLISH_ENVELOPE,
            _ => kind::DELIVER_ENVELOPE,
        };
        let mut state = self.lock();
        if state.closed {
            return Ok(Appended::Closed);
        }
        let was_empty = state.is_empty();
        let (before, spent) = (state.bytes, self.spent());
        if !fits(state.queued_for(topic_id), state.bytes, max_messages, spent) {
            return Ok(Appended::Queued(0));
        }
        let frame_len = MESSAGE_OVERHEAD
            .saturating_add(envelope.len())
            .saturating_add(payload.len());
        if u32::try_from(frame_len - 4).is_err() {
            return Err(EncodeError::FrameTooLarge {
                len: frame_len - 4,
                max: u32::MAX as usize,
            });
        }
        if !state.lost.is_empty() {
            state.tell_lost(topic_id);
        }
        // Cannot fail: the length was checked above.
        codec::encode_enveloped(&mut state.tail, kind, topic_id, envelope, payload)?;
        state.bytes += frame_len;
        state.count(topic_id, 1);
        self.settle(before, state.bytes);
        drop(state);
        if was_empty {
            self.readable.notify_one();
        }
        Ok(Appended::Queued(1))
    }

    /// Drops up to `max` of the oldest messages of `topic_id` still queued (not yet taken by
    /// the drainer), for `backpressure = "drop_oldest"`; returns how many were dropped. Control
    /// frames and other topics' messages keep their places. Nothing is dropped from a closed
    /// outbox.
    pub fn evict_oldest(&self, topic_id: u32, max: usize) -> usize {
        let mut state = self.lock();
        if state.closed {
            return 0;
        }
        let before = state.bytes;
        let kinds = [self.message_kind, envelope_kind(self.message_kind)];
        let evicted = state.evict_oldest(topic_id, kinds, max);
        self.settle(before, state.bytes);
        evicted
    }

    /// Notes that `count` messages of `topic_id` were lost for the peer after everything of
    /// the topic queued here (dropped because the outbox was full, or lost before the broker
    /// could route them). The peer is told (`Lagged`) just before the topic's next message,
    /// or at the end of the drainer's next take if that comes first; losses noted before
    /// either are told in one notice. Nothing happens on a closed outbox.
    pub fn report_lost(&self, topic_id: u32, count: u64) {
        if count == 0 {
            return;
        }
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let had_news = state.has_news();
        match state.lost.iter_mut().find(|(t, _)| *t == topic_id) {
            // A count that may come from shared memory: saturate.
            Some((_, n)) => *n = n.saturating_add(count),
            None => state.lost.push((topic_id, count)),
        }
        drop(state);
        if !had_news {
            self.readable.notify_one();
        }
    }

    /// Queues one control frame regardless of the limits. Returns false if the outbox is closed.
    pub fn append_control(&self, frame: &Frame) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let was_empty = state.is_empty();
        let queued_before = state.bytes;
        // Pending losses lie after everything queued of their topics: told before this frame
        // (an error that ends a subscription must not overtake the notice of its last gap).
        if !state.lost.is_empty() {
            state.tell_all_lost();
        }
        let before = state.tail.len();
        if let Err(error) = codec::encode_frame(frame, &mut state.tail) {
            // Control frames are built by the broker from bounded data; failing here is a bug.
            // (`encode_frame` left the tail as it was.)
            tracing::error!(%error, ?frame, "could not encode a control frame");
        }
        state.bytes += state.tail.len() - before;
        self.settle(queued_before, state.bytes);
        drop(state);
        if was_empty {
            self.readable.notify_one();
        }
        true
    }

    /// Queues a control frame and keeps the drainer from taking anything until the returned
    /// guard drops.
    ///
    /// For a reply that must not reach the peer before the broker has acted on it: a
    /// `TopicAck` is queued (so it precedes every `Deliver` of the new subscription), the
    /// subscription is registered, and only then may the ack leave.
    pub fn append_control_held(&self, frame: &Frame) -> HoldGuard<'_> {
        self.lock().holds += 1;
        self.append_control(frame);
        HoldGuard { outbox: self }
    }

    /// True if `max_messages` more would not be refused right now (for waiting producers);
    /// with a budget that is spent, only when this outbox is empty.
    pub fn has_room(&self, topic_id: u32, max_messages: usize) -> bool {
        let spent = self.spent();
        let state = self.lock();
        state.closed || state.has_room(topic_id, max_messages, spent)
    }

    /// Waits until the outbox has room for a message under `max_messages`, or is closed.
    pub async fn wait_for_room(&self, topic_id: u32, max_messages: usize) {
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            // Register before checking, so a drain between the check and the await is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed || state.has_room(topic_id, max_messages, self.spent()) {
                    return;
                }
                state.space_wanted = true;
            }
            notified.await;
        }
    }

    /// Waits until fewer than [`OUTBOX_MAX_BYTES`] are queued (replies included), or the outbox
    /// is closed. A connection's reader calls it before producing more replies, so a peer that
    /// sends requests but never reads cannot make the broker buffer their answers without end.
    pub async fn wait_for_bytes_below_limit(&self) {
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed || state.bytes < OUTBOX_MAX_BYTES {
                    return;
                }
                state.space_wanted = true;
            }
            notified.await;
        }
    }

    /// True when [`OUTBOX_MAX_BYTES`] or more are queued.
    pub fn is_over_byte_limit(&self) -> bool {
        self.lock().bytes >= OUTBOX_MAX_BYTES
    }

    /// Swaps everything queued into `into`, which must be empty (its capacity is reused).
    ///
    /// Returns false when nothing is queued. What `into` receives is whole frames only.
    pub fn take(&self, into: &mut Drained) -> bool {
        into.segments.clear();
        into.tail.clear();
        if into.tail.capacity() > REUSE_CAPACITY {
            into.tail = BytesMut::new();
        }
        let mut state = self.lock();
        if !state.has_news() || state.holds > 0 {
            return false;
        }
        // The budget never counted the notices queued here: they leave at once.
        let counted = state.bytes;
        state.tell_all_lost();
        std::mem::swap(&mut state.segments, &mut into.segments);
        std::mem::swap(&mut state.tail, &mut into.tail);
        state.takes = state.takes.wrapping_add(1);
        // Busy again: the drainer keeps its buffer.
        state.release_wanted = false;
        state.drainer_holds = true;
        self.settle(counted, 0);
        state.bytes = 0;
        state.messages = 0;
        state.per_topic.clear();
        let wake = std::mem::take(&mut state.space_wanted);
        drop(state);
        if wake {
            self.writable.notify_waiters();
        }
        true
    }

    /// The drainer's loop toward a socket: writes everything queued, a wake-up at a time, until
    /// the outbox is closed and empty. Returns the write error that ended it early, if any.
    pub async fn flush_until_closed<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        let mut drained = Drained::default();
        loop {
            self.readable().await;
            if self.take(&mut drained) {
                drained.write_all(writer).await?;
            } else if self.is_finished() {
                return Ok(());
            } else if self.take_release_wanted() {
                // Idle (see `release_idle`): keep nothing the next burst cannot grow again.
                drained = Drained::default();
            }
        }
    }

    /// The peer's connection has been idle for a while: frees the queue's buffer if nothing is
    /// queued, and wakes the drainer of [`Self::flush_until_closed`] to free the one it holds.
    /// Costs the next burst one allocation; called at most once per heartbeat period.
    pub fn release_idle(&self) {
        let mut state = self.lock();
        if state.closed || state.has_news() || state.holds > 0 {
            return;
        }
        if state.tail.capacity() > 0 {
            state.tail = BytesMut::new();
        }
        if state.segments.capacity() > 0 {
            state.segments = VecDeque::new();
        }
        // Wake the drainer once per burst, not at every idle tick.
        if std::mem::take(&mut state.drainer_holds) {
            state.release_wanted = true;
            drop(state);
            self.readable.notify_one();
        }
    }

    /// Whether [`Self::release_idle`] asked the drainer to free its buffer (and clears it).
    fn take_release_wanted(&self) -> bool {
        std::mem::take(&mut self.lock().release_wanted)
    }

    /// Waits until something is queued or the outbox is closed (or, for the drainer of
    /// [`Self::flush_until_closed`], until it is asked to free its buffer).
    pub async fn readable(&self) {
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if (state.has_news() && state.holds == 0) || state.closed || state.release_wanted {
                    return;
                }
            }
            notified.await;
        }
    }

    /// How many times the drainer has taken something so far, and whether something is
    /// queued now: a peer whose outbox stays non-empty while this count stands still takes
    /// nothing (the connection's heartbeat reads it).
    pub fn progress(&self) -> (u64, bool) {
        let state = self.lock();
        (state.takes, state.has_news())
    }

    /// True when nothing is queued and the outbox is closed: the drainer may stop.
    pub fn is_finished(&self) -> bool {
        let state = self.lock();
        state.closed && !state.has_news()
    }

    /// True once `close` or `abort` was called.
    pub fn is_closed(&self) -> bool {
        // SYNC POINT: pairs with the Release store in `shut`; a task that sees `true` also sees
        // that appends are refused.
        self.closed_flag.load(Ordering::Acquire)
    }

    /// Resolves once the outbox is closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Refuses further appends; what is queued stays for the drainer to flush.
    pub fn close(&self) {
        self.shut(false);
    }

    /// Queues `frame` (typically a fatal `Error`) and then closes: the drainer flushes it last.
    pub fn close_with(&self, frame: &Frame) {
        self.append_control(frame);
        self.shut(false);
    }

    /// Refuses further appends and discards what is queued (the peer is gone).
    pub fn abort(&self) {
        self.shut(true);
    }

    fn shut(&self, discard: bool) {
        {
            let mut state = self.lock();
            state.closed = true;
            if discard {
                self.settle(state.bytes, 0);
                state.segments = VecDeque::new();
                state.tail = BytesMut::new();
                state.bytes = 0;
                state.messages = 0;
                state.per_topic.clear();
                state.lost.clear();
            }
        }
        // SYNC POINT: pairs with the Acquire load in `is_closed`.
        self.closed_flag.store(true, Ordering::Release);
        self.readable.notify_one();
        self.writable.notify_waiters();
        self.closed_notify.notify_waiters();
    }

    /// Message frames queued right now (for stats and tests).
    pub fn queued_messages(&self) -> usize {
        self.lock().messages
    }
}

/// `payloads` as plain items.
#[inline]
fn plain<'a>(payloads: &'a [&'a [u8]]) -> impl ExactSizeIterator<Item = (&'a [u8], bool)> + Clone {
    payloads.iter().map(|payload| (*payload, false))
}

/// The kind of an enveloped message frame of the outbox whose plain messages are `message_kind`.
fn envelope_kind(message_kind: u8) -> u8 {
    if message_kind == kind::PUBLISH {
        kind::PUBLISH_ENVELOPE
    } else {
        kind::DELIVER_ENVELOPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::test_support::{flat, notices_in, payloads_in};
    use crate::peek_frame;

    #[test]
    fn appends_stop_at_the_message_limit_and_resume_after_a_take() {
        let outbox = Outbox::new();
        let msgs: Vec<&[u8]> = vec![b"a", b"b", b"c"];
        assert_eq!(outbox.append_messages(1, &msgs, 2), Appended::Queued(2));
        assert!(!outbox.has_room(1, 2));
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        assert_eq!(
            payloads_in(&flat(&mut taken)),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(outbox.has_room(1, 2));
        assert_eq!(
            outbox.append_messages(1, &msgs[2..], 2),
            Appended::Queued(1)
        );
    }

    #[test]
    fn an_empty_outbox_accepts_one_message_larger_than_the_byte_limit() {
        let outbox = Outbox::new();
        let big = vec![7u8; OUTBOX_MAX_BYTES + 1];
        let msgs: Vec<&[u8]> = vec![&big, b"x"];
        assert_eq!(outbox.append_messages(1, &msgs, 10), Appended::Queued(1));
    }

    #[test]
    fn a_producer_told_there_is_room_can_always_queue_one_message() {
        // Near the byte limit, the append and the room check must agree: otherwise a
        // publisher spins between "room" and "no room" without yielding to the drainer.
        let outbox = Outbox::new();
        let nearly_full = vec![0u8; OUTBOX_MAX_BYTES - 100];
        assert_eq!(
            outbox.append_messages(1, &[&nearly_full], 10),
            Appended::Queued(1)
        );
        assert!(outbox.has_room(1, 10));
        assert_eq!(
            outbox.append_messages(1, &[&[1u8; 1024][..]], 10),
            Appended::Queued(1)
        );
        assert!(!outbox.has_room(1, 10));
        assert_eq!(outbox.append_messages(1, &[b"x"], 10), Appended::Queued(0));
    }

    #[test]
    fn a_held_reply_is_not_taken_until_the_hold_is_released() {
        let outbox = Outbox::new();
        let guard = outbox.append_control_held(&Frame::Ack { request_id: 1 });
        outbox.append_messages(1, &[b"after the ack"], 10);
        let mut taken = Drained::default();
        assert!(!outbox.take(&mut taken), "held");
        drop(guard);
        assert!(outbox.take(&mut taken));
        let bytes = flat(&mut taken);
        let (first, _) = peek_frame(&bytes, usize::MAX)
            .expect("valid")
            .expect("whole");
        assert_eq!(first.to_frame().expect("ack"), Frame::Ack { request_id: 1 });
        assert_eq!(payloads_in(&bytes), vec![b"after the ack".to_vec()]);
    }

    #[test]
    fn control_frames_ignore_the_limit_but_not_closing() {
        let outbox = Outbox::new();
        assert_eq!(outbox.append_messages(1, &[b"a"], 1), Appended::Queued(1));
        assert!(outbox.append_control(&Frame::Pong { token: 9 }));
        outbox.abort();
        assert!(!outbox.append_control(&Frame::Pong { token: 9 }));
        assert_eq!(outbox.append_messages(1, &[b"a"], 1), Appended::Closed);
        assert!(
            !outbox.take(&mut Drained::default()),
            "abort discards what was queued"
        );
    }

    #[test]
    fn close_keeps_queued_frames_for_the_drainer() {
        let outbox = Outbox::new();
        outbox.append_messages(4, &[b"last"], 10);
        outbox.close();
        assert!(!outbox.is_finished());
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken), "queued before close");
        assert_eq!(payloads_in(&flat(&mut taken)), vec![b"last".to_vec()]);
        assert!(outbox.is_finished());
    }

    #[tokio::test]
    async fn a_waiting_producer_is_woken_by_a_take() {
        let outbox = std::sync::Arc::new(Outbox::new());
        outbox.append_messages(1, &[b"a"], 1);
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.wait_for_room(1, 1).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        outbox.take(&mut Drained::default());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }

    #[tokio::test]
    async fn an_idle_outbox_gives_its_buffers_back_and_the_drainer_is_asked_to() {
        let outbox = Arc::new(Outbox::new());
        outbox.append_messages(1, &[&[0u8; 100_000][..]], 10);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        outbox.append_messages(1, &[b"x"], 10);
        // Something queued: not idle, nothing is freed.
        outbox.release_idle();
        assert!(!outbox.take_release_wanted());
        assert!(outbox.take(&mut taken));
        outbox.release_idle();
        assert_eq!(
            outbox.lock().tail.capacity(),
            0,
            "the queue's buffer is freed"
        );
        // The drainer is woken, takes nothing, and frees its own.
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.readable())
            .await
            .expect("woken to free its buffer");
        assert!(!outbox.take(&mut taken));
        assert!(outbox.take_release_wanted());
        assert!(!outbox.take_release_wanted(), "asked once");
        outbox.release_idle();
        assert!(
            !outbox.take_release_wanted(),
            "not asked again before it took anything"
        );
        // A take clears a request that came before it: a busy drainer keeps its buffer.
        outbox.release_idle();
        outbox.append_messages(1, &[b"y"], 10);
        assert!(outbox.take(&mut taken));
        assert!(!outbox.take_release_wanted());
    }

    #[test]
    fn a_loss_nothing_follows_is_told_at_the_next_take_and_one_followed_before_the_message() {
        let outbox = Outbox::new();
        outbox.append_messages(1, &[b"a"], 1);
        // Full: the next two are lost for the peer, after `a`.
        assert_eq!(
            outbox.append_messages(1, &[b"b", b"c"], 1),
            Appended::Queued(0)
        );
        outbox.report_lost(1, 2);
        outbox.report_lost(1, 1);
        outbox.report_lost(2, 5);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        assert_eq!(
            notices_in(&flat(&mut taken)),
            vec![Ok(b"a".to_vec()), Err((1, 3)), Err((2, 5))],
            "merged per topic, after what was queued, without waiting for another message"
        );
        // Lost with nothing queued: the drainer is woken for the notice alone.
        outbox.report_lost(1, 4);
        assert!(!outbox.is_finished());
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        assert_eq!(notices_in(&flat(&mut taken)), vec![Err((1, 4))]);
        // Followed by a message of its topic: the notice goes just before it, not before
        // another topic's.
        outbox.report_lost(1, 7);
        outbox.append_messages(2, &[b"other"], 10);
        outbox.append_messages(1, &[b"next"], 10);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        assert_eq!(
            notices_in(&flat(&mut taken)),
            vec![Ok(b"other".to_vec()), Err((1, 7)), Ok(b"next".to_vec())]
        );
        // An aborted outbox tells nothing.
        outbox.report_lost(1, 1);
        outbox.abort();
        assert!(!outbox.take(&mut Drained::default()));
    }
}

#[cfg(test)]
mod enveloped_tests {
    use super::*;
    use crate::envelope::{EnvelopeView, Headers};
    use crate::peek_frame;

    #[test]
    fn enveloped_messages_count_against_the_message_limit_and_read_back() {
        let outbox = Outbox::for_publishing();
        let mut headers = Headers::new();
        headers.insert("k", "v").expect("valid header");
        let envelope = Envelope {
            headers: Some(&headers),
            ..Envelope::default()
        };
        let append = |payload: &[u8]| {
            outbox
                .append_enveloped(4, &envelope, payload, 2)
                .expect("small frame")
        };
        assert_eq!(append(b"one"), Appended::Queued(1));
        assert_eq!(outbox.append_messages(4, &[b"two"], 2), Appended::Queued(1));
        assert_eq!(
            append(b"three"),
            Appended::Queued(0),
            "the limit is reached"
        );
        assert_eq!(outbox.queued_messages(), 2);
        let mut drained = Drained::default();
        assert!(outbox.take(&mut drained));
        let bytes = drained.flatten();
        let (view, used) = peek_frame(&bytes, 1 << 20)
            .expect("decodes")
            .expect("whole");
        assert_eq!(view.kind, kind::PUBLISH_ENVELOPE);
        let (topic_id, message) = view.message().expect("a message");
        assert_eq!(topic_id, 4);
        let read = EnvelopeView::parse(message).expect("valid envelope");
        assert_eq!(read.payload, b"one");
        assert_eq!(read.headers().collect::<Vec<_>>(), vec![("k", "v")]);
        let (view, _) = peek_frame(&bytes[used..], 1 << 20)
            .expect("decodes")
            .expect("whole");
        assert_eq!(view.kind, kind::PUBLISH);
        outbox.close();
        assert_eq!(append(b"late"), Appended::Closed);
    }
}
