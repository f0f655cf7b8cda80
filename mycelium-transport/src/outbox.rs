//! A bounded, coalescing queue of encoded frames travelling toward one peer.
//!
//! - Producers (publishers' connection tasks, the topic logic, control replies) append whole
//!   frames under one short lock; the single drainer (a connection's writer task, or an in-process
//!   subscription) takes *everything* queued in one swap, so one `write` carries every frame
//!   that arrived since the last one: writes are coalesced per wake-up, never per message.
//! - Message frames count against a limit chosen by the caller (the topic's `buffer_size`, capped
//!   by the connection's `channel_capacity`) and against [`OUTBOX_MAX_BYTES`]; control frames do
//!   not, so a reply can always be queued.
//! - Under `backpressure = "drop_oldest"` the topic makes room with [`Outbox::evict_oldest`]:
//!   the oldest message frames of one topic that the drainer has not taken yet are cut out
//!   (control frames and other topics' frames stay, in order), and a `Lagged` notice of how
//!   many takes their place, just before the first message of the topic still queued.
//! - Messages lost for the peer after everything queued of their topic (`drop_newest`, the
//!   tail of a `drop_oldest` batch, losses before the broker could route them) are noted with
//!   [`Outbox::report_lost`] and told at once: a `Lagged` notice goes out just before the
//!   topic's next message, or at the end of the drainer's next take, whichever comes first, so
//!   a loss at the end of a burst is reported without waiting for a message that may never
//!   come. Notices of one gap are merged, so a stopped peer costs one notice per gap, not one
//!   per drop.
//! - Closing is one-way. [`Outbox::close`] lets the drainer flush what is queued and then stop;
//!   [`Outbox::abort`] discards it. Appends after either are refused, so a dead peer costs
//!   publishers nothing.
//! - The drainer is woken only on the empty → non-empty transition, and blocked producers only
//!   when they have asked for space: no wake-up per message.
//! - Buffers keep their capacity while busy (refilling fresh memory costs more than the
//!   copying), and give it back when the connection is idle: [`Outbox::release_idle`] frees
//!   the queue's empty buffer and asks the drainer of [`Outbox::flush_until_closed`] to free
//!   its own, so an idle peer holds a few hundred bytes here, not the largest burst it saw.
//! - A publisher's batch read off its socket ([`FrameRun`]) is queued by reference, not copied,
//!   when it is large: every subscriber's outbox holds a slice of the same buffer, and the
//!   writer hands the slices to one vectored `write`. Small runs are copied (cheaper than a
//!   refcount and an iovec), and an outbox holds at most [`MAX_SHARED_SEGMENTS`] shared slices,
//!   which bounds the read buffers a slow subscriber can keep alive.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::frame::MESSAGE_OVERHEAD;
use crate::{codec, frame::kind, Frame};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Bytes an outbox may hold before message appends count as full, whatever the message limit.
/// Bounds the memory one slow peer can pin, and keeps every drained buffer small enough to be
/// reused (see `REUSE_CAPACITY`): at 2 GB/s, 8 MiB is 4 ms of smoothing, on top of the
/// socket's own 4 MiB. An outbox may exceed it by one message, and an empty outbox always
/// accepts one, so a message larger than this still moves.
pub const OUTBOX_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Capacity a drained buffer keeps for reuse. A full outbox (the steady state behind a slow
/// reader) is at most [`OUTBOX_MAX_BYTES`] plus one message, so its buffers are reused instead
/// of being freed and faulted in afresh on every drain, which cost more than the copying at
/// 1 KiB messages. Only a message larger than this makes a buffer that is dropped after use.
const REUSE_CAPACITY: usize = 2 * OUTBOX_MAX_BYTES;

/// A run of frames at least this long is queued by reference; a shorter one is copied.
pub const SHARE_MIN_BYTES: usize = 16 * 1024;

/// Shared slices an outbox may hold before further runs are copied. Each slice may keep a whole
/// read buffer (a few hundred KiB) alive, so this bounds what a slow subscriber pins.
pub const MAX_SHARED_SEGMENTS: usize = 64;

/// Slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// Whole `Deliver` frames back to back, and where each ends: a publisher's batch as read off its
/// socket, relabelled from `Publish`, ready to be queued toward subscribers without copying.
#[derive(Debug, Clone, Copy)]
pub struct FrameRun<'a> {
    frames: &'a Bytes,
    /// `ends[i]` is the offset just past frame `i`; increasing, the last is `frames.len()`.
    ends: &'a [usize],
}

