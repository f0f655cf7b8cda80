//! One consumer group: its figures, its position file, and the task that deals its messages.
//!
//! - While a group has members, one tokio task owns its state ([`GroupState`]) and does
//!   everything: joins and leaves, acks and nacks (through a channel, so a connection never
//!   waits on the group), reading the log (woken by [`TopicLog::appended`]), ack deadlines and
//!   delayed requeues (one timer, for the earliest), dead-lettering. No lock is held across an
//!   await.
//! - The task reads the topic's settings once per pass (`ack_timeout_ms` when it delivers,
//!   `max_deliveries` when it deals), so a reload applies from the next pass.
//! - A message is dead-lettered with `max-deliveries` when it is dealt for the
//!   `max_deliveries + 1`-th time: when a member has room for it, so a group whose members are
//!   all full keeps it until one has.
//! - A member gets messages while fewer than its `prefetch` are pending on it and its sink has
//!   room for its subscription; when the sink has none, a small task waits for room and wakes
//!   the group. Messages to deliver again go before fresh ones; members are dealt round-robin,
//!   and each member's share of a pass is handed to its sink in one call.
//! - When its last member leaves, the task parks the group's state in its [`GroupEntry`] (so a
//!   group that comes back resumes where it was) and ends: an idle group costs no task, and
//!   holds nothing of its topic alive.
//! - The committed position is written (see `group_store`) at most every [`PERSIST_EVERY`]
//!   while it moves, and when the group parks; a crash loses at most that much, which is
//!   delivered again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mycelium_storage::{LogReader, ReadError, Record, StartAt};
use mycelium_transport::NackAction;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, WeakUnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::batch::{BatchRef, Item};
use crate::core::delivery::Delivered;
use crate::core::durable::dead_letter::{DeadLetterHeaders, DeadLetterReason, DeadLetters};
use crate::core::durable::group_message::write_delivery;
use crate::core::durable::group_state::{GroupState, Member, MemberId, Nacked};
use crate::core::durable::group_store::PositionFile;
use crate::core::durable::TopicLog;
use crate::core::topic::Topic;

/// The committed position is written at most this often while it moves: a crash may deliver
/// again what was acknowledged in the last this-long.
pub const PERSIST_EVERY: Duration = Duration::from_millis(100);

/// Messages dealt in one pass before they are handed to the sinks, so one pass holds a bounded
/// amount of message bytes.
const PASS: usize = 64;

/// Commands handled before the group deals again, so a flood of acks is taken in one go but
/// still lets the group deal between floods.
const COMMANDS_PER_WAKE: usize = 256;

/// How long a message whose record could not be read waits before it is tried again.
const READ_RETRY: Duration = Duration::from_secs(1);

/// `ack_timeout_ms` and `max_deliveries` of a topic that has no durability settings (it
/// cannot have a group then; these only keep the task sane).
const FALLBACK_ACK_TIMEOUT: Duration = Duration::from_secs(30);
const FALLBACK_MAX_DELIVERIES: u32 = 5;

/// What members and the registry ask of a group's task.
#[derive(Debug)]
pub(crate) enum Command {
    Join(Member),
    Leave(MemberId),
    Ack(MemberId, Vec<u64>),
    Nack(MemberId, u64, NackAction),
    /// The member's sink has room again.
    Room(MemberId),
}

/// A group without a task: where it starts when a member comes.
#[derive(Debug)]
pub(crate) enum Parked {
    /// Every offset below this is done (a new group, or a position loaded from disk).
    At(u64),
    /// Its position file was corrupt: from the log's earliest message.
    Earliest,
    /// Its state when its last member left.
    State(Box<GroupState>),
}

/// Whether the group's task runs.
#[derive(Debug)]
pub(crate) enum Run {
    Parked(Parked),
    /// The task's channel. Members keep clones of it; the task ends by parking, never by the
    /// channel closing.
    Running(UnboundedSender<Command>),
}

/// What the group's figures say now, for `GroupsRequest`: written by its task, read by anyone.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) committed: AtomicU64,
    pub(crate) pending: AtomicU32,
    /// Memberships alive (counted by [`GroupMembership`](super::GroupMembership) itself).
    pub(crate) members: AtomicU32,
    pub(crate) redelivered: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    /// Acks and nacks of messages not pending on the member that sent them.
    pub(crate) late_answers: AtomicU64,
}

