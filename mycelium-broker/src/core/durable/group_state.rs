//! What a consumer group knows of its messages and members, without any I/O: the bookkeeping
//! its task ([`group`](super::group)) drives.
//!
//! - Every offset below `next_fresh` was read from the log once. Each of those the group has
//!   not finished with is *outstanding*, in one of four places: pending on a member (with an
//!   ack deadline), ready to be delivered again, delayed until a time (a `RequeueAfter` nack, a
//!   dead-letter to try again), or in hand (taken by the task this moment). An offset below
//!   `next_fresh` that is not outstanding is done: acknowledged, dead-lettered, or absent from
//!   the log (skipped corruption, deleted by retention).
//! - So the committed position (every offset below it is done) is the lowest outstanding
//!   offset, or `next_fresh` when none is; it never goes back.
//! - A message pending on a member leaves it by that member's ack (done), its nack, its
//!   deadline passing, or the member leaving (ready again). An ack or nack from any other member
//!   is ignored: a late answer after the message went to someone else.
//! - Members are dealt round-robin, each up to its room for this round (what its prefetch and
//!   its sink allow, worked out by the task).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_transport::NackAction;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::core::delivery::Delivery;
use crate::core::ids::TopicId;

/// A member's id, unique within its topic's groups.
pub(crate) type MemberId = u64;

/// One member of a group: a durable subscription naming it.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: MemberId,
    pub(crate) sink: Arc<dyn Delivery>,
    /// The subscription's id: what its deliveries carry.
    pub(crate) sub_id: TopicId,
    /// At most this many of its messages are pending (at least 1).
    pub(crate) prefetch: u32,
    /// Messages pending on it.
    pub(crate) in_flight: u32,
    /// Messages it may still be dealt this round.
    pub(crate) room: u32,
    /// The task waiting for its sink to have room, when it had none; aborted when the member
    /// leaves, so the wait never outlives it.
    pub(crate) room_wait: Option<AbortHandle>,
    /// The bytes dealt to it this round, back to back, and each message's offset and span:
    /// kept between rounds so dealing reuses their memory.
    pub(crate) batch: BytesMut,
    pub(crate) spans: Vec<(u64, Range<usize>)>,
}

impl Member {
    /// A member with nothing pending.
    pub(crate) fn new(
        id: MemberId,
        sink: Arc<dyn Delivery>,
        sub_id: TopicId,
        prefetch: u32,
    ) -> Member {
        Member {
            id,
            sink,
            sub_id,
            prefetch: prefetch.max(1),
            in_flight: 0,
            room: 0,
            room_wait: None,
            batch: BytesMut::new(),
            spans: Vec::new(),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(wait) = self.room_wait.take() {
            wait.abort();
        }
    }
}

/// Where an outstanding message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Pending { member: MemberId, deadline: Instant },
    Ready,
    Delayed { due: Instant },
    InHand,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    /// Times it was delivered.
    deliveries: u32,
    place: Place,
}

/// What a nack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nacked {
    /// The message was not pending on that member: nothing.
    Ignored,
    /// It waits to be delivered again (now or later).
    Requeued,
    /// It is in hand, to be dead-lettered now; it was delivered this many times.
    DeadLetter(u32),
}

/// See the module doc.
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    next_fresh: u64,
    outstanding: BTreeMap<u64, Outstanding>,
    /// Outstanding offsets ready to be delivered again, lowest first (so committed moves soonest).
    ready: BTreeSet<u64>,
    /// Outstanding offsets waiting for a time.
    delayed: BTreeSet<(Instant, u64)>,
    /// Pending offsets by ack deadline.
    deadlines: BTreeSet<(Instant, u64)>,
    pending: usize,
    members: Vec<Member>,
    /// The member dealt to next.
    turn: usize,
}

impl GroupState {
    /// A group with every offset below `start` done.
    pub(crate) fn starting_at(start: u64) -> GroupState {
        GroupState {
            next_fresh: start,
            ..GroupState::default()
        }
    }

    /// Every offset below this is done.
    pub(crate) fn committed(&self) -> u64 {
        self.outstanding
            .first_key_value()
            .map_or(self.next_fresh, |(&offset, _)| offset)
    }

    /// The next offset to read from the log.
    pub(crate) fn next_fresh(&self) -> u64 {
        self.next_fresh
    }

    /// Messages delivered and not answered.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// The members now.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    pub(crate) fn members_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }

    pub(crate) fn add_member(&mut self, member: Member) {
        self.members.push(member);
    }

