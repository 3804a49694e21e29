//! A log-linear latency histogram: exact below 64 ns, then 64 buckets per power of two
//! (at most 1.6 % error), small enough to ship between processes and merge.

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

/// Counts of nanosecond values in log-linear buckets.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// The non-empty buckets of a histogram, as sent over a pipe.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Sparse {
    /// `(bucket, count)` pairs.
    pub buckets: Vec<(u32, u64)>,
    /// The largest value recorded.
    pub max: u64,
}

fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros();
    let shift = exp - SUB_BITS;
    let mantissa = value >> shift;
    (SUB + u64::from(shift) * SUB + (mantissa - SUB)) as usize
}

/// The smallest value and the width of bucket `index`.
fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, 1);
    }
    let shift = (index - SUB) / SUB;
    let mantissa = SUB + (index - SUB) % SUB;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    /// Counts one value.
    pub(crate) fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// The value below which a fraction `q` of the values fall (bucket midpoint), 0 if empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket_range(index);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Sparse) {
        for &(index, count) in &other.buckets {
            if let Some(slot) = self.counts.get_mut(index as usize) {
                *slot += count;
                self.total += count;
            }
        }
        self.max = self.max.max(other.max);
    }

    /// The cumulative distribution: per non-empty bucket, its top value (capped by the
    /// largest recorded) and the fraction of values at or below it.
    pub(crate) fn cdf(&self) -> Vec<(u64, f64)> {
        let mut seen = 0;
        let mut out = Vec::new();
        for (index, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            seen += count;
            let (low, width) = bucket_range(index);
            let top = low.saturating_add(width - 1).min(self.max);
            out.push((top, seen as f64 / self.total as f64));
        }
        out
    }

    /// The non-empty buckets.
    pub(crate) fn to_sparse(&self) -> Sparse {
        Sparse {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i as u32, c))
                .collect(),
            max: self.max,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in [
            0,
            1,
            63,
            64,
            65,
            127,
            128,
            1000,
            1 << 20,
            u64::MAX / 2,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "value {v} bucket {b}");
            let (low, width) = bucket_range(b);
            assert!(
                low <= v && v - low < width,
                "value {v} in [{low}, +{width})"
            );
            last = b;
        }
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000f64),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn the_cdf_rises_to_one_at_the_largest_value() {
        let mut h = Histogram::new();
        for v in [5, 5, 1000, 70_000] {
            h.record(v);
        }
        let cdf = h.cdf();
        assert_eq!(cdf.first(), Some(&(5, 0.5)));
        assert_eq!(cdf.last(), Some(&(70_000, 1.0)));
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert!(Histogram::new().cdf().is_empty());
    }

    #[test]
    fn merging_sparse_copies_adds_counts() {
        let mut a = Histogram::new();
        a.record(10);
        let mut b = Histogram::new();
        b.record(5000);
        b.record(7);
        a.merge(&b.to_sparse());
        assert_eq!(a.total, 3);
        assert_eq!(a.quantile(1.0), 5000);
        assert_eq!(a.quantile(0.0), 7);
    }
}
