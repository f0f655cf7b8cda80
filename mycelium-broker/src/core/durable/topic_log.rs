//! A durable topic's log as the broker holds it: every batch the topic accepts is appended
//! here before it is routed, whichever path published it.
//!
//! - One [`TopicLog`] per durable topic, in `<data_dir>/<topic name>/`, opened (and recovered)
//!   when the topic is made. Appends are serialized by one lock; a batch lands whole or not at
//!   all ([`mycelium_storage::Log::append_batch`]), and a failed one (a full disk) refuses the
//!   batch: nothing of it is routed, and what was stored before stays readable.
//! - An append writes into the page cache and returns: the publishing task never waits for the
//!   disk. The topic's `fsync` decides when the syncer thread makes records durable: `always`
//!   syncs whenever records wait (group commit: appends made during one sync share the next),
//!   `interval:<d>` every `d`, `never` leaves it to the OS. [`TopicLog::durable`] tells when a
//!   record is durable, which is when a confirmed publish is answered.
//! - A record's timestamp is the broker's clock when it stored the batch (one read per batch),
//!   so timestamps follow offsets and a time lookup is a search.
//! - Readers ([`TopicLog::reader`]) follow appends through [`TopicLog::appended`].
//! - The topic's consumer groups ([`TopicLog::groups`]) live with its log: their positions are
//!   kept in `<log dir>/groups/` and loaded when the log opens.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mycelium_config::{Durability, Fsync};
use mycelium_storage::{AppendError, FsyncPolicy, Log, LogOptions, LogReader, Retention, StartAt};
use mycelium_transport::envelope::EnvelopeView;
use tokio::sync::watch;

use crate::core::batch::{Batch, Item};
use crate::core::durable::ConsumerGroups;

/// What `mycelium topics` shows of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogFigures {
    /// The oldest offset retained.
    pub first_offset: u64,
    /// The offset the next message takes.
    pub next_offset: u64,
    /// Messages retained.
    pub retained_messages: u64,
    /// Bytes of segment files.
    pub retained_bytes: u64,
}

/// Why a durable topic's log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the log of durable topic '{topic}' in {dir}")]
pub struct LogOpenError {
    /// The topic.
    pub topic: String,
    /// Its log's directory.
    pub dir: PathBuf,
    /// The cause.
    #[source]
    pub source: mycelium_storage::OpenError,
}

/// See the module doc.
pub struct TopicLog {
    log: Mutex<Log>,
    dir: PathBuf,
    /// The next offset: moves with every append.
    appended: watch::Sender<u64>,
    /// Every record below this is durable (synced).
    durable: watch::Sender<u64>,
    groups: ConsumerGroups,
}

impl std::fmt::Debug for TopicLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicLog")
            .field("dir", &self.dir)
            .field("next_offset", &*self.appended.borrow())
            .field("durable", &*self.durable.borrow())
            .finish()
    }
}

/// The storage policy for a topic's `fsync`.
pub(crate) fn fsync_policy(fsync: Fsync) -> FsyncPolicy {
    match fsync {
        Fsync::Always => FsyncPolicy::GroupCommit,
        Fsync::Interval(every) => FsyncPolicy::Interval(every.get()),
        Fsync::Never => FsyncPolicy::Never,
    }
}

fn retention(durability: &Durability) -> Retention {
    Retention {
        max_age: durability.retention.map(|age| age.get()),
        max_bytes: durability.retention_bytes,
        max_records: durability.retention_messages,
    }
}

/// A segment is started when its records span a quarter of the age limit, so that retention
/// (which deletes whole sealed segments) keeps at most a quarter more than asked.
fn segment_age(durability: &Durability) -> Option<Duration> {
    durability.retention.map(|age| age.get() / 4)
}

