//! The log against crashes, bit rot, failing writes and retention.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::{FsyncPolicy, Log, LogOptions, Record, Retention, StartAt};

fn never(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("payload {i} {}", "x".repeat((i % 7) as usize * 13)).into_bytes()
}

fn fill(log: &mut Log, n: u64) {
    for i in log.next_offset()..log.next_offset() + n {
        assert_eq!(log.append(1_000 + i, b"env", &payload(i)).unwrap(), i);
    }
}

fn read_all(log: &Log, from: StartAt) -> Vec<Record> {
    log.reader(from).collect::<Result<_, _>>().unwrap()
}

fn offsets(records: &[Record]) -> Vec<u64> {
    records.iter().map(Record::offset).collect()
}

fn check_contents(records: &[Record]) {
    for r in records {
        assert_eq!(r.envelope(), b"env");
        assert_eq!(r.payload(), payload(r.offset()));
        assert_eq!(r.timestamp_ns(), 1_000 + r.offset());
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn appends_read_back_from_every_start_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1024)).unwrap();
    fill(&mut log, 200);
    assert!(log.segment_count() > 5, "small segments roll");
    let all = read_all(&log, StartAt::Earliest);
    assert_eq!(offsets(&all), (0..200).collect::<Vec<_>>());
    check_contents(&all);
    for n in [0, 1, 57, 150, 199] {
        assert_eq!(
            offsets(&read_all(&log, StartAt::Offset(n))),
            (n..200).collect::<Vec<_>>()
        );
    }
    assert!(read_all(&log, StartAt::Offset(200)).is_empty());
    assert!(read_all(&log, StartAt::Latest).is_empty());
    assert_eq!(
        offsets(&read_all(&log, StartAt::Timestamp(1_120))),
        (120..200).collect::<Vec<_>>()
    );
    assert!(read_all(&log, StartAt::Timestamp(5_000)).is_empty());
    let (segments, size) = (log.segment_count(), log.size_bytes());
    drop(log);

    let log = Log::open(dir.path(), never(1024)).unwrap();
    assert!(log.recovery().is_clean(), "{:?}", log.recovery());
    assert_eq!((log.segment_count(), log.size_bytes()), (segments, size));
    assert_eq!(
        (log.first_offset(), log.next_offset(), log.record_count()),
        (0, 200, 200)
    );
    assert_eq!(
        offsets(&read_all(&log, StartAt::Offset(99))),
        (99..200).collect::<Vec<_>>()
    );
    assert_eq!(
        offsets(&read_all(&log, StartAt::Timestamp(1_050))),
        (50..200).collect::<Vec<_>>()
    );
}

#[test]
fn a_batch_lands_whole_and_big_segments_use_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1 << 20)).unwrap();
    let big = vec![7u8; 300];
    let batch: Vec<(u64, &[u8], &[u8])> = (0..5000).map(|i| (i, &b""[..], &big[..])).collect();
    assert_eq!(log.append_batch(batch.iter().copied()).unwrap(), 0..5000);
    assert_eq!(log.append_batch(std::iter::empty()).unwrap(), 5000..5000);
    let from = read_all(&log, StartAt::Offset(4321));
    assert_eq!(from.first().map(Record::offset), Some(4321));
    assert_eq!(from.len(), 5000 - 4321);
    drop(log);
    let log = Log::open(dir.path(), never(1 << 20)).unwrap();
    assert_eq!(log.next_offset(), 5000);
    assert_eq!(read_all(&log, StartAt::Timestamp(4000)).len(), 1000);
}

