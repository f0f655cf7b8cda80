//! A segment's sparse offset index and time index: built as records are appended or scanned,
//! written whole when the segment is sealed, loaded only when consistent with the segment.
//!
//! - Offset index entry (8 bytes): relative offset u32 LE, byte position u32 LE, one about every
//!   [`INDEX_INTERVAL`] bytes of log: the position of that record's first byte.
//! - Time index entry (12 bytes): timestamp u64 LE, relative offset u32 LE, one about every
//!   [`INDEX_INTERVAL`] bytes and a last one when the segment is sealed: every record up to and
//!   including that relative offset has a timestamp at most that value (the running maximum, so
//!   the index stays sorted even when publish times are not).
//! - Both are hints: the log is the truth, and a file that fails [`Indexes::load`]'s checks is
//!   rebuilt from the log.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::segment::HEADER_LEN;

/// Bytes of log between two index entries.
pub(crate) const INDEX_INTERVAL: u64 = 4096;

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// The largest index file accepted: a hostile file must not make `load` allocate without bound
/// (a 4 GiB segment indexed every 4 KiB needs far less).
const MAX_INDEX_FILE: u64 = 64 * 1024 * 1024;

/// Both indexes of one segment, in memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct Indexes {
    offsets: Vec<(u32, u32)>,
    times: Vec<(u64, u32)>,
    since_offset: u64,
    since_time: u64,
    max_timestamp: Option<u64>,
    last_rel: Option<u32>,
}

impl Indexes {
    /// Notes a record of `size` bytes at `pos` with relative offset `rel`, in log order.
    pub(crate) fn on_record(&mut self, rel: u32, pos: u32, size: u64, timestamp_ns: u64) {
        if self.last_rel.is_some() && self.since_offset >= INDEX_INTERVAL {
            self.offsets.push((rel, pos));
            self.since_offset = 0;
        }
        self.since_offset += size;
        let max = self
            .max_timestamp
            .map_or(timestamp_ns, |m| m.max(timestamp_ns));
        self.max_timestamp = Some(max);
        self.last_rel = Some(rel);
        self.since_time += size;
        if self.since_time >= INDEX_INTERVAL {
            self.times.push((max, rel));
            self.since_time = 0;
        }
    }

    /// Adds the closing time entry (the segment's newest timestamp, at its last record).
    pub(crate) fn seal(&mut self) {
        if let (Some(max), Some(rel)) = (self.max_timestamp, self.last_rel) {
            if self.times.last() != Some(&(max, rel)) {
                self.times.push((max, rel));
            }
        }
    }

    /// The newest timestamp of the segment's records.
    pub(crate) fn max_timestamp(&self) -> Option<u64> {
        self.max_timestamp
    }

    /// A byte position at or before the record with relative offset `rel`.
    pub(crate) fn position_for(&self, rel: u64) -> u64 {
        let i = self.offsets.partition_point(|&(r, _)| u64::from(r) <= rel);
        match i.checked_sub(1) {
            Some(i) => u64::from(self.offsets[i].1),
            None => HEADER_LEN,
        }
    }

    /// The relative offset from which records may have a timestamp at or after `t`.
    pub(crate) fn relative_offset_for_time(&self, t: u64) -> u64 {
        let i = self.times.partition_point(|&(ts, _)| ts < t);
        match i.checked_sub(1) {
            Some(i) => u64::from(self.times[i].1) + 1,
            None => 0,
        }
    }

