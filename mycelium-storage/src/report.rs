//! What recovery and reading found wrong on disk: torn tails cut off and corrupt bytes skipped.

/// A torn tail: bytes at the end of the active segment that were not a whole, valid,
/// in-sequence record (a write cut short by a crash), truncated away when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The base offset of the segment.
    pub segment_base: u64,
    /// Where the cut was made: the end of the last whole record.
    pub position: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// The offset the next append takes.
    pub next_offset: u64,
}

/// Bytes inside a segment that held no valid record and were skipped, never served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The base offset of the segment.
    pub segment_base: u64,
    /// Where the bad bytes start.
    pub position: u64,
    /// How many bytes were skipped before the next valid record (or the segment's end).
    pub skipped_bytes: u64,
    /// The offset of the last good record before them, if any in this segment.
    pub after_offset: Option<u64>,
}

/// What [`Log::open`](crate::Log::open) found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The active segment's torn tail, if one was cut.
    pub torn_tail: Option<TornTail>,
    /// Bad records found in sealed segments while rebuilding their indexes (they stay on
    /// disk and are skipped by every reader).
    pub corruptions: Vec<Corruption>,
    /// The sealed segments (by base offset) whose indexes were missing or inconsistent and
    /// were rebuilt from the log.
    pub rebuilt_indexes: Vec<u64>,
    /// The segments (by base offset) whose header was damaged; the records were read anyway.
    pub damaged_headers: Vec<u64>,
}

impl RecoveryReport {
    /// Whether the log was found exactly as it was left.
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none()
            && self.corruptions.is_empty()
            && self.rebuilt_indexes.is_empty()
            && self.damaged_headers.is_empty()
    }
}

/// What [`Log::enforce_retention`](crate::Log::enforce_retention) deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments: usize,
    /// Records in them.
    pub records: u64,
    /// Bytes of their log files.
    pub bytes: u64,
}
