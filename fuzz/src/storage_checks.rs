//! The properties the `storage_log` fuzz target checks: arbitrary bytes as the segment files of
//! a log directory, opened and read through `mycelium-storage`'s public API.
//!
//! - Input: a flag byte, a u16 LE split point, then the bytes. Bit 0 of the flags asks for a
//!   second segment (the bytes after the split point) whose base offset is `flags >> 3` (1..=31;
//!   0 means one segment); bits 1 and 2 put a valid header before the first and second
//!   segment's bytes, so that the fuzzer need not find the magic.
//! - Opening never panics (an error is fine: an unknown format version).
//! - Reading from the start yields records with strictly increasing offsets within
//!   `[first_offset, next_offset)`; reading from a record's offset yields exactly the same
//!   records from it on; reading from a record's timestamp yields exactly the records from the
//!   first one (in offset order) at or after it.
//! - An append after recovery succeeds at `next_offset` and reads back; reopened, the log has no
//!   torn tail and the same records plus that one.
//!
//! This file is compiled by the fuzz crate and, through `#[path]`, by
//! `mycelium-storage/tests/fuzz_corpus.rs`, which replays the committed corpus on stable.

use std::fs;
use std::path::PathBuf;

use mycelium_storage::{FsyncPolicy, Log, LogOptions, Record, StartAt};

fn header(base: u64) -> Vec<u8> {
    let mut h = b"MYCLOG".to_vec();
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&base.to_le_bytes());
    h
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mycelium-fuzz-storage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

fn read(log: &Log, from: StartAt) -> Vec<Record> {
    let mut out = Vec::new();
    for r in log.reader(from) {
        out.push(r.expect("reading a local file"));
    }
    out
}

/// Checks the log on `data`; panics on a violation.
pub fn check_storage_log(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (split, body) = match rest {
        [a, b, body @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), body),
        _ => (0, rest),
    };
    let second_base = u64::from(flags >> 3);
    let (first, second) = if flags & 1 != 0 && second_base > 0 {
        let (a, b) = body.split_at(split.min(body.len()));
        (a, Some(b))
    } else {
        (body, None)
    };
    let dir = scratch_dir();
    let mut bytes = if flags & 2 != 0 {
        header(0)
    } else {
        Vec::new()
    };
    bytes.extend_from_slice(first);
    fs::write(dir.join(format!("{:020}.log", 0)), &bytes).expect("writing segment 0");
    if let Some(second) = second {
        let mut bytes = if flags & 4 != 0 {
            header(second_base)
        } else {
            Vec::new()
        };
        bytes.extend_from_slice(second);
        fs::write(dir.join(format!("{second_base:020}.log")), &bytes).expect("writing segment 1");
    }
    let options = LogOptions {
        segment_bytes: 4096,
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    };
    let Ok(mut log) = Log::open(&dir, options) else {
        let _ = fs::remove_dir_all(&dir);
        return;
    };
    let (first_offset, next_offset) = (log.first_offset(), log.next_offset());
    assert!(first_offset <= next_offset);
    let records = read(&log, StartAt::Earliest);
    let mut prev = None;
    for r in &records {
        assert!(r.offset() >= first_offset && r.offset() < next_offset);
        assert!(prev < Some(r.offset()), "offsets increase");
        prev = Some(r.offset());
    }
    for k in [0, records.len() / 2, records.len().saturating_sub(1)] {
        let Some(at) = records.get(k) else { break };
        assert_eq!(read(&log, StartAt::Offset(at.offset())), records[k..]);
        let t = at.timestamp_ns();
        let i = records
            .iter()
            .position(|r| r.timestamp_ns() >= t)
            .unwrap_or(k);
        assert_eq!(read(&log, StartAt::Timestamp(t)), records[i..]);
    }
    assert!(read(&log, StartAt::Latest).is_empty());

    let offset = log
        .append(7, b"env", b"payload")
        .expect("appending after recovery");
    assert_eq!(offset, next_offset);
    let back = read(&log, StartAt::Offset(offset));
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].envelope(), back[0].payload()),
        (&b"env"[..], &b"payload"[..])
    );
    drop(log);

    let log = Log::open(&dir, options).expect("reopening");
    assert_eq!(log.recovery().torn_tail, None);
    assert_eq!(log.next_offset(), next_offset + 1);
    let again = read(&log, StartAt::Earliest);
    assert_eq!(again[..again.len() - 1], records[..]);
    drop(log);
    let _ = fs::remove_dir_all(&dir);
}
