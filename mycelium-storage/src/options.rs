//! How a log is shaped, kept and made durable.

use std::time::Duration;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `append` returns once its records are synced (a batch shares one sync).
    Always,
    /// `append` returns once its records are written; a background thread syncs whenever
    /// records are waiting, back to back, so the appends made during one sync share the next
    /// (group commit). A record is durable one or two syncs after its append returned; an
    /// owner that must not block on the disk appends this way and confirms each record when
    /// [`Log::durable_offset`](crate::Log::durable_offset) passes it.
    GroupCommit,
    /// A background thread syncs the active segment every interval: a record is durable at
    /// most one interval (plus the sync itself) after its append returned.
    /// [`Log::durable_offset`](crate::Log::durable_offset) says how far it got.
    Interval(Duration),
    /// The OS's page cache decides; [`Log::sync`](crate::Log::sync) still syncs on demand.
    Never,
}

/// Which sealed segments retention deletes, oldest first. Each limit is off when `None`; the
/// active segment is never deleted. The size and count limits keep at least what they name
/// (the newest `max_records` records, the newest `max_bytes` bytes): a segment is deleted only
/// if the rest still holds that much, so a log stays above such a limit by less than its
/// oldest segment (or by the active segment alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// A sealed segment whose newest record is older than this is deleted.
    pub max_age: Option<Duration>,
    /// The oldest sealed segment is deleted while the others hold at least this many bytes.
    pub max_bytes: Option<u64>,
    /// The oldest sealed segment is deleted while the others hold at least this many records.
    pub max_records: Option<u64>,
}

/// The smallest `segment_bytes` accepted.
pub const MIN_SEGMENT_BYTES: u64 = 64;
/// The largest `segment_bytes` accepted: a segment stays addressable by u32 positions even
/// with a whole batch of [`MAX_BATCH_BYTES`] past the roll point.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The largest batch (encoded bytes) one `append_batch` takes: a batch lies in one segment.
pub const MAX_BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// Options for [`Log::open`](crate::Log::open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is sealed and a new one started when an append would take it past this many
    /// bytes (a segment holds at least one record, whatever its size). Default 64 MiB.
    pub segment_bytes: u64,
    /// A segment is sealed when a record's timestamp is this much newer than the segment's
    /// first record's. Default: none.
    pub segment_age: Option<Duration>,
    /// When appends reach the disk. Default [`FsyncPolicy::Interval`] of 100 ms.
    pub fsync: FsyncPolicy,
    /// What [`Log::enforce_retention`](crate::Log::enforce_retention) deletes. Default: nothing.
    pub retention: Retention,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            segment_age: None,
            fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
            retention: Retention::default(),
        }
    }
}

impl LogOptions {
    /// Why these options cannot be used, if they cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Some("segment_bytes must lie between 64 bytes and 1 GiB");
        }
        if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            return Some("the fsync interval must be above zero");
        }
        None
    }
}