/// One group of a topic; see the module doc.
#[derive(Debug)]
pub(crate) struct GroupEntry {
    pub(crate) name: String,
    pub(crate) figures: Figures,
    pub(crate) store: PositionFile,
    /// The task's channel, or the state it parked. Held briefly (never across an await): a
    /// join sends to the task under it, and the task parks under it only when its channel is
    /// empty, so no join is ever lost to a task that is ending.
    run: Mutex<Run>,
}

/// What a group's task needs of its topic.
pub(crate) struct Context {
    pub(crate) topic: Arc<Topic>,
    pub(crate) log: Arc<TopicLog>,
    pub(crate) dead_letters: Arc<dyn DeadLetters>,
}

impl GroupEntry {
    /// A group of `name` that starts from `parked` when a member comes.
    pub(crate) fn new(name: &str, store: PositionFile, parked: Parked) -> GroupEntry {
        let committed = match &parked {
            Parked::At(offset) => *offset,
            Parked::Earliest => 0,
            Parked::State(state) => state.committed(),
        };
        let figures = Figures::default();
        figures.committed.store(committed, Ordering::Relaxed);
        GroupEntry {
            name: name.to_owned(),
            figures,
            store,
            run: Mutex::new(Run::Parked(parked)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the group's position is known (not a corrupt file waiting for its first member).
    pub(crate) fn positioned(&self) -> bool {
        !matches!(*self.lock(), Run::Parked(Parked::Earliest))
    }

    /// Hands `member` to the group's task, starting the task on `runtime` when none runs (or
    /// the one that ran is gone); answers the task's channel.
    pub(crate) fn join(
        self: &Arc<Self>,
        member: Member,
        runtime: &Handle,
        context: Context,
    ) -> UnboundedSender<Command> {
        let mut run = self.lock();
        let current = std::mem::replace(&mut *run, Run::Parked(Parked::At(0)));
        let (member, parked) = match current {
            Run::Running(commands) => match commands.send(Command::Join(member)) {
                Ok(()) => {
                    *run = Run::Running(commands.clone());
                    return commands;
                }
                Err(mpsc::error::SendError(Command::Join(member))) => {
                    let committed = self.figures.committed.load(Ordering::Relaxed);
                    tracing::error!(group = %self.name, committed, "a consumer group's task ended unexpectedly; the group restarts from its committed position");
                    (member, Parked::At(committed))
                }
                // A failed send hands back what was sent, and that was a Join.
                Err(mpsc::error::SendError(_)) => unreachable!("a failed send returns its Join"),
            },
            Run::Parked(parked) => (member, parked),
        };
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = GroupTask::start(
            Arc::clone(self),
            parked,
            member,
            context,
            receiver,
            &commands,
        );
        runtime.spawn(task.run());
        *run = Run::Running(commands.clone());
        commands
    }
}

/// The group's task; see the module doc.
struct GroupTask {
    entry: Arc<GroupEntry>,
    topic: Arc<Topic>,
    log: Arc<TopicLog>,
    dead_letters: Arc<dyn DeadLetters>,
    state: GroupState,
    commands: UnboundedReceiver<Command>,
    /// Given to the tasks that wait for a member's sink to have room: weak, so a wait never
    /// keeps the channel open.
    to_self: WeakUnboundedSender<Command>,
    appended: watch::Receiver<u64>,
    /// Reads the messages never delivered, from `state.next_fresh()`; made when first needed.
    fresh: Option<LogReader>,
    /// The fresh reader found nothing new: wait for an append before reading again.
    fresh_exhausted: bool,
    /// The log's append signal is gone (the log was dropped): nothing new will come.
    log_gone: bool,
    /// Reads messages delivered again, and the offset it reads next: kept while the offsets
    /// asked for follow each other (a leaving member's messages), made anew otherwise.
    again: Option<(LogReader, u64)>,
    /// The last committed position handed to the store.
    persisted: Option<u64>,
    last_persist: Option<Instant>,
    /// When the next write of the position is due, if the position moved since the last.
    persist_at: Option<Instant>,
}

/// The settings a pass reads once.
#[derive(Debug, Clone, Copy)]
struct Settings {
    ack_timeout: Duration,
    max_deliveries: u32,
}

impl GroupTask {
    fn start(
        entry: Arc<GroupEntry>,
        parked: Parked,
        member: Member,
        context: Context,
        commands: UnboundedReceiver<Command>,
        sender: &UnboundedSender<Command>,
    ) -> GroupTask {
        let log = context.log;
        let figures = log.figures();
        let mut state = match parked {
            Parked::At(committed) => GroupState::starting_at(committed),
            Parked::Earliest => GroupState::starting_at(figures.first_offset),
            Parked::State(state) => *state,
        };
        if state.clamp_to(figures.next_offset) {
            tracing::warn!(
                topic = context.topic.name(),
                group = %entry.name,
                next_offset = figures.next_offset,
                "a consumer group's position lay past the end of its log (the log lost its tail); it resumes at the end"
            );
        }
        let skipped = state.skip_to(figures.first_offset);
        if skipped > 0 {
            tracing::warn!(
                topic = context.topic.name(),
                group = %entry.name,
                skipped,
                first_offset = figures.first_offset,
                "retention deleted messages a consumer group had not finished with; it skips them"
            );
        }
        state.add_member(member);
        GroupTask {
            appended: log.appended(),
            entry,
            topic: context.topic,
            log,
            dead_letters: context.dead_letters,
            state,
            commands,
            to_self: sender.downgrade(),
            fresh: None,
            fresh_exhausted: false,
            log_gone: false,
            again: None,
            persisted: None,
            last_persist: None,
            persist_at: None,
        }
    }

    async fn run(mut self) {
        loop {
            self.pass(Instant::now());
            if self.state.members().is_empty() && self.park() {
                return;
            }
            let wake = match (self.state.next_wake(), self.persist_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A far time stands in for "no timer": the branch is disabled then anyway.
            let sleep = tokio::time::sleep_until(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.handle(command);
                        for _ in 1..COMMANDS_PER_WAKE {
                            let Ok(command) = self.commands.try_recv() else { break };
                            self.handle(command);
                        }
                    }
                    // The entry keeps a sender while the task runs, so this does not happen;
                    // were it to, no member could reach the group any more: they leave, and
                    // the group parks.
                    None => {
                        let ids: Vec<MemberId> = self.state.members().iter().map(|m| m.id).collect();
                        for id in ids {
                            self.state.remove_member(id);
                        }
                    }
                },
                changed = self.appended.changed(), if self.fresh_exhausted && !self.log_gone => {
                    match changed {
                        Ok(()) => self.fresh_exhausted = false,
                        Err(_) => self.log_gone = true,
                    }
                }
                () = sleep, if wake.is_some() => {}
            }
        }
    }

    fn settings(&self) -> Settings {
        match self.topic.config().durability() {
            Some(d) => Settings {
                ack_timeout: Duration::from_millis(d.ack_timeout_ms.max(1)),
                max_deliveries: d.max_deliveries.max(1),
            },
            None => Settings {
                ack_timeout: FALLBACK_ACK_TIMEOUT,
                max_deliveries: FALLBACK_MAX_DELIVERIES,
            },
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join(member) => self.state.add_member(member),
            Command::Leave(id) => {
                self.state.remove_member(id);
            }
            Command::Ack(id, offsets) => {
                for offset in offsets {
                    if !self.state.ack(id, offset) {
                        self.late_answer(id, offset);
                    }
                }
            }
            Command::Nack(id, offset, action) => {
                let now = Instant::now();
                match self.state.nack(id, offset, action, now) {
                    Nacked::Ignored => self.late_answer(id, offset),
                    Nacked::Requeued => {}
                    Nacked::DeadLetter(deliveries) => {
                        let retry = self.settings().ack_timeout;
                        self.dead_letter(
                            offset,
                            deliveries,
                            DeadLetterReason::Rejected,
                            now + retry,
                        );
                    }
                }
            }
            Command::Room(id) => {
                if let Some(member) = self.state.members_mut().iter_mut().find(|m| m.id == id) {
                    member.room_wait = None;
                }
            }
        }
    }

    fn late_answer(&self, member: MemberId, offset: u64) {
        self.entry
            .figures
            .late_answers
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(group = %self.entry.name, member, offset, "ignored an answer for a message not pending on that member");
    }

    /// Everything due now: deadlines and delays, dealing (and the dead letters it finds), the
    /// figures.
    fn pass(&mut self, now: Instant) {
        let settings = self.settings();
        self.state.release(now);
        self.deal(now, settings);
        self.publish_figures(now);
    }

    fn deal(&mut self, now: Instant, settings: Settings) {
        loop {
            self.open_round();
            let mut dealt = 0;
            while dealt < PASS {
                let Some(index) = self.state.member_with_room() else {
                    break;
                };
                let Some((offset, deliveries, record)) = self.next_message(now, settings) else {
                    break;
                };
                self.state.dealt_to(index);
                let member = &mut self.state.members_mut()[index];
                let start = member.batch.len();
                write_delivery(
                    record.envelope(),
                    record.payload(),
                    offset,
                    deliveries.saturating_add(1),
                    &mut member.batch,
                );
                let end = member.batch.len();
                member.spans.push((offset, start..end));
                dealt += 1;
            }
            // Another round after this one: the pass was full, or messages a sink did not
            // take may go to another member. A round in which no sink took anything and no
            // member left ends dealing, so a sink that keeps refusing cannot spin the task.
            if dealt == 0 || !self.hand_over(now + settings.ack_timeout) {
                return;
            }
        }
    }

    /// Works out how many messages each member may take this round; a member whose sink is
    /// full gets a task that wakes the group when it has room.
    fn open_round(&mut self) {
        for member in self.state.members_mut() {
            member.room = 0;
            if member.in_flight >= member.prefetch || member.room_wait.is_some() {
                continue;
            }
            let limit = member.prefetch as usize;
            if member.sink.has_room(member.sub_id, limit) {
                member.room = member.prefetch - member.in_flight;
                continue;
            }
            let sink = Arc::clone(&member.sink);
            let (id, sub_id) = (member.id, member.sub_id);
            let to_group = self.to_self.clone();
            let wait = tokio::spawn(async move {
                sink.wait_for_room(sub_id, limit).await;
                if let Some(group) = to_group.upgrade() {
                    let _ = group.send(Command::Room(id));
                }
            });
            member.room_wait = Some(wait.abort_handle());
        }
    }

    /// Hands each member what it was dealt this round, in one call per member; answers
    /// whether any of it was taken or a member left.
    fn hand_over(&mut self, deadline: Instant) -> bool {
        let mut closed = Vec::new();
        let mut taken = false;
        for index in 0..self.state.members().len() {
            let member = &mut self.state.members_mut()[index];
            if member.spans.is_empty() {
                continue;
            }
            let mut spans = std::mem::take(&mut member.spans);
            let mut batch = std::mem::take(&mut member.batch);
            let items: Vec<Item<'_>> = spans
                .iter()
                .map(|(_, span)| Item {
                    bytes: &batch[span.clone()],
                    enveloped: true,
                })
                .collect();
            let outcome = member.sink.deliver(
                member.sub_id,
                BatchRef::Items(&items),
                0..items.len(),
                Some(member.prefetch as usize),
            );
            drop(items);
            let queued = match outcome {
                Delivered::Queued(n) => {
                    taken |= n > 0;
                    n
                }
                Delivered::Closed => {
                    closed.push(member.id);
                    0
                }
            };
            for (i, &(offset, _)) in spans.iter().enumerate() {
                if i < queued {
                    if self.state.delivered(offset, index, deadline) > 1 {
                        self.entry
                            .figures
                            .redelivered
                            .fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    self.state.put_back(offset);
                }
            }
            spans.clear();
            batch.clear();
            let member = &mut self.state.members_mut()[index];
            member.spans = spans;
            member.batch = batch;
        }
        for id in closed {
            tracing::debug!(group = %self.entry.name, member = id, "a consumer group member's sink is closed; it leaves");
            self.state.remove_member(id);
            taken = true;
        }
        taken
    }

    /// The next message to deal: one to deliver again, else a fresh one. Messages past
    /// `max_deliveries` are dead-lettered on the way.
    fn next_message(&mut self, now: Instant, settings: Settings) -> Option<(u64, u32, Record)> {
        while let Some((offset, deliveries)) = self.state.take_ready() {
            if deliveries >= settings.max_deliveries {
                self.dead_letter(
                    offset,
                    deliveries,
                    DeadLetterReason::MaxDeliveries,
                    now + settings.ack_timeout,
                );
                continue;
            }
            match self.read_again(offset) {
                Ok(Some(record)) => return Some((offset, deliveries, record)),
                Ok(None) => {
                    tracing::debug!(group = %self.entry.name, offset, "a message to deliver again is gone from the log");
                    self.state.done(offset);
                }
                Err(error) => {
                    tracing::warn!(group = %self.entry.name, offset, %error, "cannot read a message to deliver again; trying later");
                    self.state.retry_at(offset, now + READ_RETRY);
                }
            }
        }
        self.read_fresh()
    }

    /// The next message never delivered, if the log holds one.
    fn read_fresh(&mut self) -> Option<(u64, u32, Record)> {
        if self.fresh_exhausted {
            return None;
        }
        let next_fresh = self.state.next_fresh();
        let log = &self.log;
        let reader = self
            .fresh
            .get_or_insert_with(|| log.reader(StartAt::Offset(next_fresh)));
        let mut caught_up = false;
        loop {
            match reader.next_record() {
                Ok(Some(record)) if record.offset() < next_fresh => {}
                Ok(Some(record)) => {
                    self.state.take_fresh(record.offset());
                    return Some((record.offset(), 0, record));
                }
                Ok(None) if !caught_up => {
                    log.catch_up(reader);
                    caught_up = true;
                }
                Ok(None) => {
                    self.fresh_exhausted = true;
                    return None;
                }
                Err(error) => {
                    tracing::warn!(group = %self.entry.name, %error, "cannot read the log; the group reads again at the next message stored");
                    self.fresh = None;
                    self.fresh_exhausted = true;
                    return None;
                }
            }
        }
    }

    /// The record at `offset` (delivered before), `None` when the log no longer holds it.
    fn read_again(&mut self, offset: u64) -> Result<Option<Record>, ReadError> {
        if let Some((reader, next)) = &mut self.again {
            if *next == offset {
                if let Ok(Some(record)) = reader.next_record() {
                    if record.offset() == offset {
                        *next = offset + 1;
                        return Ok(Some(record));
                    }
                }
            }
        }
        let mut reader = self.log.reader(StartAt::Offset(offset));
        match reader.next_record()? {
            Some(record) if record.offset() == offset => {
                self.again = Some((reader, offset + 1));
                Ok(Some(record))
            }
            _ => {
                self.again = None;
                Ok(None)
            }
        }
    }

    /// Hands the message in hand at `offset` to the dead-letter topic; when that fails it is
    /// tried again at `retry`.
    fn dead_letter(
        &mut self,
        offset: u64,
        deliveries: u32,
        reason: DeadLetterReason,
        retry: Instant,
    ) {
        let record = match self.read_again(offset) {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.state.done(offset);
                return;
            }
            Err(error) => {
                tracing::warn!(group = %self.entry.name, offset, %error, "cannot read a message to dead-letter; trying later");
                self.state.retry_at(offset, retry);
                return;
            }
        };
        let headers = DeadLetterHeaders {
            reason,
            topic: self.topic.name(),
            offset,
            group: &self.entry.name,
            delivery_count: deliveries,
        };
        match self.dead_letters.dead_letter(
            &self.topic,
            record.envelope(),
            record.payload(),
            headers,
        ) {
            Ok(()) => {
                self.state.done(offset);
                self.entry
                    .figures
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => {
                tracing::warn!(
                    topic = self.topic.name(),
                    group = %self.entry.name,
                    offset,
                    reason = reason.as_str(),
                    why,
                    "cannot dead-letter a message; it stays with the group and is tried again later"
                );
                self.state.retry_at(offset, retry);
            }
        }
    }

    /// Publishes the figures, and writes the position when it moved and its time has come.
    fn publish_figures(&mut self, now: Instant) {
        let committed = self.state.committed();
        let figures = &self.entry.figures;
        figures.committed.store(committed, Ordering::Relaxed);
        let pending = u32::try_from(self.state.pending()).unwrap_or(u32::MAX);
        figures.pending.store(pending, Ordering::Relaxed);
        if self.persisted.is_some_and(|p| p >= committed) {
            self.persist_at = None;
            return;
        }
        let due = self.last_persist.map_or(now, |last| last + PERSIST_EVERY);
        if now >= due {
            self.persist(committed);
            self.last_persist = Some(now);
            self.persist_at = None;
        } else {
            self.persist_at = Some(due);
        }
    }

    /// Writes `committed` on a blocking thread (a write and a sync must not hold up the
    /// runtime's worker).
    fn persist(&mut self, committed: u64) {
        self.persisted = Some(committed);
        let entry = Arc::clone(&self.entry);
        tokio::task::spawn_blocking(move || entry.store.write(committed));
    }

    /// Leaves the state in the entry and ends, unless a command came meanwhile.
    fn park(&mut self) -> bool {
        let entry = Arc::clone(&self.entry);
        let mut run = entry.lock();
        if !self.commands.is_empty() {
            return false;
        }
        let committed = self.state.committed();
        let state = std::mem::take(&mut self.state);
        *run = Run::Parked(Parked::State(Box::new(state)));
        drop(run);
        if self.persisted != Some(committed) {
            self.persist(committed);
        }
        true
    }
}