    /// Removes a member; its pending messages are ready again at once. `None` if it is not one.
    pub(crate) fn remove_member(&mut self, id: MemberId) -> Option<Member> {
        let index = self.members.iter().position(|m| m.id == id)?;
        let member = self.members.remove(index);
        if self.turn > index {
            self.turn -= 1;
        }
        if member.in_flight > 0 {
            let mine: Vec<u64> = self
                .outstanding
                .iter()
                .filter(|(_, o)| matches!(o.place, Place::Pending { member, .. } if member == id))
                .map(|(&offset, _)| offset)
                .collect();
            for offset in mine {
                self.unpend(offset);
                self.place(offset, Place::Ready);
            }
        }
        Some(member)
    }

    /// `member` is done with `offset`; false (and nothing done) when it was not pending on it.
    pub(crate) fn ack(&mut self, member: MemberId, offset: u64) -> bool {
        if !self.is_pending_on(offset, member) {
            return false;
        }
        self.unpend(offset);
        self.outstanding.remove(&offset);
        true
    }

    /// `member` gives `offset` back.
    pub(crate) fn nack(
        &mut self,
        member: MemberId,
        offset: u64,
        action: NackAction,
        now: Instant,
    ) -> Nacked {
        if !self.is_pending_on(offset, member) {
            return Nacked::Ignored;
        }
        self.unpend(offset);
        match action {
            NackAction::Requeue => {
                self.place(offset, Place::Ready);
                Nacked::Requeued
            }
            NackAction::RequeueAfter(delay) => {
                self.place(offset, Place::Delayed { due: now + delay });
                Nacked::Requeued
            }
            NackAction::DeadLetter => {
                self.place(offset, Place::InHand);
                Nacked::DeadLetter(self.deliveries(offset))
            }
        }
    }

