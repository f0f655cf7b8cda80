//! A durable topic's consumer groups: joining one, what they report, and keeping their
//! positions.
//!
//! - [`ConsumerGroups`] belongs to the topic's [`TopicLog`] (made when the log opens, with
//!   the groups whose positions were kept in `<log dir>/groups/`), so `GroupsRequest` lists
//!   persisted groups and they resume from their committed position.
//! - [`ConsumerGroups::join`] makes a subscription a member of a group, creating the group
//!   (at the member's [`StartAt`]: `Latest` for "new", `Earliest`, `Offset(n)`,
//!   `Timestamp(t)`) if it does not exist; an existing group ignores the start and resumes.
//!   Each message of the log goes to one member at a time (see [`group`](super::group)).
//! - A [`GroupMembership`] is the member's handle: [`GroupMembership::ack`] and
//!   [`GroupMembership::nack`] answer for its messages (never waiting on the group); dropping
//!   it leaves the group, and what was pending on it is delivered again at once.
//! - Limits: [`MAX_GROUPS_PER_TOPIC`], [`MAX_MEMBERS_PER_GROUP`], names of at most
//!   [`MAX_GROUP_NAME_LEN`] bytes of `[A-Za-z0-9._-]`.
//! - [`ConsumerGroups::flush`] writes every position now (shutdown); dropping the groups does
//!   it too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mycelium_storage::StartAt;
use mycelium_transport::{GroupStats, NackAction};
use tokio::sync::mpsc::UnboundedSender;

use crate::core::delivery::Delivery;
use crate::core::durable::dead_letter::DeadLetters;
use crate::core::durable::group::{Command, Context, GroupEntry, Parked};
use crate::core::durable::group_state::{Member, MemberId};
use crate::core::durable::group_store::{self, Loaded, PositionFile};
use crate::core::durable::TopicLog;
use crate::core::ids::TopicId;
use crate::core::topic::Topic;

/// At most this many groups per topic (counting groups persisted and not joined since): each
/// costs a position file and its figures.
pub const MAX_GROUPS_PER_TOPIC: usize = 1024;

/// At most this many members per group: dealing visits each member.
pub const MAX_MEMBERS_PER_GROUP: u32 = 1024;

/// The longest group name: the name is its position file's name, `<group>.offset`, which must
/// fit a file name (255 bytes).
pub const MAX_GROUP_NAME_LEN: usize = 248;

