//! Retry delays: exponential doubling or an explicit schedule, with jitter.
//! Pure arithmetic; the caller supplies the randomness.

use std::time::Duration;

/// How long to wait before each retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// `initial`, then doubling, never above `max`.
    Exponential {
        /// Delay before the first retry.
        initial: Duration,
        /// Upper bound of any delay.
        max: Duration,
    },
    /// The n-th retry waits `delays[n-1]`; the last entry repeats.
    Schedule(Vec<Duration>),
}

/// How far a delay may stray from its nominal value: ±20 %.
pub const JITTER: f64 = 0.2;

impl Backoff {
    /// Doubling from `initial` up to `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff::Exponential {
            initial,
            max: max.max(initial),
        }
    }

    /// An explicit list of delays. `delays` must not be empty.
    pub fn schedule(delays: Vec<Duration>) -> Self {
        debug_assert!(!delays.is_empty());
        Backoff::Schedule(delays)
    }

    /// The nominal delay after failed attempt `attempt` (1-based), before jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let retry = attempt.max(1) as usize; // the first retry follows attempt 1
        match self {
            Backoff::Exponential { initial, max } => {
                let factor = 1u32.checked_shl(retry as u32 - 1).unwrap_or(u32::MAX);
                initial.saturating_mul(factor).min(*max)
            }
            Backoff::Schedule(delays) => delays
                .get(retry - 1)
                .or(delays.last())
                .copied()
                .unwrap_or_default(),
        }
    }

    /// The delay after failed attempt `attempt`, jittered by `unit`, a random
    /// number in `[0, 1)`: the result lies within ±[`JITTER`] of the nominal.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let scale = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        self.nominal(attempt).mul_f64(scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_doubles_up_to_max() {
        let b = Backoff::exponential(100 * MS, 1000 * MS);
        let got: Vec<_> = (1..=6).map(|a| b.nominal(a)).collect();
        assert_eq!(
            got,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.nominal(200), 1000 * MS, "no overflow on huge attempts");
    }

    #[test]
    fn schedule_repeats_last_entry() {
        let b = Backoff::schedule(vec![1000 * MS, 5000 * MS]);
        assert_eq!(b.nominal(1), 1000 * MS);
        assert_eq!(b.nominal(2), 5000 * MS);
        assert_eq!(b.nominal(9), 5000 * MS);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::exponential(1000 * MS, 10_000 * MS);
        assert_eq!(b.delay(1, 0.0), 800 * MS);
        assert_eq!(b.delay(1, 0.5), 1000 * MS);
        assert!(b.delay(1, 0.999_999) <= 1200 * MS);
        assert_eq!(
            b.delay(1, 7.0),
            1200 * MS,
            "out-of-range randomness is clamped"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn ms(n: u64) -> Duration {
            Duration::from_millis(n)
        }

        fn within_jitter(delay: Duration, nominal: Duration) -> bool {
            let (d, n) = (delay.as_secs_f64(), nominal.as_secs_f64());
            d >= n * (1.0 - JITTER) - 1e-9 && d <= n * (1.0 + JITTER) + 1e-9
        }

        proptest! {
            #[test]
            fn exponential_delays_stay_in_bounds_and_never_shrink(
                initial_ms in 1u64..10_000,
                max_ms in 1u64..100_000,
                attempt in 1u32..10_000,
                unit in 0.0f64..1.0,
            ) {
                let b = Backoff::exponential(ms(initial_ms), ms(max_ms));
                let max = ms(max_ms.max(initial_ms));
                let nominal = b.nominal(attempt);
                prop_assert!(nominal <= max);
                prop_assert!(nominal >= (ms(initial_ms)).min(max));
                prop_assert!(b.nominal(attempt + 1) >= nominal, "monotonic");
                prop_assert_eq!(b.nominal(1), ms(initial_ms));
                prop_assert!(within_jitter(b.delay(attempt, unit), nominal));
            }

            #[test]
            fn a_schedule_is_followed_then_its_last_entry_repeats(
                delays in proptest::collection::vec(0u64..60_000, 1..8),
                attempt in 1u32..100,
                unit in 0.0f64..1.0,
            ) {
                let list: Vec<Duration> = delays.iter().map(|d| ms(*d)).collect();
                let b = Backoff::schedule(list.clone());
                let expected = list[(attempt as usize).min(list.len()) - 1];
                prop_assert_eq!(b.nominal(attempt), expected);
                prop_assert!(within_jitter(b.delay(attempt, unit), expected));
            }
        }
    }
}