    /// Makes ready what waited until `now`: pending messages past their deadline, delayed ones
    /// due. Answers how many deadlines passed.
    pub(crate) fn release(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(deadline, offset)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.unpend(offset);
            self.place(offset, Place::Ready);
            expired += 1;
        }
        while let Some(&(due, offset)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            self.place(offset, Place::Ready);
        }
        expired
    }

    /// When something waiting is next due: an ack deadline or a delayed message.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let deadline = self.deadlines.first().map(|&(at, _)| at);
        let due = self.delayed.first().map(|&(at, _)| at);
        match (deadline, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes in hand the lowest ready message, with its delivery count.
    pub(crate) fn take_ready(&mut self) -> Option<(u64, u32)> {
        let offset = *self.ready.first()?;
        self.place(offset, Place::InHand);
        Some((offset, self.deliveries(offset)))
    }

    /// Takes in hand the message at `offset`, read fresh from the log (at or after
    /// `next_fresh`: the offsets between were absent).
    pub(crate) fn take_fresh(&mut self, offset: u64) {
        debug_assert!(offset >= self.next_fresh);
        self.next_fresh = offset + 1;
        self.outstanding.insert(
            offset,
            Outstanding {
                deliveries: 0,
                place: Place::InHand,
            },
        );
    }

    /// The message in hand was delivered to the member at `index`, which must answer by
    /// `deadline`. Answers its delivery count now.
    pub(crate) fn delivered(&mut self, offset: u64, index: usize, deadline: Instant) -> u32 {
        let Some(member) = self.members.get_mut(index) else {
            self.place(offset, Place::Ready);
            return self.deliveries(offset);
        };
        member.in_flight += 1;
        let id = member.id;
        self.pending += 1;
        self.deadlines.insert((deadline, offset));
        let Some(o) = self.outstanding.get_mut(&offset) else {
            return 0;
        };
        o.deliveries = o.deliveries.saturating_add(1);
        o.place = Place::Pending {
            member: id,
            deadline,
        };
        o.deliveries
    }

    /// The message in hand was not delivered: it is ready again, its count unchanged.
    pub(crate) fn put_back(&mut self, offset: u64) {
        self.place(offset, Place::Ready);
    }

    /// The message in hand is to be tried again at `due`.
    pub(crate) fn retry_at(&mut self, offset: u64, due: Instant) {
        self.place(offset, Place::Delayed { due });
    }

    /// The group is done with the message in hand (dead-lettered, or gone from the log).
    pub(crate) fn done(&mut self, offset: u64) {
        self.unpend(offset);
        self.place(offset, Place::InHand);
        self.outstanding.remove(&offset);
    }

    /// Moves the group past what the log no longer holds: every offset below `first_offset`
    /// is done. Answers how many offsets it skipped that were not done.
    pub(crate) fn skip_to(&mut self, first_offset: u64) -> u64 {
        let committed = self.committed();
        if committed >= first_offset {
            return 0;
        }
        let gone: Vec<u64> = self
            .outstanding
            .range(..first_offset)
            .map(|(&offset, _)| offset)
            .collect();
        for &offset in &gone {
            self.done(offset);
        }
        let unread = first_offset.saturating_sub(self.next_fresh);
        self.next_fresh = self.next_fresh.max(first_offset);
        gone.len() as u64 + unread
    }

    /// Brings `next_fresh` back to the log's end when it lies beyond (the log lost its tail);
    /// answers whether it did. Nothing is outstanding there.
    pub(crate) fn clamp_to(&mut self, next_offset: u64) -> bool {
        if self.next_fresh <= next_offset {
            return false;
        }
        let beyond: Vec<u64> = self
            .outstanding
            .range(next_offset..)
            .map(|(&offset, _)| offset)
            .collect();
        for offset in beyond {
            self.done(offset);
        }
        self.next_fresh = next_offset;
        true
    }

    /// The member to deal the next message to, round-robin among those with room this round.
    pub(crate) fn member_with_room(&self) -> Option<usize> {
        let n = self.members.len();
        (0..n)
            .map(|step| (self.turn + step) % n)
            .find(|&index| self.members[index].room > 0)
    }

    /// A message was dealt to the member at `index`: its room shrinks by one, and the next
    /// turn is the following member's.
    pub(crate) fn dealt_to(&mut self, index: usize) {
        if let Some(member) = self.members.get_mut(index) {
            member.room = member.room.saturating_sub(1);
            self.turn = (index + 1) % self.members.len();
        }
    }

    fn is_pending_on(&self, offset: u64, member: MemberId) -> bool {
        matches!(
            self.outstanding.get(&offset),
            Some(Outstanding { place: Place::Pending { member: m, .. }, .. }) if *m == member
        )
    }

    fn deliveries(&self, offset: u64) -> u32 {
        self.outstanding.get(&offset).map_or(0, |o| o.deliveries)
    }

    /// Takes a pending message off its member and its deadline (it stays outstanding, in hand).
    fn unpend(&mut self, offset: u64) {
        let Some(o) = self.outstanding.get_mut(&offset) else {
            return;
        };
        let Place::Pending { member, deadline } = o.place else {
            return;
        };
        o.place = Place::InHand;
        self.deadlines.remove(&(deadline, offset));
        self.pending -= 1;
        if let Some(m) = self.members.iter_mut().find(|m| m.id == member) {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
    }

    /// Moves an outstanding message that is not pending to `place`, keeping the indexes.
    fn place(&mut self, offset: u64, place: Place) {
        let Some(o) = self.outstanding.get_mut(&offset) else {
            return;
        };
        match o.place {
            Place::Ready => {
                self.ready.remove(&offset);
            }
            Place::Delayed { due } => {
                self.delayed.remove(&(due, offset));
            }
            Place::Pending { .. } | Place::InHand => {}
        }
        o.place = place;
        match place {
            Place::Ready => {
                self.ready.insert(offset);
            }
            Place::Delayed { due } => {
                self.delayed.insert((due, offset));
            }
            Place::Pending { .. } | Place::InHand => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use mycelium_transport::outbox::Outbox;

    fn member(id: MemberId, prefetch: u32) -> Member {
        Member::new(id, Arc::new(Outbox::new()), 1, prefetch)
    }

    /// Delivers `offset` fresh to the member at `index`.
    fn deliver_fresh(state: &mut GroupState, offset: u64, index: usize, deadline: Instant) {
        state.take_fresh(offset);
        state.delivered(offset, index, deadline);
    }

    #[test]
    fn committed_moves_over_contiguous_acks_and_absent_offsets() {
        let now = Instant::now();
        let mut state = GroupState::starting_at(10);
        state.add_member(member(1, 10));
        deliver_fresh(&mut state, 10, 0, now);
        deliver_fresh(&mut state, 11, 0, now);
        deliver_fresh(&mut state, 13, 0, now);
        assert_eq!(state.committed(), 10);
        assert!(state.ack(1, 11));
        assert_eq!(state.committed(), 10, "10 is still pending");
        assert!(state.ack(1, 10));
        assert_eq!(state.committed(), 13, "12 never existed");
        assert!(state.ack(1, 13));
        assert_eq!((state.committed(), state.pending()), (14, 0));
        assert!(!state.ack(1, 13), "a second ack is late");
    }

    #[test]
    fn only_the_member_a_message_is_pending_on_answers_for_it() {
        let now = Instant::now();
        let mut state = GroupState::starting_at(0);
        state.add_member(member(1, 10));
        state.add_member(member(2, 10));
        deliver_fresh(&mut state, 0, 0, now + Duration::from_secs(1));
        assert!(!state.ack(2, 0));
        assert_eq!(state.nack(2, 0, NackAction::Requeue, now), Nacked::Ignored);
        assert_eq!(state.release(now + Duration::from_secs(1)), 1);
        assert!(
            !state.ack(1, 0),
            "past its deadline it is not pending any more"
        );
        assert_eq!(state.take_ready(), Some((0, 1)));
        assert_eq!(state.delivered(0, 1, now), 2);
        assert!(state.ack(2, 0));
        assert_eq!(state.committed(), 1);
    }

    #[test]
    fn a_leaving_member_hands_its_pending_messages_back_at_once() {
        let now = Instant::now();
        let mut state = GroupState::starting_at(0);
        state.add_member(member(1, 10));
        state.add_member(member(2, 10));
        deliver_fresh(&mut state, 0, 0, now);
        deliver_fresh(&mut state, 1, 1, now);
        assert!(state.remove_member(1).is_some());
        assert_eq!((state.pending(), state.members().len()), (1, 1));
        assert_eq!(state.take_ready(), Some((0, 1)));
        assert_eq!(state.take_ready(), None);
        assert_eq!(state.next_wake(), Some(now), "only 1's deadline is left");
    }

    #[test]
    fn nacks_requeue_now_later_or_hand_over_for_dead_lettering() {
        let now = Instant::now();
        let mut state = GroupState::starting_at(0);
        state.add_member(member(1, 10));
        for offset in 0..3 {
            deliver_fresh(&mut state, offset, 0, now + Duration::from_secs(30));
        }
        assert_eq!(state.nack(1, 0, NackAction::Requeue, now), Nacked::Requeued);
        let later = NackAction::RequeueAfter(Duration::from_millis(50));
        assert_eq!(state.nack(1, 1, later, now), Nacked::Requeued);
        assert_eq!(
            state.nack(1, 2, NackAction::DeadLetter, now),
            Nacked::DeadLetter(1)
        );
        assert_eq!((state.pending(), state.members()[0].in_flight), (0, 0));
        assert_eq!(state.next_wake(), Some(now + Duration::from_millis(50)));
        assert_eq!(state.take_ready(), Some((0, 1)));
        assert_eq!(state.take_ready(), None, "1 waits for its delay");
        state.release(now + Duration::from_millis(50));
        assert_eq!(state.take_ready(), Some((1, 1)));
        state.done(2);
        assert_eq!(state.committed(), 0, "0 and 1 are in hand");
    }

    #[test]
    fn members_are_dealt_round_robin_within_their_room() {
        let mut state = GroupState::starting_at(0);
        state.add_member(member(1, 10));
        state.add_member(member(2, 10));
        state.members_mut()[0].room = 2;
        state.members_mut()[1].room = 1;
        let mut dealt = Vec::new();
        while let Some(index) = state.member_with_room() {
            state.dealt_to(index);
            dealt.push(index);
        }
        assert_eq!(dealt, vec![0, 1, 0]);
        state.members_mut()[1].room = 1;
        assert_eq!(
            state.member_with_room(),
            Some(1),
            "asking does not move the turn"
        );
        assert_eq!(state.member_with_room(), Some(1));
    }

    #[test]
    fn skipping_past_deleted_offsets_counts_what_was_not_done() {
        let now = Instant::now();
        let mut state = GroupState::starting_at(0);
        state.add_member(member(1, 10));
        deliver_fresh(&mut state, 0, 0, now);
        deliver_fresh(&mut state, 1, 0, now);
        assert!(state.ack(1, 1));
        assert_eq!(state.skip_to(5), 4, "0 pending, 2 3 4 unread");
        assert_eq!(
            (state.committed(), state.next_fresh(), state.pending()),
            (5, 5, 0)
        );
        assert_eq!(state.skip_to(3), 0);
        assert!(state.clamp_to(2));
        assert_eq!(state.committed(), 2);
    }
}
