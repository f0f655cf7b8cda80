//! One segment: a `<base>.log` file of records with dense offsets from `base`, and its indexes.
//!
//! - The file starts with a 16-byte header: `MYCLOG`, format version u16 LE, base offset u64 LE.
//! - [`Segment::create`] writes the header; [`Segment::open_active`] scans every record strictly
//!   and truncates a torn tail; [`Segment::open_sealed`] loads its indexes when they are
//!   consistent, or scans (skipping and reporting bad records) and rewrites them.
//! - Appends are positioned writes at the end of the valid bytes; a failed write is truncated
//!   away, so the segment holds whole records only.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cursor::{Cursor, Step};
use crate::index::Indexes;
use crate::report::{Corruption, TornTail};

/// Bytes of the segment header.
pub(crate) const HEADER_LEN: u64 = 16;
/// The header's first bytes.
pub(crate) const MAGIC: &[u8; 6] = b"MYCLOG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// The file name of a segment's log, index or time index: the base offset in 20 digits.
pub(crate) fn file_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// The base offset a `<20 digits>.log` name stands for.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0; HEADER_LEN as usize];
    h[..6].copy_from_slice(MAGIC);
    h[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[8..].copy_from_slice(&base.to_le_bytes());
    h
}

/// What a segment's header says.
pub(crate) enum HeaderCheck {
    Good,
    /// Too short, wrong magic or wrong base: damaged, the records may still be good.
    Damaged,
    /// Our magic with another format version.
    Version(u16),
}

fn check_header(file: &File, base: u64) -> io::Result<HeaderCheck> {
    let mut h = [0; HEADER_LEN as usize];
    let mut filled = 0;
    while filled < h.len() {
        match file.read_at(&mut h[filled..], filled as u64)? {
            0 => return Ok(HeaderCheck::Damaged),
            n => filled += n,
        }
    }
    if &h[..6] != MAGIC {
        return Ok(HeaderCheck::Damaged);
    }
    let version = u16::from_le_bytes([h[6], h[7]]);
    if version != FORMAT_VERSION {
        return Ok(HeaderCheck::Version(version));
    }
    Ok(if h[8..] == base.to_le_bytes() {
        HeaderCheck::Good
    } else {
        HeaderCheck::Damaged
    })
}

/// What opening a segment found besides its records.
#[derive(Default)]
pub(crate) struct OpenFindings {
    pub(crate) header: Option<HeaderCheck>,
    pub(crate) torn: Option<TornTail>,
    pub(crate) corruptions: Vec<Corruption>,
    pub(crate) rebuilt_index: bool,
}

/// See the module doc.
pub(crate) struct Segment {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    /// Shared with the interval syncer, which syncs the active segment's file.
    pub(crate) file: Arc<File>,
    /// Bytes of header and whole records: where the next record goes.
    pub(crate) size: u64,
    /// One past the last record's offset (`base` when empty).
    pub(crate) next_offset: u64,
    pub(crate) first_timestamp: Option<u64>,
    pub(crate) indexes: Indexes,
}

impl Segment {
    fn index_paths(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
        (
            dir.join(file_name(base, "index")),
            dir.join(file_name(base, "timeindex")),
        )
    }

