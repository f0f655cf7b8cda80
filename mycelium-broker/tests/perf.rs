//! The routing core's own performance, in process: printed, never asserted.
//!
//! - Every test is `#[ignore]`: they need a release build and a quiet machine. Run them with
//!   `cargo test --package mycelium-broker --release -- --ignored --nocapture`.
//! - Figures are printed; what is asserted is correctness (every message arrived, in order).
//! - Measurements across real processes (`mycelium bench`, the soak) live in the workspace's
//!   `tests/perf.rs`: `cargo test --release --test perf -- --ignored --nocapture`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use mycelium_broker::{LocalBroker, LocalPublisher, LocalSubscription};
use mycelium_config::{Backpressure, Routing, TopicDefaults};

/// How long the drainer may take to report a phase before the test fails (far above the
/// phase itself, so only a hang trips it).
const DEADLINE: Duration = Duration::from_secs(30);

/// Payload of the in-process measurement: 1 KiB, the size of the W2 workload.
const IN_PROCESS_SIZE: usize = 1024;

/// How long each in-process phase publishes.
const PHASE: Duration = Duration::from_millis(1500);

/// Messages per `publish_batch` call in the batched phase.
const PUBLISH_BATCH: usize = 64;

/// Publish-call durations in nanoseconds, exact below 2048 ns and within 1/64 above.
struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

impl LatencyHistogram {
    /// Values below this get a bucket each.
    const LINEAR: u64 = 2048;
    /// Sub-buckets per power of two above [`Self::LINEAR`].
    const SUB_BITS: u32 = 6;

    fn new() -> LatencyHistogram {
        // 2048 linear buckets, then 64 per power of two from 2^11 to 2^63.
        let len = Self::LINEAR as usize + (64 - 11) * (1 << Self::SUB_BITS);
        LatencyHistogram {
            buckets: vec![0; len],
            count: 0,
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns < Self::LINEAR {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros(); // >= 11
        let sub = (ns >> (exp - Self::SUB_BITS)) & ((1 << Self::SUB_BITS) - 1);
        Self::LINEAR as usize + ((exp - 11) as usize) * (1 << Self::SUB_BITS) + sub as usize
    }

    /// The smallest value that falls in `bucket`.
    fn lower_bound(bucket: usize) -> u64 {
        if bucket < Self::LINEAR as usize {
            return bucket as u64;
        }
        let rest = bucket - Self::LINEAR as usize;
        let exp = (rest >> Self::SUB_BITS) as u32 + 11;
        let sub = (rest & ((1 << Self::SUB_BITS) - 1)) as u64;
        (1u64 << exp) + (sub << (exp - Self::SUB_BITS))
    }

    fn record(&mut self, ns: u64) {
        self.buckets[Self::bucket(ns)] += 1;
        self.count += 1;
    }

    /// The value at quantile `q` (0..=1), in ns.
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::lower_bound(i);
            }
        }
        0
    }
}

/// What the draining thread saw in one phase.
struct Drained {
    received: u64,
    out_of_order: u64,
    last_at: Instant,
}

/// Drains `sub` until an empty payload (the end-of-phase marker), checking that the sequence
/// numbers in the first 8 bytes count up from 0 without a gap.
async fn drain_phase(sub: &mut LocalSubscription) -> Drained {
    let mut expected = 0u64;
    let mut out_of_order = 0;
    let mut last_at = Instant::now();
    loop {
        let message = sub.recv().await.expect("the subscription stays open");
        if message.is_empty() {
            return Drained {
                received: expected,
                out_of_order,
                last_at,
            };
        }
        last_at = Instant::now();
        let seq = u64::from_le_bytes(message[..8].try_into().expect("8 bytes"));
        if seq != expected {
            out_of_order += 1;
        }
        assert_eq!(message.len(), IN_PROCESS_SIZE);
        expected += 1;
    }
}

/// How a phase publishes.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// One `publish` call per message, untimed.
    Each,
    /// One `publish` call per message, each timed.
    EachTimed,
    /// `publish_batch` of [`PUBLISH_BATCH`].
    Batched,
}

