//! Deliveries over time: a subscriber counts what it received per [`BUCKET_NS`] of
//! `CLOCK_MONOTONIC` (comparable across processes), and the orchestrator adds the subscribers'
//! counts bucket by bucket into a throughput curve.
//!
//! - Counted per received batch, not per message: one clock reading the subscriber already
//!   takes.
//! - Buckets are absolute (`clock / BUCKET_NS`), so timelines of different processes line up
//!   without agreeing on a start.

use serde::{Deserialize, Serialize};

/// Width of one bucket: 100 ms.
pub(crate) const BUCKET_NS: u64 = 100_000_000;
/// A timeline stops growing past this many buckets (100 minutes): bounded memory whatever
/// the run's length; later deliveries count in the last bucket.
const MAX_BUCKETS: usize = 60_000;

/// Messages received per bucket, from the first bucket with any.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Timeline {
    /// The absolute index (`clock / BUCKET_NS`) of `counts[0]`.
    pub(crate) first: u64,
    pub(crate) counts: Vec<u64>,
}

impl Timeline {
    /// Counts `n` messages received at `now_ns`.
    pub(crate) fn add(&mut self, n: u64, now_ns: u64) {
        let bucket = now_ns / BUCKET_NS;
        if self.counts.is_empty() {
            self.first = bucket;
        }
        // A clock never runs back, but a count is no reason to panic if it did.
        let i = usize::try_from(bucket.saturating_sub(self.first))
            .unwrap_or(usize::MAX)
            .min(MAX_BUCKETS - 1);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
    }
}

/// The sum of `parts` as `(seconds since origin_ns, messages per second)`, one point per
/// bucket from the bucket of `origin_ns` to the last with a delivery (empty buckets count 0).
pub(crate) fn throughput(parts: &[Timeline], origin_ns: u64) -> Vec<(f64, f64)> {
    let origin = origin_ns / BUCKET_NS;
    let end = parts
        .iter()
        .filter(|t| !t.counts.is_empty())
        .map(|t| t.first + t.counts.len() as u64)
        .max()
        .unwrap_or(origin);
    let len = usize::try_from(end.saturating_sub(origin))
        .unwrap_or(0)
        .min(MAX_BUCKETS);
    let mut sum = vec![0u64; len];
    for t in parts {
        for (i, &c) in t.counts.iter().enumerate() {
            let at = (t.first + i as u64).saturating_sub(origin);
            if let Some(slot) = usize::try_from(at).ok().and_then(|at| sum.get_mut(at)) {
                *slot += c;
            }
        }
    }
    let per_second = 1e9 / BUCKET_NS as f64;
    sum.iter()
        .enumerate()
        .map(|(i, &c)| (i as f64 * BUCKET_NS as f64 / 1e9, c as f64 * per_second))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_add_up_bucket_by_bucket_from_the_origin() {
        let mut a = Timeline::default();
        a.add(5, 10 * BUCKET_NS + 1);
        a.add(5, 12 * BUCKET_NS);
        let mut b = Timeline::default();
        b.add(3, 11 * BUCKET_NS);
        let curve = throughput(&[a, b, Timeline::default()], 9 * BUCKET_NS + 7);
        let rates: Vec<f64> = curve.iter().map(|&(_, r)| r).collect();
        assert_eq!(rates, vec![0.0, 50.0, 30.0, 50.0]);
        assert_eq!(curve[2].0, 0.2);
    }

    #[test]
    fn no_deliveries_give_an_empty_curve() {
        assert!(throughput(&[Timeline::default()], 5 * BUCKET_NS).is_empty());
    }
}