impl<'a> FrameRun<'a> {
    /// A run over `frames` whose frames end at `ends` (see the field docs). The broker builds
    /// these from frames `peek_frame` accepted, so each holds at least a topic id.
    pub fn new(frames: &'a Bytes, ends: &'a [usize]) -> FrameRun<'a> {
        FrameRun { frames, ends }
    }

    /// Frames in the run.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the run holds no frame.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// The payload of frame `i`.
    pub fn payload(&self, i: usize) -> &'a [u8] {
        let frames: &'a [u8] = self.frames;
        &frames[self.start_of(i) + MESSAGE_OVERHEAD..self.ends[i]]
    }

    fn bytes(&self, range: Range<usize>) -> Range<usize> {
        self.start_of(range.start)..self.start_of(range.end)
    }
}

/// What a drainer took out of an outbox: shared slices, then copied frames, in queue order.
#[derive(Debug, Default)]
pub struct Drained {
    segments: VecDeque<Bytes>,
    tail: BytesMut,
}

impl Drained {
    /// True when nothing is left to write.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.tail.is_empty()
    }

    /// Writes everything with vectored writes, then empties itself (keeping the tail's capacity
    /// for reuse).
    pub async fn write_all<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        let mut tail_written = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for segment in self.segments.iter().take(MAX_IOVECS - 1) {
                slices[count] = IoSlice::new(segment);
                count += 1;
            }
            if count < MAX_IOVECS - 1 && tail_written < self.tail.len() {
                slices[count] = IoSlice::new(&self.tail[tail_written..]);
                count += 1;
            }
            if count == 0 {
                break;
            }
            let mut written = writer.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while written > 0 {
                match self.segments.front_mut() {
                    Some(front) if front.len() <= written => {
                        written -= front.len();
                        self.segments.pop_front();
                    }
                    Some(front) => {
                        front.advance(written);
                        written = 0;
                    }
                    None => {
                        tail_written += written;
                        written = 0;
                    }
                }
            }
        }
        self.tail.clear();
        Ok(())
    }

    /// Everything drained, copied into one byte string (for tests and diagnostics: the
    /// writer hands the chunks to a vectored write instead).
    pub fn flatten(&mut self) -> Vec<u8> {
        let mut chunks = VecDeque::new();
        self.drain_chunks(&mut chunks);
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// Moves every frame out as `Bytes` chunks, in order (for in-process drainers).
    pub fn drain_chunks(&mut self, out: &mut VecDeque<Bytes>) {
        out.extend(self.segments.drain(..));
        if !self.tail.is_empty() {
            // Hand the whole buffer over rather than `split` it: a split would give the rest of
            // its capacity back to the outbox, shared, and the next append that outgrows it
            // allocates anyway; measured 1.6 M -> 3.6 M msg/s for in-process 1 KiB publishes.
            out.push_back(std::mem::take(&mut self.tail).freeze());
        }
    }
}

/// What an append of messages achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// This many leading messages were queued (possibly all of them); the rest did not fit.
    Queued(usize),
    /// The outbox is closed: nothing was queued and nothing ever will be.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    /// Shared slices queued before `tail`, in order.
    segments: VecDeque<Bytes>,
    /// Frames copied in after every segment.
    tail: BytesMut,
    /// Bytes in `segments` and `tail`.
    bytes: usize,
    /// Message frames queued (control frames are not counted).
    messages: usize,
    /// Message frames queued per topic id, for the per-subscription limit; few entries (one
    /// per topic this connection subscribes to), so a vector beats a map.
    per_topic: Vec<(u32, usize)>,
    /// Set by `close`/`abort`; appends are refused from then on.
    closed: bool,
    /// A producer is waiting for space; the drainer must wake it after taking.
    space_wanted: bool,
    /// While non-zero the drainer may not take: see [`Outbox::append_control_held`].
    holds: usize,
    /// Takes that found something: whether the peer is taking what is sent to it
    /// ([`Outbox::progress`]).
    takes: u64,
    /// Set by [`Outbox::release_idle`] for the drainer: give back the buffer you hold.
    release_wanted: bool,
    /// The drainer took something since it last gave its buffer back: it may hold capacity.
    drainer_holds: bool,
    /// Messages per topic id lost after everything of that topic queued here and not told
    /// yet ([`Outbox::report_lost`]); few entries, usually none. Each becomes a `Lagged`
    /// notice just before the topic's next message, or at the end of the next take.
    lost: Vec<(u32, u64)>,
}

