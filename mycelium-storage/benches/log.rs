//! Append and replay throughput of the storage log.
//!
//! - `append/<size>/<policy>`: one record per `append` call, 64 B and 1 KiB payloads, under
//!   `FsyncPolicy::Never` and `Interval(10 ms)`. Retention trims the log every 16 384 appends so
//!   that a long run stays within a few segments of disk.
//! - `replay/1KiB`: reading 50 000 records of 1 KiB from the start of a log.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use mycelium_storage::{FsyncPolicy, Log, LogOptions, Retention, StartAt};

fn options(fsync: FsyncPolicy) -> LogOptions {
    LogOptions {
        segment_bytes: 16 * 1024 * 1024,
        fsync,
        retention: Retention {
            max_bytes: Some(48 * 1024 * 1024),
            ..Retention::default()
        },
        ..LogOptions::default()
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(4));
    for size in [64usize, 1024] {
        for (name, fsync) in [
            ("never", FsyncPolicy::Never),
            (
                "interval_10ms",
                FsyncPolicy::Interval(Duration::from_millis(10)),
            ),
        ] {
            let dir = tempfile::tempdir().expect("temporary directory");
            let mut log = Log::open(dir.path(), options(fsync)).expect("opening the log");
            let payload = vec![0x5a; size];
            let envelope = [0u8; 16];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(format!("{size}B"), name), |b| {
                let mut ts = 0u64;
                b.iter(|| {
                    ts += 1;
                    let offset = log.append(ts, &envelope, &payload).expect("append");
                    if offset % 16_384 == 0 {
                        log.enforce_retention(ts).expect("retention");
                    }
                    offset
                });
            });
        }
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut log = Log::open(dir.path(), options(FsyncPolicy::Never)).expect("opening the log");
    let payload = vec![0x5a; 1024];
    const RECORDS: u64 = 50_000;
    for ts in 0..RECORDS {
        log.append(ts, &[0u8; 16], &payload).expect("append");
    }
    let mut group = c.benchmark_group("replay");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    group.throughput(Throughput::Bytes(RECORDS * 1024));
    group.bench_function("1KiB", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for r in log.reader(StartAt::Earliest) {
                n += r.expect("read").payload().len() as u64;
            }
            assert_eq!(n, RECORDS * 1024);
            n
        });
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`, which the workspace lints flag.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    for bench in [append, replay] {
        bench(&mut c);
    }
    c.final_summary();
}
