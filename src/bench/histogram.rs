//! A log-linear latency histogram: ~1.6 % precision from 1 ns to hours, fixed memory, mergeable
//! across processes (the bench workers send their bucket counts to the orchestrator).

/// Sub-buckets per power of two: 64 gives a worst-case relative error of 1/64.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^42 ns (~73 minutes).
const BUCKETS: usize = ((42 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let magnitude = 63 - value.leading_zeros(); // >= SUB_BITS
    let shift = magnitude - SUB_BITS;
    let sub = (value >> shift) - SUB; // 0..SUB
    let i = ((shift as u64 + 1) * SUB + sub) as usize;
    i.min(BUCKETS - 1)
}

/// The lowest value of bucket `i`.
fn value_at(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i % SUB;
    (SUB + sub) << shift
}

impl Histogram {
    pub fn record(&mut self, value_ns: u64) {
        self.counts[index(value_ns)] += 1;
        self.total += 1;
    }

    /// Values recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The value at quantile `q` (0.0..=1.0), in ns; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_at(i);
            }
        }
        value_at(BUCKETS - 1)
    }

    /// Sparse `[[bucket, count], …]` for JSON transport.
    pub fn to_sparse(&self) -> Vec<[u64; 2]> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| [i as u64, c])
            .collect()
    }

    pub fn from_sparse(pairs: &[[u64; 2]]) -> Histogram {
        let mut h = Histogram::default();
        for &[i, c] in pairs {
            if let Some(slot) = h.counts.get_mut(i as usize) {
                *slot += c;
                h.total += c;
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, exact) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.02, "q{q}: {got} vs {exact}");
        }
    }

    #[test]
    fn sparse_round_trip_and_merge_keep_counts() {
        let mut a = Histogram::default();
        a.record(5);
        a.record(1_000_000);
        let b = Histogram::from_sparse(&a.to_sparse());
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.total(), 4);
        assert_eq!(m.quantile(1.0), a.quantile(1.0));
    }

    #[test]
    fn bucket_bounds_are_monotonic() {
        let mut last = 0;
        for i in 1..BUCKETS {
            assert!(value_at(i) > last, "bucket {i}");
            last = value_at(i);
            assert_eq!(index(value_at(i)), i);
        }
    }
}