/// The room rule, over a topic's queued messages and the outbox's bytes, and whether the
/// broker-wide [`ByteBudget`] is spent: see [`State::has_room`]. Appends evaluate it with
/// running totals instead of re-reading the state per message. An empty outbox always takes
/// one message, whatever the budget says, so every subscriber keeps moving.
fn fits(queued_for_topic: usize, bytes: usize, max_messages: usize, spent: bool) -> bool {
    bytes == 0 || (queued_for_topic < max_messages && bytes < OUTBOX_MAX_BYTES && !spent)
}

/// Bytes queued in every outbox of a broker and not yet taken by their writers, against a
/// limit (`server.max_inflight_bytes`): past it, outboxes that hold anything take no more
/// messages, so the topics' backpressure applies as if each subscriber were full.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Changes the limit (a reload); outboxes follow at their next append.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes queued now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the queued bytes have reached the limit.
    pub fn is_spent(&self) -> bool {
        self.used() >= self.limit.load(Ordering::Relaxed)
    }

    /// Moves the count from `before` to `after` bytes for one outbox.
    fn settle(&self, before: usize, after: usize) {
        // Relaxed: a count, ordering nothing; each outbox's changes are made under its lock,
        // so its own contributions never go below zero.
        if after > before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

impl State {
    /// Whether one more message of `topic_id` may be queued under `max_messages` for that
    /// topic. `append_messages` and `wait_for_room` must agree on this exactly, or a producer
    /// would spin between "no room" and "room".
    ///
    /// The limit counts only this topic's messages, so a busy topic cannot use up a quiet
    /// one's room on the same connection; the byte limit covers the whole outbox. The byte
    /// limit is checked before the message, so an outbox may exceed it by one message; an
    /// empty outbox always takes one, so a message larger than the limit moves.
    fn has_room(&self, topic_id: u32, max_messages: usize, spent: bool) -> bool {
        fits(self.queued_for(topic_id), self.bytes, max_messages, spent)
    }

    fn queued_for(&self, topic_id: u32) -> usize {
        self.per_topic
            .iter()
            .find(|(t, _)| *t == topic_id)
            .map_or(0, |(_, n)| *n)
    }

    fn count(&mut self, topic_id: u32, added: usize) {
        self.messages += added;
        match self.per_topic.iter_mut().find(|(t, _)| *t == topic_id) {
            Some((_, n)) => *n += added,
            None => self.per_topic.push((topic_id, added)),
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Whether the drainer has something to take: frames, or losses to tell of.
    fn has_news(&self) -> bool {
        !self.is_empty() || !self.lost.is_empty()
    }

    /// Queues the notice of `topic_id`'s pending loss, if any: called just before a message
    /// of the topic is queued, which is where the gap is.
    fn tell_lost(&mut self, topic_id: u32) {
        if let Some(i) = self.lost.iter().position(|(t, _)| *t == topic_id) {
            let (_, skipped) = self.lost.swap_remove(i);
            self.bytes += encode_lagged(&mut self.tail, topic_id, skipped);
        }
    }

    /// Queues the notice of every pending loss, at the end: called when the drainer takes, so
    /// that a loss nothing follows is told now.
    fn tell_all_lost(&mut self) {
        for (topic_id, skipped) in std::mem::take(&mut self.lost) {
            self.bytes += encode_lagged(&mut self.tail, topic_id, skipped);
        }
    }

    /// Queues `frames` (whole frames) by reference, after whatever is in the tail.
    fn push_shared(&mut self, frames: Bytes) {
        if !self.tail.is_empty() {
            let copied = self.tail.split().freeze();
            self.segments.push_back(copied);
        }
        self.bytes += frames.len();
        self.segments.push_back(frames);
    }

    fn shared_segments(&self) -> usize {
        self.segments.len()
    }

    /// Cuts up to `max` of the oldest message frames (`kind`) of `topic_id` out of the queue;
    /// returns how many it cut. Segments stay zero-copy (a cut segment becomes the slices
    /// around the cut); the tail is advanced past the cut frames, and the frames of other
    /// topics (or control frames) that sat among them are moved into a small copied segment
    /// ahead of it, so queue order never changes.
    ///
    /// The peer is told where the gap is: a `Lagged` notice of the topic goes just after the
    /// last frame cut (before the first message of the topic left). Every earlier notice of
    /// the topic lies among the cut messages, so it is cut too and its count added: a peer
    /// that keeps losing its oldest messages gets one notice, not one per eviction.
    fn evict_oldest(&mut self, topic_id: u32, kind: u8, max: usize) -> usize {
        let wanted = max.min(self.queued_for(topic_id));
        let mut left = wanted;
        if left == 0 {
            return 0;
        }
        let mut cut_bytes = 0;
        let mut told = 0u64;
        // Where in `segments` the notice goes when the last cut is in a segment.
        let mut notice_at = None;
        let mut segments = VecDeque::with_capacity(self.segments.len() + 2);
        for segment in std::mem::take(&mut self.segments) {
            if left == 0 {
                segments.push_back(segment);
                continue;
            }
            let cuts = frames_to_cut(&segment, topic_id, kind, &mut left, &mut told);
            let mut at = 0;
            for cut in cuts {
                if cut.start > at {
                    segments.push_back(segment.slice(at..cut.start));
                }
                cut_bytes += cut.len();
                at = cut.end;
                notice_at = Some(segments.len());
            }
            if at < segment.len() {
                segments.push_back(segment.slice(at..));
            }
        }
        let cuts = if left > 0 {
            frames_to_cut(&self.tail, topic_id, kind, &mut left, &mut told)
        } else {
            Vec::new()
        };
        let cut = wanted - left;
        let skipped = (cut as u64).saturating_add(told);
        let mut notice_bytes = 0;
        if let Some(last) = cuts.last() {
            let end = last.end;
            let mut kept = BytesMut::new();
            let mut at = 0;
            for cut in &cuts {
                kept.extend_from_slice(&self.tail[at..cut.start]);
                cut_bytes += cut.len();
                at = cut.end;
            }
            notice_bytes = encode_lagged(&mut kept, topic_id, skipped);
            segments.push_back(kept.freeze());
            self.tail.advance(end);
        } else if let Some(i) = notice_at {
            let mut notice = BytesMut::new();
            notice_bytes = encode_lagged(&mut notice, topic_id, skipped);
            segments.insert(i, notice.freeze());
        }
        self.segments = segments;
        self.bytes = self.bytes - cut_bytes + notice_bytes;
        self.messages -= cut;
        if let Some((_, n)) = self.per_topic.iter_mut().find(|(t, _)| *t == topic_id) {
            *n -= cut;
        }
        cut
    }
}

/// Writes a `Lagged` notice into `dst`; returns its length.
fn encode_lagged(dst: &mut BytesMut, topic_id: u32, skipped: u64) -> usize {
    let before = dst.len();
    let frame = Frame::Lagged { topic_id, skipped };
    if let Err(error) = codec::encode_frame(&frame, dst) {
        // A fixed-size frame: failing here is a bug, and the count is lost with it.
        tracing::error!(%error, "could not encode a Lagged notice");
    }
    dst.len() - before
}

/// The byte ranges of the first message frames (`kind`, on `topic_id`) in `frames`, at most
/// `*left` of them (lowered by as many), and of the topic's `Lagged` notices among and before
/// them (their counts added to `*told`); adjacent frames make one range. `frames` holds whole
/// frames that this outbox encoded or that the broker's reader validated, so a length that
/// runs past the end only ends the walk.
fn frames_to_cut(
    frames: &[u8],
    topic_id: u32,
    kind: u8,
    left: &mut usize,
    told: &mut u64,
) -> Vec<Range<usize>> {
    /// A `Lagged` frame: header, topic id, count.
    const LAGGED_LEN: usize = MESSAGE_OVERHEAD + 8;
    let mut cuts: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    while *left > 0 && frames.len() - at >= MESSAGE_OVERHEAD {
        let header = &frames[at..at + MESSAGE_OVERHEAD];
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(end) = at.checked_add(4 + len).filter(|&end| end <= frames.len()) else {
            break;
        };
        let topic = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
        let cut = if topic != topic_id {
            false
        } else if header[5] == kind {
            *left -= 1;
            true
        } else if header[5] == kind::LAGGED && end - at == LAGGED_LEN {
            let mut count = [0u8; 8];
            count.copy_from_slice(&frames[at + MESSAGE_OVERHEAD..end]);
            *told = told.saturating_add(u64::from_le_bytes(count));
            true
        } else {
            false
        };
        if cut {
            match cuts.last_mut() {
                Some(last) if last.end == at => last.end = end,
                _ => cuts.push(at..end),
            }
        }
        at = end;
    }
    cuts
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
    /// A new, empty, open outbox whose messages are `Deliver` frames (broker → client).
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
        self.append(topic_id, payloads, Some(max_messages))
    }

    /// Appends messages, within `max_messages` and the byte limit when a limit is given.
    fn append(&self, topic_id: u32, payloads: &[&[u8]], max_messages: Option<usize>) -> Appended {
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
            None => payloads.len(),
            Some(max) => {
                let (mut bytes, mut n) = (state.bytes, 0);
                while n < payloads.len() && fits(already + n, bytes, max, spent) {
                    bytes += payloads[n].len() + MESSAGE_OVERHEAD;
                    n += 1;
                }
                n
            }
        };
        if queued > 0 && !state.lost.is_empty() {
            state.tell_lost(topic_id);
        }
        for payload in &payloads[..queued] {
            codec::encode_message(&mut state.tail, self.message_kind, topic_id, payload);
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
    /// they must already be `Deliver` frames of this outbox's topic.
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
    /// consumer's credit already bounds.
    pub fn append_credited(&self, topic_id: u32, payloads: &[&[u8]]) -> Appended {
        self.append(topic_id, payloads, None)
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
        let evicted = state.evict_oldest(topic_id, self.message_kind, max);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peek_frame;

    #[test]
    fn a_spent_budget_stops_outboxes_that_hold_something_until_one_is_taken() {
        let budget = Arc::new(ByteBudget::new(100));
        let (a, b) = (
            Outbox::with_budget(budget.clone()),
            Outbox::with_budget(budget.clone()),
        );
        let big = [0u8; 80];
        let one = |o: &Outbox, n: usize| match o.append_messages(1, &vec![&big[..]; n], 10) {
            Appended::Queued(q) => q,
            Appended::Closed => panic!("open"),
        };
        assert_eq!(one(&a, 1), 1);
        assert_eq!(budget.used(), 90);
        // The budget is looked at once per append: not spent yet, so b takes the whole batch.
        assert_eq!(one(&b, 2), 2);
        assert!(budget.is_spent());
        assert_eq!(
            one(&a, 1),
            0,
            "spent: an outbox holding something takes no more"
        );
        assert!(!a.has_room(1, 10));
        // Control frames are not messages: they still go out, and are counted.
        assert!(a.append_control(&Frame::Ping { token: 1 }));
        assert_eq!(budget.used(), 270 + 14);
        // Taking gives the bytes back; an empty outbox always takes one, so nobody starves.
        let mut drained = Drained::default();
        assert!(a.take(&mut drained));
        assert_eq!(budget.used(), 180);
        assert_eq!(one(&a, 2), 1);
        assert_eq!(one(&b, 1), 0);
        // An outbox dropped (its peer gone) gives back what it held.
        drop(b);
        assert_eq!(budget.used(), 90);
        // A reload may raise the limit.
        budget.set_limit(1000);
        assert_eq!(one(&a, 5), 5);
    }

    fn flat(taken: &mut Drained) -> Vec<u8> {
        taken.flatten()
    }

    fn payloads_in(buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let Some((view, used)) =
            peek_frame(rest, usize::MAX).expect("outbox holds valid frames")
        {
            if let Some((_, payload)) = view.message() {
                out.push(payload.to_vec());
            }
            rest = &rest[used..];
        }
        out
    }

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
        // Regression: the append and the wait once disagreed near the byte limit, and a
        // publisher spun between "room" and "no room" without yielding to the drainer.
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

    /// `n` Deliver frames of `size`-byte payloads on topic 1, back to back, and their ends.
    fn run_of(n: usize, size: usize) -> (Bytes, Vec<usize>) {
        let mut buf = BytesMut::new();
        let mut ends = Vec::new();
        for i in 0..n {
            let payload = vec![i as u8; size];
            codec::encode_message(&mut buf, kind::DELIVER, 1, &payload);
            ends.push(buf.len());
        }
        (buf.freeze(), ends)
    }

    #[test]
    fn a_large_run_is_queued_by_reference_and_a_small_one_by_copy() {
        let outbox = Outbox::new();
        let (big, big_ends) = run_of(64, 1024);
        let (small, small_ends) = run_of(3, 8);
        let big_run = FrameRun::new(&big, &big_ends);
        let small_run = FrameRun::new(&small, &small_ends);
        assert_eq!(
            outbox.append_run(1, &small_run, 0..3, Some(1000)),
            Appended::Queued(3)
        );
        assert_eq!(
            outbox.append_run(1, &big_run, 0..64, Some(1000)),
            Appended::Queued(64)
        );
        assert_eq!(
            outbox.append_run(1, &small_run, 0..2, Some(1000)),
            Appended::Queued(2)
        );
        assert_eq!(outbox.queued_messages(), 69);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let shared = taken.segments.iter().any(|s| s.as_ptr() == big.as_ptr());
        assert!(shared, "the large run was not queued by reference");
        let payloads = payloads_in(&flat(&mut taken));
        assert_eq!(payloads.len(), 69);
        assert_eq!(payloads[0], vec![0u8; 8]);
        assert_eq!(payloads[3], vec![0u8; 1024]);
        assert_eq!(payloads[66], vec![63u8; 1024]);
        assert_eq!(payloads[68], vec![1u8; 8]);
    }

    #[test]
    fn a_run_stops_at_the_message_limit_on_a_frame_boundary() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(10, 100);
        let run = FrameRun::new(&frames, &ends);
        assert_eq!(
            outbox.append_run(1, &run, 2..10, Some(5)),
            Appended::Queued(5)
        );
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let payloads = payloads_in(&flat(&mut taken));
        let expected: Vec<Vec<u8>> = (2..7).map(|i| vec![i as u8; 100]).collect();
        assert_eq!(payloads, expected);
        assert_eq!(run.payload(9), &[9u8; 100][..]);
    }

    #[tokio::test]
    async fn a_vectored_write_delivers_every_byte_in_order_through_partial_writes() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(200, 1024);
        let run = FrameRun::new(&frames, &ends);
        for chunk in 0..10 {
            outbox.append_messages(1, &[b"copied"], usize::MAX);
            outbox.append_run(1, &run, chunk * 20..chunk * 20 + 20, None);
        }
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        // A small duplex buffer forces many partial writes.
        let (mut tx, mut rx) = tokio::io::duplex(1000);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut all)
                .await
                .map(|_| all)
        });
        taken.write_all(&mut tx).await.expect("written");
        assert!(taken.is_empty());
        drop(tx);
        let all = reader.await.expect("joined").expect("read");
        let payloads = payloads_in(&all);
        assert_eq!(payloads.len(), 210);
        assert_eq!(payloads[0], b"copied".to_vec());
        assert_eq!(payloads[1], vec![0u8; 1024]);
        assert_eq!(payloads[209], vec![199u8; 1024]);
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

    /// Every frame in `buf`: (topic id, payload) for messages, `None` for control frames.
    fn frames_in(buf: &[u8]) -> Vec<Option<(u32, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
            out.push(view.message().map(|(t, p)| (t, p.to_vec())));
            rest = &rest[used..];
        }
        out
    }

    #[test]
    fn evicting_cuts_only_the_oldest_messages_of_one_topic_and_keeps_the_rest_in_order() {
        let outbox = Outbox::new();
        let ping = Frame::Pong { token: 9 };
        outbox.append_messages(1, &[b"a1", b"a2"], 100);
        outbox.append_control(&ping);
        outbox.append_messages(2, &[b"b1"], 100);
        outbox.append_messages(1, &[b"a3", b"a4"], 100);
        assert_eq!(outbox.evict_oldest(1, 3), 3);
        assert_eq!(outbox.queued_messages(), 2);
        assert!(outbox.has_room(1, 2), "the topic's count went down");
        assert_eq!(outbox.evict_oldest(3, 5), 0, "no message of that topic");
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        // The notice of the three (`None`) sits where they were: before a4, after b1.
        assert_eq!(
            frames_in(&flat(&mut taken)),
            vec![
                None,
                Some((2, b"b1".to_vec())),
                None,
                Some((1, b"a4".to_vec()))
            ]
        );
    }

    /// Every `Lagged` notice in `buf`, as (topic id, skipped), with the messages around them:
    /// `Ok(payload)` for a message, `Err((topic, skipped))` for a notice.
    fn notices_in(buf: &[u8]) -> Vec<Result<Vec<u8>, (u32, u64)>> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let Some((view, used)) = peek_frame(rest, usize::MAX).expect("valid frames") {
            match view.message() {
                Some((_, payload)) => out.push(Ok(payload.to_vec())),
                None => {
                    if let Frame::Lagged { topic_id, skipped } = view.to_frame().expect("a frame") {
                        out.push(Err((topic_id, skipped)));
                    }
                }
            }
            rest = &rest[used..];
        }
        out
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

    #[test]
    fn repeated_evictions_leave_one_notice_just_before_the_oldest_message_kept() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(40, 400);
        let run = FrameRun::new(&frames, &ends);
        // A shared run, copied messages of another topic, a copied message: notices end up
        // in segments and in the tail.
        assert_eq!(
            outbox.append_run(1, &run, 0..20, None),
            Appended::Queued(20)
        );
        outbox.append_messages(2, &[b"b"], 10);
        outbox.append_messages(1, &[b"t"], 100);
        let mut evicted = 0;
        for n in [3, 5, 1, 11] {
            evicted += outbox.evict_oldest(1, n);
        }
        assert_eq!(evicted, 20);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let mut expected = vec![Err((1, 20))];
        expected.push(Ok(b"b".to_vec()));
        expected.push(Ok(b"t".to_vec()));
        assert_eq!(notices_in(&flat(&mut taken)), expected);
        // Evicting everything tells everything, once.
        outbox.append_messages(1, &[b"x", b"y"], 100);
        outbox.evict_oldest(1, 1);
        outbox.evict_oldest(1, 1);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        assert_eq!(notices_in(&flat(&mut taken)), vec![Err((1, 2))]);
    }

    #[test]
    fn evicting_from_a_shared_run_keeps_the_rest_of_it_by_reference() {
        let outbox = Outbox::new();
        let (frames, ends) = run_of(100, 400);
        let run = FrameRun::new(&frames, &ends);
        assert_eq!(
            outbox.append_run(1, &run, 0..100, None),
            Appended::Queued(100)
        );
        outbox.append_messages(1, &[b"last"], 1000);
        assert_eq!(outbox.evict_oldest(1, 30), 30);
        assert_eq!(outbox.queued_messages(), 71);
        let mut taken = Drained::default();
        assert!(outbox.take(&mut taken));
        let got = payloads_in(&flat(&mut taken));
        assert_eq!(got.len(), 71);
        assert_eq!(got[0], run.payload(30));
        assert_eq!(got[70], b"last");
        // Evicting more than is queued takes what there is, from a closed outbox nothing.
        outbox.append_messages(1, &[b"x"], 10);
        assert_eq!(outbox.evict_oldest(1, 10), 1);
        outbox.append_messages(1, &[b"y"], 10);
        outbox.close();
        assert_eq!(outbox.evict_oldest(1, 10), 0);
    }
}