#[test]
fn timestamps_out_of_order_start_at_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(256)).unwrap();
    for ts in [10, 30, 20, 40, 35, 50, 5, 60] {
        log.append(ts, b"", b"p").unwrap();
    }
    let at = |t| offsets(&read_all(&log, StartAt::Timestamp(t)));
    assert_eq!(at(0), (0..8).collect::<Vec<_>>());
    assert_eq!(at(25), (1..8).collect::<Vec<_>>());
    assert_eq!(at(36), (3..8).collect::<Vec<_>>());
    assert_eq!(at(60), vec![7]);
    assert!(at(61).is_empty());
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_record_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1024)).unwrap();
    fill(&mut log, 31);
    let active = log.segments().last().unwrap();
    let before_last = active.size - crate::record::encoded_len(3, payload(30).len()) as u64;
    let path = active.path.clone();
    drop(log);
    let full = fs::read(&path).unwrap();
    assert!(
        segment_files(dir.path()).len() > 1,
        "the torn segment follows sealed ones"
    );
    for cut in before_last..full.len() as u64 {
        fs::write(&path, &full).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let mut log = Log::open(dir.path(), never(1024)).unwrap();
        let torn = log.recovery().torn_tail.clone();
        if cut == before_last {
            assert_eq!(torn, None);
        } else {
            let torn = torn.unwrap();
            assert_eq!(
                (torn.position, torn.bytes, torn.next_offset),
                (before_last, cut - before_last, 30)
            );
        }
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            before_last,
            "cut at {cut}"
        );
        let all = read_all(&log, StartAt::Earliest);
        assert_eq!(offsets(&all), (0..30).collect::<Vec<_>>(), "cut at {cut}");
        check_contents(&all);
        assert_eq!(log.append(1_030, b"env", &payload(30)).unwrap(), 30);
        drop(log);
    }
}

#[test]
fn garbage_after_the_last_record_and_a_torn_header_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(4096)).unwrap();
    fill(&mut log, 3);
    let path = log.segments()[0].path.clone();
    drop(log);
    let mut bytes = fs::read(&path).unwrap();
    let good = bytes.len() as u64;
    bytes.extend_from_slice(&[0xff; 100]);
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(dir.path(), never(4096)).unwrap();
    assert_eq!(
        log.recovery().torn_tail.as_ref().map(|t| t.bytes),
        Some(100)
    );
    assert_eq!(log.size_bytes(), good);
    drop(log);
    // A segment file created but never written (a crash right after `create`).
    fs::write(dir.path().join("00000000000000000003.log"), b"MYC").unwrap();
    let mut log = Log::open(dir.path(), never(4096)).unwrap();
    assert_eq!(log.recovery().damaged_headers, vec![3]);
    assert_eq!(log.next_offset(), 3);
    assert_eq!(log.append(1_003, b"env", &payload(3)).unwrap(), 3);
    check_contents(&read_all(&log, StartAt::Earliest));
    assert_eq!(read_all(&log, StartAt::Earliest).len(), 4);
}

#[test]
fn a_bit_flip_anywhere_in_a_sealed_record_skips_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1024)).unwrap();
    fill(&mut log, 60);
    assert!(log.segment_count() >= 3);
    // The third record of the second segment.
    let seg = &log.segments()[1];
    let (path, base) = (seg.path.clone(), seg.base);
    drop(log);
    let clean = fs::read(&path).unwrap();
    let mut starts = vec![crate::segment::HEADER_LEN as usize];
    while starts.len() < 4 {
        let at = *starts.last().unwrap();
        let len = u32::from_le_bytes(clean[at..at + 4].try_into().unwrap()) as usize;
        starts.push(at + 8 + len);
    }
    let (from, to, victim) = (starts[2], starts[3], base + 2);
    for rebuild in [false, true] {
        for byte in from..to {
            for bit in [0u8, 7] {
                let mut bytes = clean.clone();
                bytes[byte] ^= 1 << bit;
                fs::write(&path, &bytes).unwrap();
                if rebuild {
                    let _ = fs::remove_file(path.with_extension("index"));
                }
                let log = Log::open(dir.path(), never(1024)).unwrap();
                let mut reader = log.reader(StartAt::Earliest);
                let all: Vec<Record> = reader.by_ref().collect::<Result<_, _>>().unwrap();
                let want: Vec<u64> = (0..60).filter(|&o| o != victim).collect();
                assert_eq!(offsets(&all), want, "byte {byte} bit {bit}");
                check_contents(&all);
                let c = reader.corruptions();
                assert_eq!(c.len(), 1, "byte {byte} bit {bit}: {c:?}");
                assert_eq!((c[0].segment_base, c[0].position), (base, from as u64));
                assert_eq!(c[0].skipped_bytes, (to - from) as u64);
                assert_eq!(c[0].after_offset, Some(victim - 1));
                if rebuild {
                    assert_eq!(log.recovery().rebuilt_indexes, vec![base]);
                    assert_eq!(log.recovery().corruptions.len(), 1);
                }
                // Reading from the victim itself resumes after it.
                let from_victim = read_all(&log, StartAt::Offset(victim));
                assert_eq!(from_victim.first().map(Record::offset), Some(victim + 1));
            }
        }
    }
}