    /// Writes both files whole (through a temporary name, renamed over the old one) and
    /// syncs them when `sync` is set.
    pub(crate) fn write(&self, index: &Path, time_index: &Path, sync: bool) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY);
        for &(rel, pos) in &self.offsets {
            bytes.extend_from_slice(&rel.to_le_bytes());
            bytes.extend_from_slice(&pos.to_le_bytes());
        }
        write_whole(index, &bytes, sync)?;
        let mut bytes = Vec::with_capacity(self.times.len() * TIME_ENTRY);
        for &(ts, rel) in &self.times {
            bytes.extend_from_slice(&ts.to_le_bytes());
            bytes.extend_from_slice(&rel.to_le_bytes());
        }
        write_whole(time_index, &bytes, sync)
    }

    /// Reads both files of a sealed segment holding `count` offsets in `log_size` bytes;
    /// `None` when either is missing, unreadable or inconsistent with the segment.
    pub(crate) fn load(index: &Path, time_index: &Path, log_size: u64, count: u64) -> Option<Self> {
        let offsets_raw = read_bounded(index)?;
        let times_raw = read_bounded(time_index)?;
        if offsets_raw.len() % OFFSET_ENTRY != 0 || times_raw.len() % TIME_ENTRY != 0 {
            return None;
        }
        let mut offsets = Vec::with_capacity(offsets_raw.len() / OFFSET_ENTRY);
        let mut prev: Option<(u32, u32)> = None;
        for e in offsets_raw.chunks_exact(OFFSET_ENTRY) {
            let rel = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let ordered = prev.is_none_or(|(r, p)| rel > r && pos > p);
            if !ordered || u64::from(rel) >= count || u64::from(pos) < HEADER_LEN {
                return None;
            }
            if u64::from(pos) >= log_size {
                return None;
            }
            prev = Some((rel, pos));
            offsets.push((rel, pos));
        }
        let mut times = Vec::with_capacity(times_raw.len() / TIME_ENTRY);
        let mut prev: Option<(u64, u32)> = None;
        for e in times_raw.chunks_exact(TIME_ENTRY) {
            let mut ts = [0; 8];
            ts.copy_from_slice(&e[..8]);
            let ts = u64::from_le_bytes(ts);
            let rel = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            let ordered = prev.is_none_or(|(t, r)| ts >= t && rel > r);
            if !ordered || u64::from(rel) >= count {
                return None;
            }
            prev = Some((ts, rel));
            times.push((ts, rel));
        }
        // A segment with records has a closing time entry.
        if count > 0 && times.is_empty() {
            return None;
        }
        let last = times.last().copied();
        Some(Self {
            offsets,
            times,
            since_offset: 0,
            since_time: 0,
            max_timestamp: last.map(|(ts, _)| ts),
            last_rel: last.map(|(_, rel)| rel),
        })
    }
}

fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > MAX_INDEX_FILE {
        return None;
    }
    fs::read(path).ok()
}

fn write_whole(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_data()?;
    }
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_round_trip_through_files() {
        let mut ix = Indexes::default();
        let mut pos = HEADER_LEN;
        for rel in 0..100u32 {
            // Out-of-order timestamps: the time index keeps the running maximum.
            let ts = if rel == 50 { 5 } else { 1000 + u64::from(rel) };
            ix.on_record(rel, pos as u32, 1000, ts);
            pos += 1000;
        }
        ix.seal();
        assert_eq!(ix.max_timestamp(), Some(1099));
        assert_eq!(ix.position_for(0), HEADER_LEN);
        let p = ix.position_for(42);
        assert!(p <= HEADER_LEN + 42 * 1000 && p > HEADER_LEN);
        assert_eq!((p - HEADER_LEN) % 1000, 0);
        assert!(ix.relative_offset_for_time(1060) <= 60);
        assert_eq!(ix.relative_offset_for_time(0), 0);

        let dir = tempfile::tempdir().unwrap();
        let (i, t) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        ix.write(&i, &t, false).unwrap();
        let back = Indexes::load(&i, &t, pos, 100).unwrap();
        assert_eq!(back.offsets, ix.offsets);
        assert_eq!(back.times, ix.times);
        assert_eq!(back.max_timestamp(), Some(1099));
        // Inconsistent with the segment: refused, to be rebuilt.
        assert!(Indexes::load(&i, &t, pos, 10).is_none());
        assert!(Indexes::load(&i, &t, 5000, 100).is_none());
        fs::write(&i, [1, 2, 3]).unwrap();
        assert!(Indexes::load(&i, &t, pos, 100).is_none());
    }
}
