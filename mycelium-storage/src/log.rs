//! The log: a directory of segments, appended at the newest, read from anywhere, trimmed at the
//! oldest.
//!
//! - [`Log::open`] recovers: the active (newest) segment's torn tail is cut off, sealed segments'
//!   missing or inconsistent indexes are rebuilt; [`Log::recovery`] says what was found.
//! - Offsets are dense and increasing from 0. An append (or a whole batch, which always lies in
//!   one segment) either lands entirely or leaves nothing: a failed write is truncated away and
//!   the log stays readable and appendable.
//! - Durability follows [`FsyncPolicy`]; [`Log::durable_offset`] says how far it got.
//! - Retention deletes whole sealed segments, oldest first; never the active one.

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::durability::{Durability, Syncer};
use crate::error::{AppendError, OpenError, RetentionError, SyncError};
use crate::options::{FsyncPolicy, LogOptions, MAX_BATCH_BYTES};
use crate::reader::{LogReader, StartAt};
use crate::record::{self, MAX_RECORD_DATA};
use crate::report::{RecoveryReport, RetentionReport};
use crate::segment::{self, HeaderCheck, Segment, HEADER_LEN};

/// See the module doc.
///
/// ```
/// use mycelium_storage::{FsyncPolicy, Log, LogOptions, StartAt};
///
/// let dir = tempfile::tempdir()?;
/// let options = LogOptions { fsync: FsyncPolicy::Never, ..LogOptions::default() };
/// let mut log = Log::open(dir.path(), options)?;
/// assert_eq!(log.append(1_000, b"envelope", b"hello")?, 0);
/// assert_eq!(log.append_batch([(2_000, &b""[..], &b"a"[..]), (3_000, b"", b"b")])?, 1..3);
/// let records: Vec<_> = log.reader(StartAt::Offset(1)).collect::<Result<_, _>>()?;
/// assert_eq!(records[0].payload(), b"a");
/// assert_eq!(records.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Log {
    dir: PathBuf,
    options: LogOptions,
    /// Oldest first; the last one is the active segment, the only one written to.
    segments: Vec<Segment>,
    /// Encoded records of the append in progress, reused.
    scratch: Vec<u8>,
    /// Timestamp and size of each record in `scratch`, reused.
    batch: Vec<(u64, u64)>,
    /// How far the log is synced; shared with the syncer thread.
    durability: Arc<Durability>,
    /// The syncer (`FsyncPolicy::Interval` and `GroupCommit` only); stopped and joined when the log is
    /// dropped, before the log's own final sync.
    syncer: Option<Syncer>,
    recovery: RecoveryReport,
    /// Test hook: the next write stores this many bytes and then fails as a full disk would.
    #[cfg(test)]
    pub(crate) fail_next_write: Option<usize>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens (creating it if needed) the log in `dir` and recovers it (see the module doc).
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self, OpenError> {
        if let Some(problem) = options.problem() {
            return Err(OpenError::Options(problem));
        }
        let dir = dir.as_ref().to_path_buf();
        let dir_err = |source| OpenError::Dir {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(dir_err)?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            if let Some(base) = entry.file_name().to_str().and_then(segment::parse_log_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let syncs = options.fsync != FsyncPolicy::Never;
        let mut recovery = RecoveryReport::default();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(segment::file_name(base, "log"));
            let seg_err = |source| OpenError::Segment {
                path: path.clone(),
                source,
            };
            let (seg, findings) = match bases.get(i + 1) {
                Some(&upper) => Segment::open_sealed(&dir, base, upper),
                None => Segment::open_active(&dir, base),
            }
            .map_err(seg_err)?;
            match findings.header {
                Some(HeaderCheck::Version(version)) => {
                    return Err(OpenError::UnsupportedVersion { path, version })
                }
                Some(HeaderCheck::Damaged) => {
                    tracing::warn!(segment = %path.display(), "damaged segment header");
                    recovery.damaged_headers.push(base);
                }
                _ => {}
            }
            if let Some(torn) = findings.torn {
                tracing::warn!(
                    segment = %path.display(),
                    position = torn.position,
                    bytes = torn.bytes,
                    next_offset = torn.next_offset,
                    "truncated the log's torn tail"
                );
                recovery.torn_tail = Some(torn);
            }
            for c in &findings.corruptions {
                tracing::warn!(
                    segment = %path.display(),
                    position = c.position,
                    bytes = c.skipped_bytes,
                    "corrupt bytes in a sealed segment; readers skip them"
                );
            }
            recovery.corruptions.extend(findings.corruptions);
            if findings.rebuilt_index {
                recovery.rebuilt_indexes.push(base);
            }
            segments.push(seg);
        }
        if segments.is_empty() {
            let seg = Segment::create(&dir, 0).map_err(|source| OpenError::Segment {
                path: dir.join(segment::file_name(0, "log")),
                source,
            })?;
            segments.push(seg);
            if syncs {
                sync_dir(&dir).map_err(dir_err)?;
            }
        }
        let Some(active) = segments.last() else {
            return Err(dir_err(io::Error::other("no active segment")));
        };
        if syncs {
            // What recovery kept (and a truncation it made) is durable from here on.
            active
                .file
                .sync_data()
                .map_err(|source| OpenError::Segment {
                    path: active.path.clone(),
                    source,
                })?;
        }
        let durability = Arc::new(Durability::new(
            Arc::clone(&active.file),
            active.next_offset,
            options.fsync == FsyncPolicy::GroupCommit,
        ));
        let syncer = match options.fsync {
            FsyncPolicy::Interval(d) => {
                Some(Syncer::start(Arc::clone(&durability), Some(d)).map_err(OpenError::Syncer)?)
            }
            FsyncPolicy::GroupCommit => {
                Some(Syncer::start(Arc::clone(&durability), None).map_err(OpenError::Syncer)?)
            }
            _ => None,
        };
        Ok(Self {
            dir,
            options,
            segments,
            scratch: Vec::new(),
            batch: Vec::new(),
            durability,
            syncer,
            recovery,
            #[cfg(test)]
            fail_next_write: None,
        })
    }

    fn active(&self) -> &Segment {
        // `open` always leaves at least one segment and retention never removes the last.
        &self.segments[self.segments.len() - 1]
    }

    /// Appends one record; answers its offset.
    pub fn append(
        &mut self,
        timestamp_ns: u64,
        envelope: &[u8],
        payload: &[u8],
    ) -> Result<u64, AppendError> {
        self.append_batch([(timestamp_ns, envelope, payload)])
            .map(|offsets| offsets.start)
    }

    /// Appends records `(timestamp_ns, envelope, payload)` as one write (and, under
    /// [`FsyncPolicy::Always`], one sync); answers their offsets. The batch lands whole in one
    /// segment or not at all.
    pub fn append_batch<'a, I>(&mut self, records: I) -> Result<Range<u64>, AppendError>
    where
        I: IntoIterator<Item = (u64, &'a [u8], &'a [u8])>,
    {
        self.scratch.clear();
        self.batch.clear();
        let start = self.active().next_offset;
        let mut next = start;
        for (timestamp_ns, envelope, payload) in records {
            let data = envelope.len() + payload.len();
            if data > MAX_RECORD_DATA {
                return Err(AppendError::TooLarge {
                    size: data as u64,
                    max: MAX_RECORD_DATA as u64,
                });
            }
            let size = record::encoded_len(envelope.len(), payload.len());
            let total = (self.scratch.len() + size) as u64;
            if total > MAX_BATCH_BYTES {
                return Err(AppendError::TooLarge {
                    size: total,
                    max: MAX_BATCH_BYTES,
                });
            }
            record::encode_into(&mut self.scratch, next, timestamp_ns, envelope, payload);
            self.batch.push((timestamp_ns, size as u64));
            next += 1;
        }
        let Some(&(first_ts, _)) = self.batch.first() else {
            return Ok(start..start);
        };
        if self.should_roll(first_ts, self.scratch.len() as u64) {
            self.roll()?;
        }
        let policy = self.options.fsync;
        let last = self.segments.len() - 1;
        let active = &mut self.segments[last];
        let pos = active.size;
        #[cfg(test)]
        let written = write_with_hook(
            &active.file,
            &self.scratch,
            pos,
            self.fail_next_write.take(),
        );
        #[cfg(not(test))]
        let written = active.file.write_all_at(&self.scratch, pos);
        let written = written.and_then(|()| match policy {
            FsyncPolicy::Always => active.file.sync_data(),
            _ => Ok(()),
        });
        if let Err(source) = written {
            // Leave whole records only; should this fail too, the next append overwrites the
            // bytes from `pos` and recovery cuts whatever lies past the last whole record.
            if let Err(e) = active.file.set_len(pos) {
                tracing::warn!(segment = %active.path.display(), error = %e, "cannot truncate a failed append");
            }
            return Err(AppendError::Write {
                path: active.path.clone(),
                source,
            });
        }
        let mut at = pos;
        for (i, &(ts, size)) in self.batch.iter().enumerate() {
            active.note_record(start + i as u64, ts, at, size);
            at += size;
        }
        match policy {
            FsyncPolicy::Always => self.durability.mark_durable(next),
            FsyncPolicy::Interval(_) | FsyncPolicy::GroupCommit => self.durability.appended(next),
            FsyncPolicy::Never => {}
        }
        Ok(start..next)
    }

    fn should_roll(&self, first_ts: u64, bytes: u64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let full = active.size + bytes > self.options.segment_bytes;
        let old = match (self.options.segment_age, active.first_timestamp) {
            (Some(age), Some(first)) => {
                u128::from(first_ts.saturating_sub(first)) >= age.as_nanos()
            }
            _ => false,
        };
        full || old
    }

    /// Seals the active segment and starts the next one at the next offset.
    fn roll(&mut self) -> Result<(), AppendError> {
        let syncs = self.options.fsync != FsyncPolicy::Never;
        let roll_err = |source| AppendError::Roll {
            path: self.dir.clone(),
            source,
        };
        let last = self.segments.len() - 1;
        let next = self.segments[last].next_offset;
        self.segments[last]
            .seal(&self.dir, syncs)
            .map_err(roll_err)?;
        if syncs {
            self.durability.mark_durable(next);
        }
        let seg = Segment::create(&self.dir, next).map_err(roll_err)?;
        if syncs {
            sync_dir(&self.dir).map_err(roll_err)?;
        }
        self.durability.switch_file(&seg.file);
        self.segments.push(seg);
        Ok(())
    }

    /// Syncs the active segment now, whatever the policy.
    pub fn sync(&self) -> Result<(), SyncError> {
        let active = self.active();
        let next = active.next_offset;
        active.file.sync_data().map_err(|source| SyncError {
            path: active.path.clone(),
            source,
        })?;
        self.durability.mark_durable(next);
        Ok(())
    }

    /// Every record below this offset is on disk (synced). Under [`FsyncPolicy::Never`] it
    /// moves only with [`Log::sync`]. At open it is the next offset: what recovery kept counts
    /// as durable (synced first unless the policy is `Never`).
    pub fn durable_offset(&self) -> u64 {
        self.durability.durable()
    }

    /// Calls `listener` with the new durable offset each time it moves, from whichever thread
    /// moved it (the syncer's, or the appender's under [`FsyncPolicy::Always`] and at a
    /// segment roll), after [`Log::wait_durable`] callers are woken; the offsets it is told
    /// never decrease (one may repeat). Replaces any listener set before. It must be quick and must not call
    /// into the log (it may run while the log is borrowed for an append).
    pub fn set_durable_listener(&self, listener: impl Fn(u64) + Send + Sync + 'static) {
        self.durability.set_listener(Box::new(listener));
    }

    /// Waits until every record below `offset` is durable, or `timeout` passes; answers
    /// whether it is.
    pub fn wait_durable(&self, offset: u64, timeout: Duration) -> bool {
        self.durability.wait(offset, timeout)
    }

    /// A reader from `from` (see [`StartAt`]).
    pub fn reader(&self, from: StartAt) -> LogReader {
        let last = self.segments.len() - 1;
        let latest = || {
            LogReader::new(
                &self.segments,
                last,
                self.active().size,
                self.next_offset(),
                None,
            )
        };
        match from {
            StartAt::Earliest => LogReader::new(&self.segments, 0, HEADER_LEN, 0, None),
            StartAt::Latest => latest(),
            StartAt::Offset(n) if n >= self.next_offset() => latest(),
            StartAt::Offset(n) => {
                let i = self
                    .segments
                    .partition_point(|s| s.base <= n)
                    .saturating_sub(1);
                let seg = &self.segments[i];
                let pos = match n.checked_sub(seg.base) {
                    Some(rel) => seg.indexes.position_for(rel),
                    None => HEADER_LEN,
                };
                LogReader::new(&self.segments, i, pos, n, None)
            }
            StartAt::Timestamp(t) => {
                let found = self
                    .segments
                    .iter()
                    .position(|s| s.indexes.max_timestamp().is_some_and(|m| m >= t));
                let Some(i) = found else {
                    return latest();
                };
                let seg = &self.segments[i];
                let rel = seg.indexes.relative_offset_for_time(t);
                let pos = seg.indexes.position_for(rel);
                LogReader::new(&self.segments, i, pos, seg.base + rel, Some(t))
            }
        }
    }

    /// Keeps what `retention` says from the next [`Log::enforce_retention`] on.
    pub fn set_retention(&mut self, retention: crate::Retention) {
        self.options.retention = retention;
    }

    /// Starts a segment when the active one's records span `age` (checked at each append);
    /// `None`: by size alone.
    pub fn set_segment_age(&mut self, age: Option<Duration>) {
        self.options.segment_age = age;
    }

    /// Syncs under `fsync` from the next append on: the syncer thread of the old policy is
    /// stopped and one for the new policy started. Records appended before stay as durable as
    /// they were; under the new policy the next sync covers them.
    pub fn set_fsync(&mut self, fsync: FsyncPolicy) -> Result<(), OpenError> {
        if fsync == self.options.fsync {
            return Ok(());
        }
        let candidate = LogOptions {
            fsync,
            ..self.options
        };
        if let Some(problem) = candidate.problem() {
            return Err(OpenError::Options(problem));
        }
        drop(self.syncer.take());
        self.durability
            .set_wake_on_append(fsync == FsyncPolicy::GroupCommit);
        self.syncer = match fsync {
            FsyncPolicy::Interval(d) => Some(
                Syncer::start(Arc::clone(&self.durability), Some(d)).map_err(OpenError::Syncer)?,
            ),
            FsyncPolicy::GroupCommit => {
                Some(Syncer::start(Arc::clone(&self.durability), None).map_err(OpenError::Syncer)?)
            }
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        };
        self.options.fsync = fsync;
        Ok(())
    }

    /// Deletes the sealed segments that [`LogOptions::retention`] no longer keeps, oldest
    /// first; `now_ns` is the current time in ns since the epoch (ages are measured from it).
    pub fn enforce_retention(&mut self, now_ns: u64) -> Result<RetentionReport, RetentionError> {
        let limits = self.options.retention;
        let mut report = RetentionReport::default();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_old = limits.max_age.is_some_and(|age| {
                let newest = oldest.indexes.max_timestamp().unwrap_or(0);
                u128::from(now_ns.saturating_sub(newest)) > age.as_nanos()
            });
            // Size and count limits keep at least the limit: the oldest segment goes only if
            // what is left still holds it.
            let too_big = limits
                .max_bytes
                .is_some_and(|max| self.size_bytes() - oldest.size >= max);
            let too_many = limits
                .max_records
                .is_some_and(|max| self.record_count() - (oldest.next_offset - oldest.base) >= max);
            if !(too_old || too_big || too_many) {
                break;
            }
            oldest.delete(&self.dir).map_err(|source| RetentionError {
                path: oldest.path.clone(),
                source,
            })?;
            let gone = self.segments.remove(0);
            report.segments += 1;
            report.records += gone.next_offset - gone.base;
            report.bytes += gone.size;
        }
        Ok(report)
    }

    /// The oldest offset retained (equal to [`Log::next_offset`] when the log is empty).
    pub fn first_offset(&self) -> u64 {
        self.segments[0].base
    }

    /// The offset the next append takes.
    pub fn next_offset(&self) -> u64 {
        self.active().next_offset
    }

    /// Records retained (offsets from [`Log::first_offset`] to [`Log::next_offset`]).
    pub fn record_count(&self) -> u64 {
        self.next_offset() - self.first_offset()
    }

    /// Bytes of segment files (headers included; indexes not).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening the log found and repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        drop(self.syncer.take());
        if self.options.fsync != FsyncPolicy::Never {
            if let Err(e) = self.sync() {
                tracing::warn!(error = %e, "final sync of the log failed");
            }
        }
    }
}

#[cfg(test)]
fn write_with_hook(
    file: &File,
    bytes: &[u8],
    pos: u64,
    fail_after: Option<usize>,
) -> io::Result<()> {
    match fail_after {
        None => file.write_all_at(bytes, pos),
        Some(n) => {
            file.write_all_at(&bytes[..n.min(bytes.len())], pos)?;
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ))
        }
    }
}
