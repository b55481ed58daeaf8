//! The two metrics every message touches, the handler-duration histogram
//! and the in-flight gauge, kept in per-thread stripes and summed when
//! `/metrics` is scraped, then encoded by `prometheus-client` like its own
//! types.
//!
//! `prometheus-client`'s `Histogram` takes a mutex for every observation and
//! its `Gauge` is one atomic: with a plugin's lanes on every shard thread,
//! each message made the threads take turns on the same lock and the same
//! cache line. Here a thread writes only its own stripe (a cache line or two
//! of relaxed atomics, no lock), and a scrape adds the stripes up. A scrape
//! that races with observations may count an observation's bucket before its
//! sum: the error is that one observation, gone by the next scrape. This is
//! written here rather than taken from a crate because the one crate the
//! host encodes with has no such type; the encoding stays that crate's.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Stripes per metric: enough for the shard threads and the main runtime's
/// workers of a small machine; more threads share stripes, which stays
/// correct (the adds are atomic) and only costs contention.
const STRIPES: usize = 8;

/// The stripe the current thread writes.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// The index of the first bucket whose upper bound (in nanoseconds) holds
/// `nanos`; `bounds.len()` for the `+Inf` bucket.
fn bucket_of(bounds: &[u64], nanos: u64) -> usize {
    bounds.partition_point(|&bound| bound < nanos)
}

/// A histogram of durations with fixed buckets, in seconds when encoded.
#[derive(Clone, Debug)]
pub struct DurationHistogram {
    inner: Arc<HistogramCells>,
}

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds in seconds (as encoded) and in nanoseconds (as compared).
    bounds: Vec<f64>,
    bounds_nanos: Vec<u64>,
    stripes: Vec<CachePadded<HistogramStripe>>,
}

#[derive(Debug)]
struct HistogramStripe {
    /// One per bound, then `+Inf`: observations in that bucket alone (the
    /// count is their sum).
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// A histogram with buckets bounded by `bounds` (seconds, ascending),
    /// plus `+Inf`.
    pub fn new(bounds: &[f64]) -> Self {
        let stripe = || {
            CachePadded::new(HistogramStripe {
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            })
        };
        DurationHistogram {
            inner: Arc::new(HistogramCells {
                bounds: bounds.to_vec(),
                bounds_nanos: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
                stripes: (0..STRIPES).map(|_| stripe()).collect(),
            }),
        }
    }

    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let cells = &self.inner;
        let stripe = &cells.stripes[stripe()];
        stripe.buckets[bucket_of(&cells.bounds_nanos, nanos)].fetch_add(1, Ordering::Relaxed);
        stripe.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's own count with its
    /// upper bound (`+Inf` last), over every stripe.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let cells = &self.inner;
        let mut buckets: Vec<(f64, u64)> = cells
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .map(|bound| (bound, 0))
            .collect();
        let mut sum_nanos = 0u64;
        for stripe in &cells.stripes {
            for (total, cell) in buckets.iter_mut().zip(&stripe.buckets) {
                total.1 += cell.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(stripe.sum_nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        (sum_nanos as f64 / 1e9, count, buckets)
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A gauge that goes up and down by one, from many threads.
#[derive(Clone, Debug, Default)]
pub struct StripedGauge {
    stripes: Arc<[CachePadded<AtomicI64>; STRIPES]>,
}

impl StripedGauge {
    /// Adds one.
    pub fn inc(&self) {
        self.stripes[stripe()].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away (on any thread: the stripes are summed).
    pub fn dec(&self) {
        self.stripes[stripe()].fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for StripedGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for StripedGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_falls_in_the_first_bucket_that_holds_it() {
        let bounds = [100, 1_000, 10_000];
        assert_eq!(bucket_of(&bounds, 0), 0);
        assert_eq!(bucket_of(&bounds, 100), 0, "an upper bound is inclusive");
        assert_eq!(bucket_of(&bounds, 101), 1);
        assert_eq!(bucket_of(&bounds, 10_000), 2);
        assert_eq!(bucket_of(&bounds, 10_001), 3, "+Inf");
    }

    #[test]
    fn observations_from_many_threads_add_up() {
        let h = DurationHistogram::new(&[0.001, 0.01]);
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe(Duration::from_micros(if i % 2 == 0 { 500 } else { 5000 }));
                    }
                    h.observe(Duration::from_secs(1));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (sum, count, buckets) = h.totals();
        assert_eq!(count, 12_012);
        assert_eq!(
            buckets,
            vec![(0.001, 6000), (0.01, 6000), (f64::INFINITY, 12)]
        );
        assert!((sum - (6.0 * 0.5 + 6.0 * 5.0 + 12.0)).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn a_gauge_raised_on_one_thread_and_lowered_on_another_nets_out() {
        let g = StripedGauge::default();
        g.inc();
        g.inc();
        let other = g.clone();
        std::thread::spawn(move || other.dec()).join().unwrap();
        assert_eq!(g.get(), 1);
        g.dec();
        assert_eq!(g.get(), 0);
    }
}