/// Publishes 1 KiB messages numbered from 0 for [`PHASE`], then the end marker. Returns the
/// count, the start time and (in [`Mode::EachTimed`]) the per-call latencies.
async fn publish_phase(publisher: &LocalPublisher, mode: Mode) -> (u64, Instant, LatencyHistogram) {
    let mut histogram = LatencyHistogram::new();
    let mut payloads = vec![vec![0xA5u8; IN_PROCESS_SIZE]; PUBLISH_BATCH];
    let mut seq = 0u64;
    let start = Instant::now();
    let deadline = start + PHASE;
    // Checking the clock every 256 messages keeps it off the untimed paths.
    while seq % 256 != 0 || Instant::now() < deadline {
        match mode {
            Mode::Each => {
                payloads[0][..8].copy_from_slice(&seq.to_le_bytes());
                publisher.publish(&payloads[0]).await.expect("published");
                seq += 1;
            }
            Mode::EachTimed => {
                payloads[0][..8].copy_from_slice(&seq.to_le_bytes());
                let t = Instant::now();
                publisher.publish(&payloads[0]).await.expect("published");
                histogram.record(t.elapsed().as_nanos() as u64);
                seq += 1;
            }
            Mode::Batched => {
                for p in payloads.iter_mut() {
                    p[..8].copy_from_slice(&seq.to_le_bytes());
                    seq += 1;
                }
                let batch: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                publisher.publish_batch(&batch).await.expect("published");
            }
        }
    }
    publisher.publish(&[]).await.expect("end marker published");
    (seq, start, histogram)
}

#[test]
#[ignore = "performance: run with --release -- --ignored --nocapture"]
fn in_process_routing_throughput_and_publish_latency() {
    let broker = LocalBroker::new(TopicDefaults::default());
    let mut config = TopicDefaults::default().topic("perf");
    config.routing = Routing::Fanout;
    config.buffer_size = 100_000;
    config.max_message_size = 65536;
    config.backpressure = Backpressure::Block;
    broker.create_topic(config).expect("topic created");
    let mut sub = broker.subscribe("perf").expect("subscribed");
    let publisher = broker.publisher("perf").expect("publisher");
    let phases = [Mode::Each, Mode::EachTimed, Mode::Batched];

    // The subscriber drains on its own thread (the second vCPU), the publisher runs here.
    let (report, results) = mpsc::channel();
    let drainer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for _ in phases {
                report
                    .send(drain_phase(&mut sub).await)
                    .expect("the test is waiting");
            }
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    println!("in-process routing core, 1 publisher thread -> 1 subscriber thread, {IN_PROCESS_SIZE} B, fanout, block");
    for mode in phases {
        let (sent, start, histogram) = rt.block_on(publish_phase(&publisher, mode));
        let drained = results
            .recv_timeout(DEADLINE)
            .expect("the drainer finished the phase");
        assert_eq!(drained.received, sent, "every message arrives");
        assert_eq!(drained.out_of_order, 0, "messages arrive in publish order");
        let seconds = drained.last_at.duration_since(start).as_secs_f64();
        let rate = sent as f64 / seconds;
        let gbs = rate * IN_PROCESS_SIZE as f64 / 1e9;
        let label = match mode {
            Mode::Each => "publish, untimed".to_owned(),
            Mode::EachTimed => "publish, each call timed".to_owned(),
            Mode::Batched => format!("publish_batch x{PUBLISH_BATCH}"),
        };
        println!("  {label:<26} {sent:>10} msgs in {seconds:.2} s: {:.2} M msg/s delivered ({gbs:.2} GB/s)", rate / 1e6);
        if mode == Mode::EachTimed {
            let us = |q| histogram.quantile(q) as f64 / 1000.0;
            println!(
                "  publish call latency: p50 {:.3} us, p99 {:.3} us, p99.9 {:.3} us, max ~{:.0} us ({} calls)",
                us(0.5),
                us(0.99),
                us(0.999),
                us(1.0),
                histogram.count
            );
        }
    }
    drainer.join().expect("the drainer thread");
}
