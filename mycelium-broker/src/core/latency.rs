//! Publish-to-deliver latency: log-linear histograms the routing paths record into, and the
//! plain snapshots the metrics report.
//!
//! - One sample per routed batch, never per message: from when the broker read the batch (off
//!   a socket, out of a publisher's ring) to when the topic had handed it to every
//!   subscriber's outbox, sink or relay ring (a `block` wait included).
//! - Buckets are log-linear over nanoseconds: [`SUB_BUCKETS`] per power of two (each at most
//!   12.5 % wide, so a quantile read from them is within that of the truth), values below
//!   [`SUB_BUCKETS`] ns exact, and everything from [`MAX_TRACKED`] on in the last bucket. Our
//!   own rather than the `hdrhistogram` crate: recording is a leading-zero count, a shift
//!   and one relaxed atomic add on a fixed array, so shards need no lock and reading merges
//!   them without stopping writers (`hdrhistogram` records through `&mut`, so each shard would
//!   need a mutex).
//! - [`LatencyRecorder`]: the broker-wide histogram, sharded by thread (threads pick a shard
//!   once) so that routing threads never write the same cache lines, plus the switch
//!   (`metrics.enabled`, live on reload). A topic also keeps a histogram of its own (made at
//!   its first sample), unsharded: its writers already share the topic's counters.
//! - Reads ([`LatencySnapshot`]) merge the shards with relaxed loads: a sample being recorded
//!   may be seen in its bucket and not yet in `sum`, never counted twice.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Buckets per power of two, as a power of two: 8 sub-buckets.
const SUB_BITS: u32 = 3;
/// Buckets per power of two.
pub const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// Powers of two tracked: samples from `2^POWERS` ns (about 17 s) on share the last bucket.
const POWERS: u32 = 34;
/// The smallest latency the last bucket holds: anything this slow or slower lands there.
pub const MAX_TRACKED: Duration = Duration::from_nanos(1 << POWERS);
/// Buckets in a histogram: those of the powers tracked, then the one past them.
pub const BUCKETS: usize = (((POWERS - SUB_BITS + 1) as usize) << SUB_BITS) + 1;
/// Shards of the broker-wide histogram: at least the routing threads a 2-8 core host runs.
const SHARDS: usize = 8;

/// The bucket of a latency of `nanos`.
#[inline]
fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS {
        return nanos as usize;
    }
    let power = 63 - nanos.leading_zeros();
    if power >= POWERS {
        return BUCKETS - 1;
    }
    let sub = (nanos >> (power - SUB_BITS)) & (SUB_BUCKETS - 1);
    (((power - SUB_BITS + 1) as usize) << SUB_BITS) | sub as usize
}

/// The smallest latency, in nanoseconds, past bucket `index` (its exclusive upper bound).
fn bucket_end(index: usize) -> u64 {
    if (index as u64) < SUB_BUCKETS {
        return index as u64 + 1;
    }
    let power = (index >> SUB_BITS) as u32 + SUB_BITS - 1;
    let sub = index as u64 & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + sub + 1) << (power - SUB_BITS)
}

/// One histogram: a count per bucket and the sum of the samples.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one sample.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Adds this histogram's counts into `counts` and returns its sum.
    fn add_into(&self, counts: &mut [u64; BUCKETS]) -> u64 {
        for (total, bucket) in counts.iter_mut().zip(&self.buckets) {
            *total = total.saturating_add(bucket.load(Ordering::Relaxed));
        }
        self.sum_nanos.load(Ordering::Relaxed)
    }

    /// The histogram now.
    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let mut counts = [0u64; BUCKETS];
        let sum = self.add_into(&mut counts);
        LatencySnapshot::from_counts(&counts, sum)
    }
}

/// A shard on a cache line of its own (the array is large; the padding keeps a neighbour's
/// `sum_nanos` off this one's first buckets).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Histogram);

/// The broker-wide latency histogram, sharded by thread, and whether to record at all.
#[derive(Debug)]
pub struct LatencyRecorder {
    /// `metrics.enabled` as the config in force says; read once per batch.
    enabled: AtomicBool,
    shards: Box<[Shard]>,
}

/// Off: the registry turns it on when the config says so.
impl Default for LatencyRecorder {
    fn default() -> LatencyRecorder {
        LatencyRecorder {
            enabled: AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

/// Hands each thread its shard, round-robin in the order threads first record.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl LatencyRecorder {
    /// Whether samples are recorded now: callers read the clock only when it says so.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns recording on or off (a reload of `metrics.enabled`); what was recorded stays.
    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Records one sample in this thread's shard.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        let shard = SHARD.with(|shard| *shard);
        self.shards[shard].0.record(latency);
    }

    /// Every shard merged.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut counts = [0u64; BUCKETS];
        let mut sum = 0u64;
        for shard in self.shards.iter() {
            sum = sum.saturating_add(shard.0.add_into(&mut counts));
        }
        LatencySnapshot::from_counts(&counts, sum)
    }
}

