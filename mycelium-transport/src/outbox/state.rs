//! What an outbox's lock guards: the queued frames, their counts, and losses not told yet.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::outbox::OUTBOX_MAX_BYTES;
use crate::{codec, Frame};

#[derive(Debug, Default)]
pub(super) struct State {
    /// Shared slices queued before `tail`, in order.
    pub(super) segments: VecDeque<Bytes>,
    /// Frames copied in after every segment.
    pub(super) tail: BytesMut,
    /// Bytes in `segments` and `tail`.
    pub(super) bytes: usize,
    /// Message frames queued (control frames are not counted).
    pub(super) messages: usize,
    /// Message frames queued per topic id, for the per-subscription limit; few entries (one
    /// per topic this connection subscribes to), so a vector beats a map.
    pub(super) per_topic: Vec<(u32, usize)>,
    /// Set by `close`/`abort`; appends are refused from then on.
    pub(super) closed: bool,
    /// A producer is waiting for space; the drainer must wake it after taking.
    pub(super) space_wanted: bool,
    /// While non-zero the drainer may not take: see [`Outbox::append_control_held`].
    pub(super) holds: usize,
    /// Takes that found something: whether the peer is taking what is sent to it
    /// ([`Outbox::progress`]).
    pub(super) takes: u64,
    /// Set by [`Outbox::release_idle`] for the drainer: give back the buffer you hold.
    pub(super) release_wanted: bool,
    /// The drainer took something since it last gave its buffer back: it may hold capacity.
    pub(super) drainer_holds: bool,
    /// Messages per topic id lost after everything of that topic queued here and not told
    /// yet ([`Outbox::report_lost`]); few entries, usually none. Each becomes a `Lagged`
    /// notice just before the topic's next message, or at the end of the next take.
    pub(super) lost: Vec<(u32, u64)>,
}

/// The room rule, over a topic's queued messages and the outbox's bytes, and whether the
/// broker-wide [`ByteBudget`] is spent: see [`State::has_room`]. Appends evaluate it with
/// running totals instead of re-reading the state per message. An empty outbox always takes
/// one message, whatever the budget says, so every subscriber keeps moving.
pub(super) fn fits(
    queued_for_topic: usize,
    bytes: usize,
    max_messages: usize,
    spent: bool,
) -> bool {
    bytes == 0 || (queued_for_topic < max_messages && bytes < OUTBOX_MAX_BYTES && !spent)
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
    pub(super) fn has_room(&self, topic_id: u32, max_messages: usize, spent: bool) -> bool {
        fits(self.queued_for(topic_id), self.bytes, max_messages, spent)
    }

    pub(super) fn queued_for(&self, topic_id: u32) -> usize {
        self.per_topic
            .iter()
            .find(|(t, _)| *t == topic_id)
            .map_or(0, |(_, n)| *n)
    }

    pub(super) fn count(&mut self, topic_id: u32, added: usize) {
        self.messages += added;
        match self.per_topic.iter_mut().find(|(t, _)| *t == topic_id) {
            Some((_, n)) => *n += added,
            None => self.per_topic.push((topic_id, added)),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Whether the drainer has something to take: frames, or losses to tell of.
    pub(super) fn has_news(&self) -> bool {
        !self.is_empty() || !self.lost.is_empty()
    }

    /// Queues the notice of `topic_id`'s pending loss, if any: called just before a message
    /// of the topic is queued, which is where the gap is.
    pub(super) fn tell_lost(&mut self, topic_id: u32) {
        if let Some(i) = self.lost.iter().position(|(t, _)| *t == topic_id) {
            let (_, skipped) = self.lost.swap_remove(i);
            self.bytes += encode_lagged(&mut self.tail, topic_id, skipped);
        }
    }

    /// Queues the notice of every pending loss, at the end: called when the drainer takes, so
    /// that a loss nothing follows is told now.
    pub(super) fn tell_all_lost(&mut self) {
        for (topic_id, skipped) in std::mem::take(&mut self.lost) {
            self.bytes += encode_lagged(&mut self.tail, topic_id, skipped);
        }
    }

    /// Queues `frames` (whole frames) by reference, after whatever is in the tail.
    pub(super) fn push_shared(&mut self, frames: Bytes) {
        if !self.tail.is_empty() {
            let copied = self.tail.split().freeze();
            self.segments.push_back(copied);
        }
        self.bytes += frames.len();
        self.segments.push_back(frames);
    }

    pub(super) fn shared_segments(&self) -> usize {
        self.segments.len()
    }
}

/// Writes a `Lagged` notice into `dst`; returns its length.
pub(super) fn encode_lagged(dst: &mut BytesMut, topic_id: u32, skipped: u64) -> usize {
    let before = dst.len();
    let frame = Frame::Lagged { topic_id, skipped };
    if let Err(error) = codec::encode_frame(&frame, dst) {
        // A fixed-size frame: failing here is a bug, and the count is lost with it.
        tracing::error!(%error, "could not encode a Lagged notice");
    }
    dst.len() - before
}