#[test]
fn a_failed_write_leaves_the_log_readable_and_appendable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1024)).unwrap();
    fill(&mut log, 10);
    let size = log.size_bytes();
    for written in [0, 1, 7, 30, 1000] {
        log.fail_next_write = Some(written);
        let err = log.append(1_010, b"env", &payload(10)).unwrap_err();
        assert!(matches!(err, crate::AppendError::Write { .. }), "{err}");
        assert_eq!(log.next_offset(), 10);
        assert_eq!(log.size_bytes(), size);
        let all = read_all(&log, StartAt::Earliest);
        assert_eq!(offsets(&all), (0..10).collect::<Vec<_>>());
    }
    log.fail_next_write = Some(5);
    let batch: Vec<(u64, &[u8], &[u8])> = vec![(1_010, b"env", b"a"), (1_011, b"env", b"b")];
    assert!(log.append_batch(batch).is_err());
    fill(&mut log, 5);
    check_contents(&read_all(&log, StartAt::Earliest));
    drop(log);
    let log = Log::open(dir.path(), never(1024)).unwrap();
    assert!(log.recovery().is_clean(), "{:?}", log.recovery());
    assert_eq!(
        offsets(&read_all(&log, StartAt::Earliest)),
        (0..15).collect::<Vec<_>>()
    );
}

#[test]
fn retention_deletes_whole_sealed_segments_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = never(512);
    let mut log = Log::open(dir.path(), options).unwrap();
    fill(&mut log, 100);
    let segments = log.segment_count();
    // No limits: nothing goes.
    assert_eq!(log.enforce_retention(u64::MAX).unwrap().segments, 0);
    drop(log);

    options.retention = Retention {
        max_records: Some(50),
        ..Retention::default()
    };
    let mut log = Log::open(dir.path(), options).unwrap();
    let reader = log.reader(StartAt::Earliest);
    let report = log.enforce_retention(0).unwrap();
    // At least the newest 50 are kept, and no whole segment more than needed.
    let oldest = &log.segments()[0];
    assert!(
        report.segments > 0 && log.record_count() >= 50,
        "{report:?}"
    );
    assert!(log.record_count() - (oldest.next_offset - oldest.base) < 50);
    assert_eq!(report.records, log.first_offset());
    assert_eq!(segment_files(dir.path()).len(), segments - report.segments);
    // A reader made before keeps reading the deleted segments.
    assert_eq!(reader.count(), 100);
    let first = log.first_offset();
    assert_eq!(read_all(&log, StartAt::Earliest)[0].offset(), first);
    assert_eq!(read_all(&log, StartAt::Offset(0))[0].offset(), first);
    drop(log);

    options.retention = Retention {
        max_bytes: Some(1200),
        ..Retention::default()
    };
    let mut log = Log::open(dir.path(), options).unwrap();
    log.enforce_retention(0).unwrap();
    assert!(log.size_bytes() >= 1200 || log.segment_count() == 1);
    assert!(log.segment_count() == 1 || log.size_bytes() - log.segments()[0].size < 1200);
    drop(log);

    // Age: every sealed segment's newest record (ts 1_000 + offset) is old; the active stays.
    options.retention = Retention {
        max_age: Some(Duration::from_nanos(10)),
        ..Retention::default()
    };
    let mut log = Log::open(dir.path(), options).unwrap();
    log.enforce_retention(1_050).unwrap();
    assert!(log.segment_count() > 1, "segments newer than 1040 stay");
    log.enforce_retention(u64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.next_offset(), 100);
    fill(&mut log, 1);
    drop(log);
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.next_offset(), 101);
    assert_eq!(
        log.first_offset(),
        read_all(&log, StartAt::Earliest)[0].offset()
    );
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_age: Some(Duration::from_nanos(100)),
        ..never(1 << 20)
    };
    let mut log = Log::open(dir.path(), options).unwrap();
    for ts in [0, 50, 99, 100, 150, 250] {
        log.append(ts, b"", b"x").unwrap();
    }
    assert_eq!(
        log.segments().iter().map(|s| s.base).collect::<Vec<_>>(),
        vec![0, 3, 5]
    );
}