/// One non-empty bucket of a [`LatencySnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBucket {
    /// Samples in this bucket are below this (and at least the previous bucket's bound).
    /// The last bucket's bound is `Duration::MAX`: it holds everything from
    /// [`MAX_TRACKED`] on.
    pub upper_bound: Duration,
    /// Samples in this bucket (not cumulative).
    pub count: u64,
}

/// A latency histogram at one moment: its non-empty buckets, count, sum and quantiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Samples recorded (one per routed batch).
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
    /// The non-empty buckets, by increasing bound.
    pub buckets: Vec<LatencyBucket>,
}

impl LatencySnapshot {
    fn from_counts(counts: &[u64; BUCKETS], sum_nanos: u64) -> LatencySnapshot {
        let buckets: Vec<LatencyBucket> = counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| LatencyBucket {
                upper_bound: if index == BUCKETS - 1 {
                    Duration::MAX
                } else {
                    Duration::from_nanos(bucket_end(index))
                },
                count: *count,
            })
            .collect();
        LatencySnapshot {
            count: buckets.iter().fold(0u64, |n, b| n.saturating_add(b.count)),
            sum: Duration::from_nanos(sum_nanos),
            buckets,
        }
    }

    /// The latency below which a `q` (0.0 to 1.0) share of the samples fell, as the upper
    /// bound of the bucket holding that rank (so at most 12.5 % above the truth); `None`
    /// without samples. The last bucket answers [`MAX_TRACKED`].
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the sample at q, from 1.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for bucket in &self.buckets {
            seen = seen.saturating_add(bucket.count);
            if seen >= rank {
                return Some(bucket.upper_bound.min(MAX_TRACKED));
            }
        }
        self.buckets.last().map(|b| b.upper_bound.min(MAX_TRACKED))
    }

    /// Samples below `bound` for sure: those of the buckets whose upper bound is at most
    /// `bound` (exact when `bound` is a bucket boundary). What a Prometheus histogram's
    /// cumulative `le` bucket of fixed boundaries needs.
    pub fn count_below(&self, bound: Duration) -> u64 {
        self.buckets
            .iter()
            .take_while(|b| b.upper_bound <= bound)
            .fold(0u64, |n, b| n.saturating_add(b.count))
    }

    /// The median, 99th and 99.9th percentiles, with the count.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
        }
    }
}

/// A histogram's count and usual quantiles (see [`LatencySnapshot::quantile`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Samples recorded (one per routed batch).
    pub count: u64,
    /// The median; `None` without samples.
    pub p50: Option<Duration>,
    /// The 99th percentile.
    pub p99: Option<Duration>,
    /// The 99.9th percentile.
    pub p999: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        let mut values: Vec<u64> = (0..2000).collect();
        values.extend((0..POWERS).flat_map(|p| {
            let v = 1u64 << p;
            [v - 1, v, v + 1, v + v / 3]
        }));
        for v in values {
            let index = bucket_of(v);
            assert!(index < BUCKETS, "{v}");
            if index < BUCKETS - 1 {
                assert!(v < bucket_end(index), "{v} below the end of {index}");
            }
            let start = if index == 0 { 0 } else { bucket_end(index - 1) };
            assert!(v >= start, "{v} at or past the start of {index}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << POWERS), BUCKETS - 1);
        assert_eq!(bucket_end(BUCKETS - 2), 1 << POWERS);
        assert_eq!(bucket_of((1 << POWERS) - 1), BUCKETS - 2);
    }

    #[test]
    fn buckets_are_at_most_an_eighth_wide() {
        for index in SUB_BUCKETS as usize..BUCKETS - 1 {
            let (start, end) = (bucket_end(index - 1), bucket_end(index));
            assert!(end > start);
            assert!((end - start) * SUB_BUCKETS <= start, "bucket {index}");
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_samples() {
        let h = Histogram::default();
        // 900 samples at 10 us, 90 at 1 ms, 10 at 50 ms.
        for _ in 0..900 {
            h.record(Duration::from_micros(10));
        }
        for _ in 0..90 {
            h.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(50));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        let near = |d: Option<Duration>, want: Duration| {
            let d = d.expect("samples");
            assert!(
                d >= want && d.as_nanos() * 8 <= want.as_nanos() * 9,
                "{d:?} vs {want:?}"
            );
        };
        near(s.quantile(0.5), Duration::from_micros(10));
        near(s.quantile(0.99), Duration::from_millis(1));
        near(s.quantile(0.999), Duration::from_millis(50));
        assert_eq!(
            s.sum,
            Duration::from_micros(900 * 10 + 90 * 1000 + 10 * 50_000)
        );
        assert_eq!(s.count_below(Duration::from_micros(100)), 900);
        assert_eq!(s.buckets.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert_eq!(LatencySnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn the_recorder_merges_its_threads_shards_and_records_only_what_it_is_given() {
        let r = Arc::new(LatencyRecorder::default());
        r.set_enabled(true);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        r.record(Duration::from_micros(5));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("recording thread");
        }
        let s = r.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.buckets.len(), 1);
        r.set_enabled(false);
        assert!(!r.enabled());
    }

    use std::sync::Arc;
}