    /// Creates a new, empty segment file (failing if one exists).
    pub(crate) fn create(dir: &Path, base: u64) -> io::Result<Self> {
        let path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&header(base), 0)?;
        Ok(Self {
            base,
            path,
            file: Arc::new(file),
            size: HEADER_LEN,
            next_offset: base,
            first_timestamp: None,
            indexes: Indexes::default(),
        })
    }

    /// Opens the last segment: scans it strictly, truncates whatever follows the last whole,
    /// in-sequence record and rewrites a damaged header.
    pub(crate) fn open_active(dir: &Path, base: u64) -> io::Result<(Self, OpenFindings)> {
        let path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut findings = OpenFindings::default();
        let head = check_header(&file, base)?;
        if let HeaderCheck::Damaged = head {
            file.write_all_at(&header(base), 0)?;
        }
        let mut seg = Self {
            base,
            path,
            file: Arc::new(file),
            size: HEADER_LEN,
            next_offset: base,
            first_timestamp: None,
            indexes: Indexes::default(),
        };
        let unreadable = matches!(head, HeaderCheck::Version(_));
        findings.header = Some(head);
        if unreadable {
            return Ok((seg, findings));
        }
        let file = Arc::clone(&seg.file);
        let mut cursor = Cursor::new(file, HEADER_LEN, file_len, true, base, u64::MAX);
        while let Step::Record { record, pos, size } = cursor.next_step()? {
            seg.note_record(record.offset, record.timestamp_ns, pos, size);
        }
        let valid = seg.size.max(HEADER_LEN);
        if file_len > valid {
            findings.torn = Some(TornTail {
                segment_base: base,
                position: valid,
                bytes: file_len - valid,
                next_offset: seg.next_offset,
            });
            seg.file.set_len(valid)?;
        } else if file_len < HEADER_LEN {
            seg.file.set_len(HEADER_LEN)?;
        }
        Ok((seg, findings))
    }

    /// Opens a sealed segment whose offsets lie below `upper` (the next segment's base).
    pub(crate) fn open_sealed(
        dir: &Path,
        base: u64,
        upper: u64,
    ) -> io::Result<(Self, OpenFindings)> {
        let path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new().read(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut findings = OpenFindings {
            header: Some(check_header(&file, base)?),
            ..OpenFindings::default()
        };
        let (index, time_index) = Self::index_paths(dir, base);
        let count = upper.saturating_sub(base);
        let mut seg = Self {
            base,
            path,
            file: Arc::new(file),
            size: file_len.max(HEADER_LEN),
            next_offset: upper,
            first_timestamp: None,
            indexes: Indexes::default(),
        };
        if let Some(HeaderCheck::Version(_)) = findings.header {
            return Ok((seg, findings));
        }
        if let Some(indexes) = Indexes::load(&index, &time_index, file_len, count) {
            seg.indexes = indexes;
            return Ok((seg, findings));
        }
        let file = Arc::clone(&seg.file);
        let mut cursor = Cursor::new(file, HEADER_LEN, file_len, false, base, upper);
        let mut last: Option<u64> = None;
        loop {
            match cursor.next_step()? {
                Step::Record { record, pos, size } => {
                    let rel = record.offset - base;
                    if seg.first_timestamp.is_none() {
                        seg.first_timestamp = Some(record.timestamp_ns);
                    }
                    seg.indexes
                        .on_record(rel as u32, pos as u32, size, record.timestamp_ns);
                    last = Some(record.offset);
                }
                Step::Skipped { pos, len } => findings.corruptions.push(Corruption {
                    segment_base: base,
                    position: pos,
                    skipped_bytes: len,
                    after_offset: last,
                }),
                Step::Torn | Step::End => break,
            }
        }
        seg.indexes.seal();
        findings.rebuilt_index = true;
        // The indexes are hints; a failure to store them costs only the next open a scan.
        if let Err(e) = seg.indexes.write(&index, &time_index, false) {
            tracing::warn!(segment = %seg.path.display(), error = %e, "cannot rewrite segment indexes");
        }
        Ok((seg, findings))
    }

    /// Notes a record just written (or scanned) at `pos`.
    pub(crate) fn note_record(&mut self, offset: u64, timestamp_ns: u64, pos: u64, size: u64) {
        if self.first_timestamp.is_none() {
            self.first_timestamp = Some(timestamp_ns);
        }
        let rel = offset - self.base;
        // Positions and relative offsets fit u32: segments are capped far below 4 GiB.
        self.indexes
            .on_record(rel as u32, pos as u32, size, timestamp_ns);
        self.size = pos + size;
        self.next_offset = offset + 1;
    }

    /// Whether the segment holds no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.next_offset == self.base
    }

    /// Seals the segment: syncs it when `sync` is set and writes its indexes.
    pub(crate) fn seal(&mut self, dir: &Path, sync: bool) -> io::Result<()> {
        if sync {
            self.file.sync_data()?;
        }
        self.indexes.seal();
        let (index, time_index) = Self::index_paths(dir, self.base);
        self.indexes.write(&index, &time_index, sync)
    }

    /// Deletes the segment's files, indexes first (a log without indexes is rebuilt).
    pub(crate) fn delete(&self, dir: &Path) -> io::Result<()> {
        let (index, time_index) = Self::index_paths(dir, self.base);
        for p in [&index, &time_index] {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::remove_file(&self.path)
    }
}
