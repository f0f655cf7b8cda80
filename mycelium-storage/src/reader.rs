//! Reading a log: records in offset order from a chosen start, across segments.
//!
//! - A [`LogReader`] sees the records the log held when it was made (or last
//!   [`caught up`](LogReader::catch_up)): whole records only, never a write in progress.
//! - Bad bytes are skipped, never served: the reader resynchronises on the next valid record
//!   of the segment with a greater offset, and reports what it skipped
//!   ([`LogReader::corruptions`]); the offsets of skipped records are simply absent.
//! - A reader holds the segments' open files: retention deleting a segment under it does not
//!   cut a read short.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cursor::{Cursor, Step};
use crate::error::ReadError;
use crate::report::Corruption;
use crate::segment::{Segment, HEADER_LEN};

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record retained.
    Earliest,
    /// The record with this offset, or the oldest one after it (the oldest retained when the
    /// offset is older).
    Offset(u64),
    /// The first record, in offset order, whose timestamp (ns since the epoch) is at or after
    /// this one.
    Timestamp(u64),
    /// After the newest record: only records appended later (see [`LogReader::catch_up`]).
    Latest,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    offset: u64,
    timestamp_ns: u64,
    envelope_len: usize,
    /// Envelope then payload, in one allocation.
    bytes: Vec<u8>,
}

impl Record {
    /// The record's offset in the log.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The timestamp it was appended with (ns since the epoch).
    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    /// The envelope bytes.
    pub fn envelope(&self) -> &[u8] {
        &self.bytes[..self.envelope_len]
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.envelope_len..]
    }
}

/// A segment as a reader sees it.
struct Snapshot {
    base: u64,
    path: PathBuf,
    file: Arc<File>,
    limit: u64,
    upper: u64,
}

impl Snapshot {
    fn of(seg: &Segment) -> Self {
        Self {
            base: seg.base,
            path: seg.path.clone(),
            file: Arc::clone(&seg.file),
            limit: seg.size,
            upper: seg.next_offset,
        }
    }
}

/// Reads records in order (see the module doc). Also an `Iterator` of
/// `Result<Record, ReadError>`.
pub struct LogReader {
    current: Option<(Snapshot, Cursor)>,
    queue: VecDeque<Snapshot>,
    /// The newest segment this reader knows.
    last_base: u64,
    /// Records below this offset are passed over (the start lies inside a segment).
    min_offset: u64,
    /// Records before the first one at or after this timestamp are passed over.
    min_timestamp: Option<u64>,
    last_offset: Option<u64>,
    corruptions: Vec<Corruption>,
}

impl LogReader {
    /// A reader over `segments` (oldest first, at least one) starting at `segments[index]`
    /// at byte `pos`.
    pub(crate) fn new(
        segments: &[Segment],
        index: usize,
        pos: u64,
        min_offset: u64,
        min_timestamp: Option<u64>,
    ) -> Self {
        let mut queue: VecDeque<Snapshot> = segments.iter().skip(index).map(Snapshot::of).collect();
        let last_base = segments.last().map_or(0, |s| s.base);
        let current = queue.pop_front().map(|snap| {
            let cursor = Cursor::new(
                Arc::clone(&snap.file),
                pos.max(HEADER_LEN),
                snap.limit,
                false,
                snap.base,
                snap.upper,
            );
            (snap, cursor)
        });
        Self {
            current,
            queue,
            last_base,
            min_offset,
            min_timestamp,
            last_offset: None,
            corruptions: Vec::new(),
        }
    }

    /// The next record, `Ok(None)` once every record this reader knows is read.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            if self.current.is_none() {
                let Some(snap) = self.queue.pop_front() else {
                    return Ok(None);
                };
                let cursor = Cursor::new(
                    Arc::clone(&snap.file),
                    HEADER_LEN,
                    snap.limit,
                    false,
                    snap.base,
                    snap.upper,
                );
                self.current = Some((snap, cursor));
            }
            let Some((snap, cursor)) = self.current.as_mut() else {
                return Ok(None);
            };
            let step = cursor.next_step().map_err(|source| ReadError {
                path: snap.path.clone(),
                source,
            })?;
            match step {
                Step::Record { record, .. } => {
                    if record.offset < self.min_offset {
                        continue;
                    }
                    if let Some(t) = self.min_timestamp {
                        if record.timestamp_ns < t {
                            continue;
                        }
                        self.min_timestamp = None;
                    }
                    self.last_offset = Some(record.offset);
                    let mut bytes =
                        Vec::with_capacity(record.envelope.len() + record.payload.len());
                    bytes.extend_from_slice(record.envelope);
                    bytes.extend_from_slice(record.payload);
                    return Ok(Some(Record {
                        offset: record.offset,
                        timestamp_ns: record.timestamp_ns,
                        envelope_len: record.envelope.len(),
                        bytes,
                    }));
                }
                Step::Skipped { pos, len } => {
                    let c = Corruption {
                        segment_base: snap.base,
                        position: pos,
                        skipped_bytes: len,
                        after_offset: self.last_offset.filter(|&o| o >= snap.base),
                    };
                    tracing::warn!(
                        segment = %snap.path.display(),
                        position = pos,
                        bytes = len,
                        "skipped corrupt bytes in the log"
                    );
                    self.corruptions.push(c);
                }
                Step::Torn | Step::End => {
                    if self.queue.is_empty() {
                        // Stay on the newest segment: `catch_up` may extend it.
                        return Ok(None);
                    }
                    self.current = None;
                }
            }
        }
    }

    /// Extends the reader to what `log` holds now: the newest segment's new records and the
    /// segments rolled since.
    pub fn catch_up(&mut self, log: &crate::Log) {
        for seg in log.segments() {
            if seg.base == self.last_base {
                if let Some((snap, cursor)) =
                    self.current.as_mut().filter(|(s, _)| s.base == seg.base)
                {
                    snap.limit = seg.size;
                    snap.upper = seg.next_offset;
                    cursor.extend(seg.size, seg.next_offset);
                } else if let Some(snap) = self.queue.back_mut() {
                    snap.limit = seg.size;
                    snap.upper = seg.next_offset;
                }
            } else if seg.base > self.last_base {
                self.queue.push_back(Snapshot::of(seg));
                self.last_base = seg.base;
            }
        }
    }

    /// The corrupt stretches skipped so far, oldest first.
    pub fn corruptions(&self) -> &[Corruption] {
        &self.corruptions
    }
}

impl Iterator for LogReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
