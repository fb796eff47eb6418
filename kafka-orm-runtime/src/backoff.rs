//! Exponential backoff with a cap and jitter: one policy value for every retry loop
//! (relay rows, relay errors, handler attempts, database outages).

use std::time::Duration;

/// `base * 2^(attempt-1)`, capped at `cap`, then scaled by a jitter factor in
/// `[1 - jitter, 1 + jitter]` (and capped again), so retries of many rows or partitions
/// do not fire together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the second attempt (attempt 1's retry).
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
    /// Relative jitter, `0.0..=1.0` (default 0.2: ±20 %).
    pub jitter: f64,
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap`, with ±20 % jitter.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            jitter: 0.2,
        }
    }

    /// The delay before retrying after failed attempt `attempt` (1-based; 0 counts as 1),
    /// without jitter.
    pub fn raw(&self, attempt: u32) -> Duration {
        let exp = attempt.clamp(1, 31) - 1;
        self.base.saturating_mul(1u32 << exp.min(20)).min(self.cap)
    }

    /// The delay after failed attempt `attempt`, jittered by `seed` (any value; the same
    /// seed gives the same delay, so callers pass something that varies: a clock, an id).
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let raw = self.raw(attempt);
        let jitter = self.jitter.clamp(0.0, 1.0);
        // A well-mixed fraction in [0, 1] from the seed (splitmix64 finalizer).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 - jitter + 2.0 * jitter * unit;
        raw.mul_f64(factor).min(self.cap)
    }

    /// [`Self::delay`] seeded from the clock.
    pub fn delay_now(&self, attempt: u32) -> Duration {
        self.delay(attempt, clock_seed() ^ u64::from(attempt))
    }
}

/// A jitter seed from the clock (nanoseconds since the epoch), as [`Backoff::delay_now`]
/// uses it.
pub(crate) fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_exponentially_from_the_base() {
        let b = Backoff::new(100 * MS, Duration::from_secs(60));
        let got: Vec<_> = (1..=5).map(|a| b.raw(a)).collect();
        assert_eq!(got, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS]);
        assert_eq!(b.raw(0), 100 * MS, "attempt 0 counts as the first");
    }

    #[test]
    fn is_capped_even_with_jitter_and_huge_attempts() {
        let b = Backoff::new(100 * MS, Duration::from_secs(2));
        assert_eq!(b.raw(6), Duration::from_secs(2));
        assert_eq!(b.raw(u32::MAX), Duration::from_secs(2));
        for seed in 0..1000 {
            assert!(b.delay(40, seed) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn jitter_stays_within_its_band_and_varies() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<_> = (0..1000).map(|s| b.delay(1, s)).collect();
        assert!(delays.iter().all(|d| *d >= 800 * MS && *d <= 1200 * MS));
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*max - *min > 300 * MS, "jitter spreads: {min:?}..{max:?}");
        assert_eq!(b.delay(3, 42), b.delay(3, 42), "same seed, same delay");
    }

    #[test]
    fn no_jitter_means_exact_delays() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::new(10 * MS, Duration::from_secs(1))
        };
        assert_eq!(b.delay(3, 7), 40 * MS);
    }

    #[test]
    fn cap_below_base_is_raised_to_the_base() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.cap, Duration::from_secs(2));
        assert_eq!(b.raw(5), Duration::from_secs(2));
    }
}
