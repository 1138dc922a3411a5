//! A lock-free histogram: one atomic per bucket, encoded through prometheus-client's encoder.
//!
//! prometheus-client's own `Histogram` takes a lock on every observation; the delivery and
//! produce paths observe once per call, so this one keeps to atomics (the brief's hot-path
//! rule) and only borrows the crate's encoder at scrape time.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};

/// The bucket bounds of a histogram, in seconds.
pub trait Buckets {
    /// Upper bounds, ascending; `+Inf` is added.
    const BOUNDS: &'static [f64];
}

/// Produce latency: a record's send to Kafka's acknowledgement. Bounds from 1 ms (a local
/// broker acknowledging an idle batch) to 10 s (near the default produce timeout); the
/// linger (default 5 ms) sits in the low buckets, so they are dense there.
#[derive(Debug)]
pub struct ProduceBuckets;

impl Buckets for ProduceBuckets {
    const BOUNDS: &'static [f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
}

/// Acceptance to delivery: from 5 ms (a call delivered at once on a quiet pipe) to 10 min
/// (calls that waited through retries or a backlog; retry tiers hold calls for minutes).
/// Longer waits land in `+Inf`, which still counts them.
#[derive(Debug)]
pub struct DeliveryBuckets;

impl Buckets for DeliveryBuckets {
    const BOUNDS: &'static [f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ];
}

/// A histogram of durations with the bounds of `B`.
#[derive(Debug)]
pub struct Histogram<B: Buckets> {
    /// One counter per bound, plus `+Inf` last (not cumulative: the encoder adds them up).
    counts: Box<[AtomicU64]>,
    /// Sum of observations in microseconds: an integer sum needs no compare-and-swap loop.
    sum_micros: AtomicU64,
    bounds: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        Self {
            counts: (0..=B::BOUNDS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            bounds: PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    /// Counts one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = B::BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(B::BOUNDS.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram through prometheus-client's encoder. The count is the buckets'
    /// sum, so `_count` and the `+Inf` bucket always agree, even mid-observation.
    pub fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = B::BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        // Precision loss only past 2^53 µs (285 years of summed latency).
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::<ProduceBuckets>::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts[0], 2, "500 µs and 1 ms are both <= 1 ms");
        assert_eq!(counts[3], 1, "7 ms is in (5 ms, 10 ms]");
        assert_eq!(counts[ProduceBuckets::BOUNDS.len()], 1, "60 s is +Inf only");
        assert_eq!(h.count(), 4);
        assert_eq!(
            h.sum_micros.load(Ordering::Relaxed),
            500 + 1000 + 7000 + 60_000_000
        );
    }

    #[test]
    fn bounds_ascend() {
        for bounds in [ProduceBuckets::BOUNDS, DeliveryBuckets::BOUNDS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(DeliveryBuckets::BOUNDS.last(), Some(&600.0));
    }
}
