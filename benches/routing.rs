//! Routing-core throughput: [`LocalBroker`] in-process, no socket, one thread.
//!
//! - Each iteration publishes [`BATCH`] messages, then drains every subscription with
//!   `try_recv`, so a subscriber's buffer never fills and `block` backpressure never waits:
//!   the futures resolve on their first poll, and `block_on` on a current-thread runtime only
//!   drives them.
//! - Figures are messages *published* per second (`Throughput::Elements(BATCH)`); a fanout to
//!   four subscribers delivers four times as many.
//! - `publish` is one call per message; `publish_batch` routes the whole batch in one call,
//!   taking each subscriber's lock once.
//!
//! Run with `cargo bench --bench routing`.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use mycelium_broker::{LocalBroker, LocalPublisher, LocalSubscription};
use mycelium_config::{Backpressure, Routing, TopicDefaults};
use tokio::runtime::Runtime;

/// Messages published per measured iteration.
const BATCH: usize = 1000;

/// Per-subscriber buffer (fanout) and backlog (queue): far above [`BATCH`], so nothing blocks.
const BUFFER_SIZE: usize = 100_000;

/// Queue credit per consumer, as `bench.queue` in `broker.toml`.
const PREFETCH: u32 = 8192;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// A broker with one topic, `t`, and `subscribers` subscriptions to it.
fn setup(
    routing: Routing,
    subscribers: usize,
) -> (LocalBroker, LocalPublisher, Vec<LocalSubscription>) {
    let broker = LocalBroker::new(TopicDefaults::default());
    let mut config = TopicDefaults::default().topic("t");
    config.routing = routing;
    config.buffer_size = BUFFER_SIZE;
    config.prefetch = PREFETCH;
    config.backpressure = Backpressure::Block;
    broker.create_topic(config).expect("topic created");
    let subs = (0..subscribers)
        .map(|_| broker.subscribe("t").expect("subscribed"))
        .collect();
    let publisher = broker.publisher("t").expect("publisher");
    (broker, publisher, subs)
}

/// Takes everything ready from every subscription; returns how many messages that was.
fn drain(subs: &mut [LocalSubscription]) -> usize {
    let mut n = 0;
    for sub in subs {
        while let Ok(message) = sub.try_recv() {
            black_box(message);
            n += 1;
        }
    }
    n
}

/// Publishes `BATCH` messages one call each, then drains; checks every copy arrived.
fn publish_each(
    rt: &Runtime,
    publisher: &LocalPublisher,
    subs: &mut [LocalSubscription],
    payload: &[u8],
    copies: usize,
) {
    rt.block_on(async {
        for _ in 0..BATCH {
            publisher
                .publish(black_box(payload))
                .await
                .expect("published");
        }
    });
    assert_eq!(drain(subs), BATCH * copies);
}

fn one_subscriber(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("routing/fanout_1sub");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, size) in [("64B", 64), ("1KiB", 1024)] {
        let payload = vec![0x5A; size];
        let (_broker, publisher, mut subs) = setup(Routing::Fanout, 1);
        group.bench_function(format!("publish/{name}"), |b| {
            b.iter(|| publish_each(&rt, &publisher, &mut subs, &payload, 1))
        });
        let batch: Vec<&[u8]> = vec![&payload[..]; BATCH];
        group.bench_function(format!("publish_batch/{name}"), |b| {
            b.iter(|| {
                rt.block_on(publisher.publish_batch(black_box(&batch)))
                    .expect("published");
                assert_eq!(drain(&mut subs), BATCH);
            })
        });
    }
    group.finish();
}

fn fanout_four(c: &mut Criterion) {
    let rt = runtime();
    let payload = vec![0x5A; 64];
    let (_broker, publisher, mut subs) = setup(Routing::Fanout, 4);
    let mut group = c.benchmark_group("routing/fanout_4sub");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("publish/64B", |b| {
        b.iter(|| publish_each(&rt, &publisher, &mut subs, &payload, 4))
    });
    group.finish();
}

fn queue_two(c: &mut Criterion) {
    let rt = runtime();
    let payload = vec![0x5A; 64];
    let (_broker, publisher, mut subs) = setup(Routing::Queue, 2);
    let mut group = c.benchmark_group("routing/queue_2consumers");
    group.throughput(Throughput::Elements(BATCH as u64));
    // Each consumer takes half of a batch, far below its credit; `try_recv` returns credit as
    // it goes, so no message ever waits in the backlog.
    group.bench_function("publish/64B", |b| {
        b.iter(|| publish_each(&rt, &publisher, &mut subs, &payload, 1))
    });
    group.finish();
}

fn no_subscribers(c: &mut Criterion) {
    let rt = runtime();
    let payload = vec![0x5A; 64];
    let (_broker, publisher, mut subs) = setup(Routing::Fanout, 0);
    let mut group = c.benchmark_group("routing/no_subscribers");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("publish/64B", |b| {
        b.iter(|| publish_each(&rt, &publisher, &mut subs, &payload, 0))
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`, which the workspace lints flag.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    for bench in [one_subscriber, fanout_four, queue_two, no_subscribers] {
        bench(&mut c);
    }
    c.final_summary();
}