/// Whether `name` may name a group: 1 to [`MAX_GROUP_NAME_LEN`] bytes of `[A-Za-z0-9._-]`.
pub fn is_group_name(name: &str) -> bool {
    (1..=MAX_GROUP_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a subscription could not join a group.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The group's name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid consumer group name {name:?}: 1 to {MAX_GROUP_NAME_LEN} bytes of A-Z a-z 0-9 . _ -")]
    BadName {
        /// The name asked for.
        name: String,
    },
    /// The topic has [`MAX_GROUPS_PER_TOPIC`] groups already.
    #[error("the topic has {MAX_GROUPS_PER_TOPIC} consumer groups already")]
    TooManyGroups,
    /// The group has [`MAX_MEMBERS_PER_GROUP`] members already.
    #[error("consumer group {group:?} has {MAX_MEMBERS_PER_GROUP} members already")]
    TooManyMembers {
        /// The group.
        group: String,
    },
    /// The group's task cannot run: the caller is not inside a tokio runtime.
    #[error("cannot run the consumer group's task")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

/// See the module doc.
#[derive(Debug)]
pub struct ConsumerGroups {
    /// `<log dir>/groups`.
    dir: PathBuf,
    groups: Mutex<BTreeMap<String, Arc<GroupEntry>>>,
    next_member: AtomicU64,
}

impl ConsumerGroups {
    /// The groups whose positions are kept in `dir`; see `group_store` for what a corrupt one
    /// becomes.
    pub(crate) fn open(dir: &Path) -> ConsumerGroups {
        let groups = group_store::load(dir)
            .into_iter()
            .take(MAX_GROUPS_PER_TOPIC)
            .map(|(name, loaded)| {
                let (parked, written) = match loaded {
                    Loaded::Committed(committed) => (Parked::At(committed), Some(committed)),
                    Loaded::Corrupt => (Parked::Earliest, None),
                };
                let store = PositionFile::new(dir, &name, written);
                let entry = Arc::new(GroupEntry::new(&name, store, parked));
                (name, entry)
            })
            .collect();
        ConsumerGroups {
            dir: dir.to_path_buf(),
            groups: Mutex::new(groups),
            next_member: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<GroupEntry>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the subscription `sub_id` (delivered through `sink`, at most `prefetch`
    /// messages pending on it, at least 1) a member of `group` of `topic`, whose log is `log`
    /// (the one holding these groups). A new group starts at `start`; messages it gives up go
    /// through `dead_letters`. Must be called inside a tokio runtime (the group's task runs
    /// there).
    #[allow(clippy::too_many_arguments)] // The server hands each of these apart; a struct would only rename them.
    pub fn join(
        &self,
        topic: &Arc<Topic>,
        log: &Arc<TopicLog>,
        group: &str,
        start: StartAt,
        sink: Arc<dyn Delivery>,
        sub_id: TopicId,
        prefetch: u32,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Result<GroupMembership, JoinError> {
        if !is_group_name(group) {
            return Err(JoinError::BadName {
                name: group.to_owned(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(JoinError::NoRuntime)?;
        let entry = {
            let mut groups = self.lock();
            match groups.get(group) {
                Some(entry) => Arc::clone(entry),
                None => {
                    if groups.len() >= MAX_GROUPS_PER_TOPIC {
                        return Err(JoinError::TooManyGroups);
                    }
                    let committed = start_offset(log, start);
                    let store = PositionFile::new(&self.dir, group, None);
                    let entry = Arc::new(GroupEntry::new(group, store, Parked::At(committed)));
                    groups.insert(group.to_owned(), Arc::clone(&entry));
                    entry
                }
            }
        };
        let reserved =
            entry
                .figures
                .members
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < MAX_MEMBERS_PER_GROUP).then_some(n + 1)
                });
        if reserved.is_err() {
            return Err(JoinError::TooManyMembers {
                group: group.to_owned(),
            });
        }
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let member = Member::new(id, sink, sub_id, prefetch);
        let context = Context {
            topic: Arc::clone(topic),
            log: Arc::clone(log),
            dead_letters,
        };
        let commands = entry.join(member, &runtime, context);
        Ok(GroupMembership {
            entry,
            member: id,
            commands,
        })
    }

    /// Every group's figures, by name; `next_offset` is the log's.
    pub fn stats(&self, next_offset: u64) -> Vec<GroupStats> {
        self.lock()
            .values()
            .map(|entry| {
                let figures = &entry.figures;
                GroupStats {
                    name: entry.name.clone(),
                    committed: figures.committed.load(Ordering::Relaxed),
                    next_offset,
                    pending: figures.pending.load(Ordering::Relaxed),
                    members: figures.members.load(Ordering::Relaxed),
                    redelivered: figures.redelivered.load(Ordering::Relaxed),
                    dead_lettered: figures.dead_lettered.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Writes every group's committed position now (blocking: file writes), for shutdown.
    pub fn flush(&self) {
        let entries: Vec<Arc<GroupEntry>> = self.lock().values().cloned().collect();
        for entry in entries {
            if entry.positioned() {
                entry
                    .store
                    .write(entry.figures.committed.load(Ordering::Relaxed));
            }
        }
    }

    /// Acks and nacks of `group` ignored as late so far.
    #[cfg(test)]
    pub(crate) fn late_answers(&self, group: &str) -> u64 {
        self.lock().get(group).map_or(0, |entry| {
            entry.figures.late_answers.load(Ordering::Relaxed)
        })
    }
}

impl Drop for ConsumerGroups {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The offset a new group starts at: every offset below it counts as done.
fn start_offset(log: &TopicLog, start: StartAt) -> u64 {
    let figures = log.figures();
    match start {
        StartAt::Latest => figures.next_offset,
        StartAt::Earliest => figures.first_offset,
        StartAt::Offset(offset) => offset.clamp(figures.first_offset, figures.next_offset),
        StartAt::Timestamp(_) => match log.reader(start).next_record() {
            Ok(Some(record)) => record.offset(),
            Ok(None) => figures.next_offset,
            Err(error) => {
                // Redelivering beats skipping: from the earliest message when the time
                // cannot be looked up.
                tracing::warn!(dir = %log.dir().display(), %error, "cannot find a consumer group's start time in the log; it starts from the earliest message");
                figures.first_offset
            }
        },
    }
}

/// A subscription's membership of a group; dropping it leaves the group (what was pending on
/// it is delivered again at once).
pub struct GroupMembership {
    entry: Arc<GroupEntry>,
    member: MemberId,
    /// The group task's channel as it was when this member joined. It does not keep the task
    /// running: the task ends once its last member has left.
    commands: UnboundedSender<Command>,
}

impl std::fmt::Debug for GroupMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMembership")
            .field("group", &self.entry.name)
            .field("member", &self.member)
            .finish()
    }
}

impl GroupMembership {
    /// The group's name.
    pub fn group(&self) -> &str {
        &self.entry.name
    }

    /// This member is done with `offsets`. Offsets not pending on it are ignored (a late ack
    /// after the message went to another member).
    pub fn ack(&self, offsets: &[u64]) {
        if offsets.is_empty() {
            return;
        }
        // A send fails only when the group's task is gone, which ends every membership's
        // deliveries too: the ack has nothing left to answer.
        let _ = self
            .commands
            .send(Command::Ack(self.member, offsets.to_vec()));
    }

    /// This member gives `offset` back: to deliver again now or after a delay, or to
    /// dead-letter now. Ignored when it is not pending on this member.
    pub fn nack(&self, offset: u64, action: NackAction) {
        let _ = self
            .commands
            .send(Command::Nack(self.member, offset, action));
    }
}

impl Drop for GroupMembership {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave(self.member));
        self.entry.figures.members.fetch_sub(1, Ordering::Relaxed);
    }
}