#[test]
fn fsync_policies_move_the_durable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path().join("never"), never(1024)).unwrap();
    fill(&mut log, 3);
    assert_eq!(log.durable_offset(), 0);
    log.sync().unwrap();
    assert_eq!(log.durable_offset(), 3);

    let always = LogOptions {
        fsync: FsyncPolicy::Always,
        ..never(1024)
    };
    let mut log = Log::open(dir.path().join("always"), always).unwrap();
    fill(&mut log, 40);
    assert_eq!(log.durable_offset(), 40);

    let interval = LogOptions {
        fsync: FsyncPolicy::Interval(Duration::from_millis(10)),
        ..never(1024)
    };
    let mut log = Log::open(dir.path().join("interval"), interval).unwrap();
    fill(&mut log, 40);
    assert!(log.wait_durable(40, Duration::from_secs(10)));
    assert_eq!(log.durable_offset(), 40);
    drop(log);
    let log = Log::open(dir.path().join("interval"), interval).unwrap();
    assert_eq!(log.durable_offset(), 40);
}

#[test]
fn group_commit_syncs_in_the_background_and_tells_the_listener() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        fsync: FsyncPolicy::GroupCommit,
        ..never(1024)
    };
    let mut log = Log::open(dir.path(), options).unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    log.set_durable_listener(move |offset| sink.lock().unwrap().push(offset));
    for round in 1..=20u64 {
        fill(&mut log, 3);
        // Nobody calls sync: the syncer, woken by the append, makes it durable.
        assert!(log.wait_durable(round * 3, Duration::from_secs(10)));
    }
    // The listener runs after the waiters are woken: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while heard.lock().unwrap().last() != Some(&60) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.last(), Some(&60));
    assert!(
        heard.windows(2).all(|w| w[0] <= w[1]),
        "never told a smaller offset after a larger one: {heard:?}"
    );
    drop(log);
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.next_offset(), 60);
}

#[test]
fn the_fsync_policy_changes_on_an_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1024)).unwrap();
    fill(&mut log, 3);
    assert_eq!(log.durable_offset(), 0);
    log.set_fsync(FsyncPolicy::GroupCommit).unwrap();
    fill(&mut log, 2);
    assert!(
        log.wait_durable(5, Duration::from_secs(10)),
        "the new syncer covers what came before"
    );
    log.set_fsync(FsyncPolicy::Interval(Duration::from_millis(5)))
        .unwrap();
    fill(&mut log, 2);
    assert!(log.wait_durable(7, Duration::from_secs(10)));
    log.set_fsync(FsyncPolicy::Never).unwrap();
    fill(&mut log, 2);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(log.durable_offset(), 7, "no syncer any more");
    assert!(log
        .set_fsync(FsyncPolicy::Interval(Duration::ZERO))
        .is_err());
    log.set_fsync(FsyncPolicy::Always).unwrap();
    fill(&mut log, 1);
    assert_eq!(log.durable_offset(), 10);
}

#[test]
fn a_reader_catches_up_with_appends_and_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(512)).unwrap();
    fill(&mut log, 5);
    let mut reader = log.reader(StartAt::Latest);
    assert!(reader.next_record().unwrap().is_none());
    fill(&mut log, 50);
    assert!(
        reader.next_record().unwrap().is_none(),
        "a snapshot until caught up"
    );
    reader.catch_up(&log);
    let got: Vec<Record> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(offsets(&got), (5..55).collect::<Vec<_>>());
    fill(&mut log, 1);
    reader.catch_up(&log);
    assert_eq!(reader.next_record().unwrap().map(|r| r.offset()), Some(55));
}

#[test]
fn refuses_what_it_cannot_read_or_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), never(1024)).unwrap();
    let huge = vec![0u8; crate::MAX_RECORD_DATA + 1];
    assert!(matches!(
        log.append(0, b"", &huge),
        Err(crate::AppendError::TooLarge { .. })
    ));
    assert!(matches!(
        Log::open(dir.path(), never(1)),
        Err(crate::OpenError::Options(_))
    ));
    fill(&mut log, 1);
    let path = log.segments()[0].path.clone();
    drop(log);
    let mut bytes = fs::read(&path).unwrap();
    bytes[6] = 9;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Log::open(dir.path(), never(1024)),
        Err(crate::OpenError::UnsupportedVersion { version: 9, .. })
    ));
}
