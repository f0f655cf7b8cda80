//! The shared-memory ring's own cost, in one thread: no second core, no broker, no syscall.
//!
//! - Each iteration pushes [`BATCH`] frames into a 4 MiB in-memory ring (the `[shm]` default
//!   size) and reads them back, so the figures are the producer's plus the consumer's work per
//!   message, with every cache line local. Across processes (`mycelium bench --transport
//!   shm`) the cache-line transfers between cores come on top.
//! - `publish_each` makes every frame visible on its own (one Release store and the wake
//!   check per message, as `ShmPublisher::publish` does); `publish_batch` makes the batch
//!   visible with one store (`ShmPublisher::publish_batch`). The consumer takes the batch with
//!   one `try_recv_batch` (one Acquire load, one Release store, a copy per frame).
//! - `drop_newest/publish_batch` is `publish_batch` on a ring marked `FULL_DROP`, whose
//!   consumer checks every frame's sequence number for the gaps drops leave (nothing is
//!   dropped here: the cost of looking).
//! - Figures are messages per second (`Throughput::Elements`) and bytes per second.
//!
//! Run with `cargo bench --bench shm_ring`.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use mycelium_transport::shm::{set_drop_when_full, RingConsumer, RingProducer, RingRegion};

/// Frames per measured iteration.
const BATCH: usize = 1024;

/// Data bytes of the ring: the `[shm] ring_bytes` default.
const RING_BYTES: u64 = 4 << 20;

/// A ring and its consumer; `dropping`: marked `FULL_DROP`, so the consumer reports drops.
fn ring(dropping: bool) -> (RingProducer, RingConsumer) {
    let (region, producer) = RingRegion::new_in_memory(RING_BYTES, 4).expect("ring");
    if dropping {
        set_drop_when_full(&region);
    }
    let consumer = RingConsumer::join(&region).expect("consumer");
    assert_eq!(consumer.reports_drops(), dropping);
    (producer, consumer)
}

fn drain(consumer: &mut RingConsumer) -> usize {
    let mut bytes = 0;
    let taken = consumer
        .try_recv_batch(BATCH, |payload| bytes += black_box(payload).len())
        .expect("an intact ring");
    assert_eq!(taken, BATCH);
    bytes
}

/// Pushes a batch, publishing every frame (`each`) or the batch once, then reads it back.
fn round(
    producer: &mut RingProducer,
    consumer: &mut RingConsumer,
    payload: &[u8],
    each: bool,
) -> usize {
    for _ in 0..BATCH {
        producer.try_push(payload).expect("room");
        if each {
            producer.publish_and_wake().expect("wake check");
        }
    }
    producer.publish_and_wake().expect("wake check");
    drain(consumer)
}

fn bench_size(c: &mut Criterion, size: usize) {
    let payload = vec![0x5A; size];
    let mut group = c.benchmark_group(format!("shm_ring/{size}B"));
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, each, dropping) in [
        ("publish_each", true, false),
        ("publish_batch", false, false),
        ("drop_newest/publish_batch", false, true),
    ] {
        let (mut producer, mut consumer) = ring(dropping);
        group.bench_function(name, |b| {
            b.iter(|| round(&mut producer, &mut consumer, &payload, each))
        });
    }
    group.finish();
    let mut group = c.benchmark_group(format!("shm_ring/{size}B/bytes"));
    group.throughput(Throughput::Bytes((BATCH * size) as u64));
    let (mut producer, mut consumer) = ring(false);
    group.bench_function("publish_batch", |b| {
        b.iter(|| round(&mut producer, &mut consumer, &payload, false))
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`, which the workspace lints flag.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    for size in [64, 1024] {
        bench_size(&mut c, size);
    }
    c.final_summary();
}
