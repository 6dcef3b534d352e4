//! A fixed-bucket histogram of durations, lock-free (one atomic add per bucket hit), for
//! Prometheus exposition: the keepalive round trip.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, in milliseconds (Prometheus `le`, cumulative when rendered).
pub const BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// Counts per bucket (the last one is `+Inf`), their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_ms: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy for rendering: cumulative counts per bound, then `+Inf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<(u64, u64)>,
    pub count: u64,
    pub sum_ms: u64,
}

impl Histogram {
    pub fn record_ms(&self, value_ms: u64) {
        let index = BOUNDS_MS
            .iter()
            .position(|bound| value_ms <= *bound)
            .unwrap_or(BOUNDS_MS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(value_ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = BOUNDS_MS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, bucket)| {
                running += bucket.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        let count = running + self.buckets[BOUNDS_MS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count,
            sum_ms: self.sum_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::default();
        for value in [1, 5, 6, 400, 20_000] {
            histogram.record_ms(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.sum_ms, 20_412);
        assert_eq!(snapshot.cumulative[0], (5, 2));
        assert_eq!(snapshot.cumulative[1], (10, 3));
        assert_eq!(snapshot.cumulative[6], (500, 4));
        assert_eq!(snapshot.cumulative.last(), Some(&(10_000, 4)));
    }
}
