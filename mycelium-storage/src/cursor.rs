//! A forward cursor over the records of one segment file, through a bounded buffer.
//!
//! - Reads only inside `[start, limit)`; the file may be shorter than `limit` (a hostile or
//!   concurrently truncated file): the missing bytes read as the end.
//! - Never holds more than one record plus [`CHUNK`] bytes, and a record is at most
//!   [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN) plus its prefix, whatever a length field claims.
//! - Strict mode (the active segment at open) stops at the first record that is bad, short or
//!   out of sequence: [`Step::Torn`]. Resync mode (every read, and sealed segments at open)
//!   skips it: it looks at each later byte position for a valid record whose offset follows the
//!   last good one and stays below the segment's upper bound, and reports the bytes skipped.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::record::{self, Decoded, RecordRef, RECORD_FIXED, RECORD_PREFIX};

/// Bytes read at a time.
pub(crate) const CHUNK: usize = 256 * 1024;

/// What the cursor found next.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A valid record starting at `pos`, `size` bytes long.
    Record {
        record: RecordRef<'a>,
        pos: u64,
        size: u64,
    },
    /// Resync mode: `len` bytes from `pos` held no valid record and were skipped.
    Skipped { pos: u64, len: u64 },
    /// Strict mode: no valid record here; nothing after it is read.
    Torn,
    /// The limit is reached.
    End,
}

/// See the module doc.
pub(crate) struct Cursor {
    /// Shared with the segment: a reader keeps reading a segment that retention deleted.
    file: Arc<File>,
    pos: u64,
    limit: u64,
    strict: bool,
    /// The offset the next record must have (strict), or must at least have (resync).
    next_offset: u64,
    /// Resync mode: offsets at or above this belong to a later segment.
    upper: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    done: bool,
}

impl Cursor {
    pub(crate) fn new(
        file: Arc<File>,
        pos: u64,
        limit: u64,
        strict: bool,
        first_offset: u64,
        upper: u64,
    ) -> Self {
        Self {
            file,
            pos,
            limit,
            strict,
            next_offset: first_offset,
            upper,
            buf: Vec::new(),
            buf_pos: pos,
            done: false,
        }
    }

    /// Moves the limit and the upper bound on: the segment grew.
    pub(crate) fn extend(&mut self, limit: u64, upper: u64) {
        self.limit = self.limit.max(limit);
        self.upper = self.upper.max(upper);
    }

    /// Makes `buf` hold up to `want` bytes from `at` (fewer at the limit or the end of the
    /// file) and answers their range in `buf`.
    fn fill(&mut self, at: u64, want: usize) -> io::Result<Range<usize>> {
        let room = usize::try_from(self.limit.saturating_sub(at)).unwrap_or(usize::MAX);
        let want = want.min(room);
        let buf_end = self.buf_pos + self.buf.len() as u64;
        if at < self.buf_pos || at + want as u64 > buf_end {
            let len = want.max(CHUNK).min(room);
            self.buf.clear();
            self.buf.resize(len, 0);
            let mut filled = 0;
            while filled < len {
                match self
                    .file
                    .read_at(&mut self.buf[filled..], at + filled as u64)
                {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(filled);
            self.buf_pos = at;
        }
        let from = (at - self.buf_pos) as usize;
        let end = (from + want).min(self.buf.len());
        Ok(from..end)
    }

    /// The size and offset of a plausible record at `at`: its length, its offset (in sequence,
    /// below the upper bound) and its size within the limit are checked, not yet its checksum.
    fn plausible_at(&mut self, at: u64) -> io::Result<Option<(usize, u64)>> {
        let r = self.fill(at, RECORD_PREFIX + RECORD_FIXED)?;
        let head = &self.buf[r];
        let size = match record::peek_size(head) {
            Ok(Some(size)) => size,
            _ => return Ok(None),
        };
        let Some(offset) = record::peek_offset(head) else {
            return Ok(None);
        };
        let in_sequence = if self.strict {
            offset == self.next_offset
        } else {
            offset >= self.next_offset && offset < self.upper
        };
        if !in_sequence || size as u64 > self.limit.saturating_sub(at) {
            return Ok(None);
        }
        Ok(Some((size, offset)))
    }

    /// Whether a whole valid record lies at `at`.
    fn valid_at(&mut self, at: u64) -> io::Result<bool> {
        let Some((size, _)) = self.plausible_at(at)? else {
            return Ok(false);
        };
        let r = self.fill(at, size)?;
        Ok(matches!(record::decode(&self.buf[r]), Decoded::Record(..)))
    }

    /// The next step (see [`Step`]).
    pub(crate) fn next_step(&mut self) -> io::Result<Step<'_>> {
        if self.done || self.pos >= self.limit {
            return Ok(Step::End);
        }
        let at = self.pos;
        if let Some((size, _)) = self.plausible_at(at)? {
            let r = self.fill(at, size)?;
            let found = match record::decode(&self.buf[r.clone()]) {
                Decoded::Record(rec, n) => Some((rec.offset, n, rec.envelope.len())),
                _ => None,
            };
            if let Some((offset, n, envelope_len)) = found {
                self.pos = at + n as u64;
                self.next_offset = offset + 1;
                // The same bytes again, borrowed for the caller (one checksum per record).
                let body = &self.buf[r.start + RECORD_PREFIX..r.start + n];
                let (fixed, data) = body.split_at(RECORD_FIXED);
                let (envelope, payload) = data.split_at(envelope_len);
                let mut ts = [0; 8];
                ts.copy_from_slice(&fixed[8..16]);
                return Ok(Step::Record {
                    record: RecordRef {
                        offset,
                        timestamp_ns: u64::from_le_bytes(ts),
                        envelope,
                        payload,
                    },
                    pos: at,
                    size: n as u64,
                });
            }
        }
        if self.strict {
            self.done = true;
            return Ok(Step::Torn);
        }
        let mut p = at + 1;
        while p < self.limit && !self.valid_at(p)? {
            p += 1;
        }
        self.pos = p;
        Ok(Step::Skipped {
            pos: at,
            len: p - at,
        })
    }
}