impl TopicLog {
    /// Opens (creating, or recovering) the log of `topic` in `<data_dir>/<topic>/`.
    pub fn open(
        data_dir: &Path,
        topic: &str,
        durability: &Durability,
        segment_bytes: u64,
    ) -> Result<TopicLog, LogOpenError> {
        let dir = data_dir.join(topic);
        let options = LogOptions {
            segment_bytes,
            segment_age: segment_age(durability),
            fsync: fsync_policy(durability.fsync),
            retention: retention(durability),
        };
        let log = Log::open(&dir, options).map_err(|source| LogOpenError {
            topic: topic.to_owned(),
            dir: dir.clone(),
            source,
        })?;
        let recovery = log.recovery();
        if !recovery.is_clean() {
            tracing::warn!(topic, dir = %dir.display(), report = ?recovery, "recovered the log of a durable topic");
        }
        let (appended, _) = watch::channel(log.next_offset());
        let (durable, _) = watch::channel(log.durable_offset());
        let to_tell = durable.clone();
        log.set_durable_listener(move |offset| {
            to_tell.send_if_modified(|now| {
                let moved = offset > *now;
                if moved {
                    *now = offset;
                }
                moved
            });
        });
        let groups = ConsumerGroups::open(&dir.join("groups"));
        Ok(TopicLog {
            log: Mutex::new(log),
            dir,
            appended,
            durable,
            groups,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends the batch's messages (envelope and payload apart, as the record keeps them);
    /// answers their offsets. Nothing is appended when it fails.
    pub fn append<B: Batch + ?Sized>(&self, batch: &B) -> Result<Range<u64>, AppendError> {
        let view = batch.view();
        let now = now_ns();
        let records = (0..view.len())
            .map(|i| split(view.item(i)))
            .map(|(envelope, payload)| (now, envelope, payload));
        let mut log = self.lock();
        let offsets = log.append_batch(records)?;
        self.appended.send_replace(offsets.end);
        Ok(offsets)
    }

    /// The next offset, changed at every append: how a reader that caught up waits for more.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Every record below the value is durable: how a confirmed publish waits.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// The topic's consumer groups.
    pub fn groups(&self) -> &ConsumerGroups {
        &self.groups
    }

    /// A reader from `start`.
    pub fn reader(&self, start: StartAt) -> LogReader {
        self.lock().reader(start)
    }

    /// Brings `reader` up to the log's end now (it reads a snapshot until told).
    pub fn catch_up(&self, reader: &mut LogReader) {
        reader.catch_up(&self.lock());
    }

    /// Its offsets and sizes now.
    pub fn figures(&self) -> LogFigures {
        let log = self.lock();
        LogFigures {
            first_offset: log.first_offset(),
            next_offset: log.next_offset(),
            retained_messages: log.record_count(),
            retained_bytes: log.size_bytes(),
        }
    }

    /// Takes the topic's new durability settings (a reload): retention and fsync.
    pub fn reconfigure(&self, durability: &Durability) {
        let mut log = self.lock();
        log.set_retention(retention(durability));
        log.set_segment_age(segment_age(durability));
        if let Err(error) = log.set_fsync(fsync_policy(durability.fsync)) {
            tracing::error!(dir = %self.dir.display(), %error, "cannot change the log's fsync policy; it keeps the old one");
        }
    }

    /// Deletes the sealed segments retention no longer keeps; answers how many records went.
    pub fn enforce_retention(&self) -> u64 {
        match self.lock().enforce_retention(now_ns()) {
            Ok(report) => {
                if report.segments > 0 {
                    tracing::debug!(dir = %self.dir.display(), segments = report.segments, records = report.records, "retention deleted segments");
                }
                report.records
            }
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "retention could not delete a segment");
                0
            }
        }
    }
}

/// A message's envelope and payload. A message marked enveloped was checked on arrival, so
/// its envelope parses; should it not, the whole message is kept as payload.
fn split(item: Item<'_>) -> (&[u8], &[u8]) {
    if !item.enveloped {
        return (&[], item.bytes);
    }
    match EnvelopeView::parse(item.bytes) {
        Ok(view) => item.bytes.split_at(view.len),
        Err(_) => (&[], item.bytes),
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
