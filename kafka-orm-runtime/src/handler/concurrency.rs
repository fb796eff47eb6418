//! How many handler calls run at once: a fixed count, or one that follows the lag
//! ([`Concurrency::by_lag`]), and the [`Balancer`] that decides it — a pure state machine,
//! fed lag samples, with no I/O (the task that feeds it is in [`super::limit`]).
//!
//! The count is KafkaFlow's worker count: a worker runs one handler call (one message, or
//! one batch) at a time. Order is not the workers' business: messages of one partition (or
//! one key, with `key_concurrency`) are queued on one lane, which hands them to a worker
//! one after another, so growing or shrinking the workers never reorders anything.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::defaults;

/// How many handler calls (messages, or batches in batch mode) a handler runs at once:
/// KafkaFlow's worker count. Fixed (`.concurrency(8)`, from a `usize`), or between a
/// minimum and a maximum following the committed-offset lag ([`Concurrency::by_lag`]:
/// KafkaFlow's lag-based worker balancer).
///
/// ```
/// use std::time::Duration;
/// use kafka_orm_runtime::handler::Concurrency;
///
/// let fixed: Concurrency = 8.into();
/// assert_eq!((fixed.min(), fixed.max()), (8, 8));
///
/// // 2 workers when idle, one more per 500 messages of lag, at most 32; back down once
/// // the lag stayed low for a minute.
/// let balanced = Concurrency::by_lag(2..=32, 500).cooldown(Duration::from_secs(60));
/// assert_eq!((balanced.min(), balanced.max()), (2, 32));
/// assert_eq!(balanced.workers_for(0), 2);
/// assert_eq!(balanced.workers_for(1_200), 3);
/// assert_eq!(balanced.workers_for(1_000_000), 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    min: usize,
    max: usize,
    lag_per_worker: u64,
    cooldown: Duration,
}

impl Concurrency {
    /// Always `n` at once (at least 1).
    pub const fn fixed(n: usize) -> Self {
        let n = if n == 0 { 1 } else { n };
        Concurrency {
            min: n,
            max: n,
            lag_per_worker: u64::MAX,
            cooldown: defaults::HANDLER_CONCURRENCY_COOLDOWN,
        }
    }

    /// Between `workers.start()` and `workers.end()` at once, one worker per
    /// `lag_per_worker` messages of committed-offset lag (the sum over the handler's
    /// assigned partitions of its topic; retry tiers wait for their due time, so they do
    /// not count): `ceil(lag / lag_per_worker)`, clamped to the range.
    ///
    /// The lag is sampled every
    /// [`metrics_interval`](crate::KafkaOrmBuilder::metrics_interval) (default 5 s; the
    /// same sample feeds the `kafka_orm.consumer.lag` gauges and the health check). A
    /// sample that wants more workers gets them at once; fewer only once every sample
    /// for a [`cooldown`](Self::cooldown) wanted fewer, and then as many as the highest of
    /// them wanted (the scale-down stabilization window of Kubernetes' autoscaler), so
    /// the count does not flap with the lag. A handler starts at the minimum; a failed
    /// sample changes nothing.
    ///
    /// More workers than lanes (assigned partitions × `key_concurrency`) have nothing to
    /// do: raise `key_concurrency` for a topic with few partitions.
    pub fn by_lag(workers: RangeInclusive<usize>, lag_per_worker: u64) -> Self {
        let min = (*workers.start()).max(1);
        Concurrency {
            min,
            max: (*workers.end()).max(min),
            lag_per_worker: lag_per_worker.max(1),
            cooldown: defaults::HANDLER_CONCURRENCY_COOLDOWN,
        }
    }

    /// How long the lag must want fewer workers before they shrink (default
    /// [`defaults::HANDLER_CONCURRENCY_COOLDOWN`]).
    pub const fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The fewest calls at once (the count when idle).
    pub const fn min(&self) -> usize {
        self.min
    }

    /// The most calls at once.
    pub const fn max(&self) -> usize {
        self.max
    }

    /// Whether the count never changes.
    pub const fn is_fixed(&self) -> bool {
        self.min == self.max
    }

    /// The workers `lag` messages of lag want: `ceil(lag / lag_per_worker)` within
    /// `min..=max`.
    pub fn workers_for(&self, lag: u64) -> usize {
        let wanted = lag.div_ceil(self.lag_per_worker);
        usize::try_from(wanted)
            .unwrap_or(usize::MAX)
            .clamp(self.min, self.max)
    }

    /// Whether `lag` wants more workers than the maximum (never for a fixed count).
    pub(crate) fn beyond_max(&self, lag: u64) -> bool {
        !self.is_fixed() && lag.div_ceil(self.lag_per_worker) > self.max as u64
    }
}

impl From<usize> for Concurrency {
    fn from(n: usize) -> Self {
        Concurrency::fixed(n)
    }
}

impl Default for Concurrency {
    /// [`defaults::HANDLER_CONCURRENCY`], fixed.
    fn default() -> Self {
        Concurrency::fixed(defaults::HANDLER_CONCURRENCY)
    }
}

/// Decides the worker count from lag samples: grow at once, shrink after a cooldown.
#[derive(Debug, Clone)]
pub(crate) struct Balancer {
    policy: Concurrency,
    current: usize,
    /// Since when every sample wanted fewer than `current`, and the most any of them wanted.
    calm: Option<(Instant, usize)>,
}

impl Balancer {
    /// Starts at the policy's minimum.
    pub fn new(policy: Concurrency) -> Self {
        Balancer {
            policy,
            current: policy.min,
            calm: None,
        }
    }

    /// The count decided so far.
    #[cfg(test)]
    pub fn current(&self) -> usize {
        self.current
    }

    /// A lag sample taken at `now`; the new count when it changes.
    pub fn observe(&mut self, lag: u64, now: Instant) -> Option<usize> {
        let wanted = self.policy.workers_for(lag);
        if wanted >= self.current {
            self.calm = None;
            if wanted == self.current {
                return None;
            }
            self.current = wanted;
            return Some(wanted);
        }
        let (since, most) = self.calm.get_or_insert((now, wanted));
        *most = (*most).max(wanted);
        if now.saturating_duration_since(*since) < self.policy.cooldown {
            return None;
        }
        self.current = *most;
        self.calm = None;
        Some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    fn balancer() -> (Balancer, Instant) {
        let policy = Concurrency::by_lag(2..=8, 100).cooldown(COOL);
        (Balancer::new(policy), Instant::now())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_lag_wants_one_worker_per_lag_per_worker_within_the_range() {
        let p = Concurrency::by_lag(2..=8, 100);
        let wanted: Vec<usize> = [0, 1, 100, 201, 250, 799, 800, 801, u64::MAX]
            .iter()
            .map(|lag| p.workers_for(*lag))
            .collect();
        assert_eq!(wanted, [2, 2, 2, 3, 3, 8, 8, 8, 8]);
        assert!(!p.beyond_max(800) && p.beyond_max(801));
        assert!(!Concurrency::fixed(1).beyond_max(u64::MAX));
    }

    #[test]
    fn odd_settings_are_made_sane() {
        let p = Concurrency::by_lag(0..=0, 0);
        assert_eq!((p.min(), p.max(), p.workers_for(5)), (1, 1, 1));
        #[allow(clippy::reversed_empty_ranges)]
        let p = Concurrency::by_lag(6..=2, 10);
        assert_eq!((p.min(), p.max()), (6, 6));
        assert!(p.is_fixed());
        assert_eq!(Concurrency::fixed(0).max(), 1);
        assert_eq!(Concurrency::from(3), Concurrency::fixed(3));
        assert_eq!(Concurrency::default().max(), defaults::HANDLER_CONCURRENCY);
    }

    #[test]
    fn a_fixed_count_never_changes() {
        let mut b = Balancer::new(Concurrency::fixed(4));
        let t = Instant::now();
        for (i, lag) in [0, 1_000_000, 0, 5].into_iter().enumerate() {
            assert_eq!(b.observe(lag, t + secs(100 * i as u64)), None);
        }
        assert_eq!(b.current(), 4);
    }

    #[test]
    fn a_backlog_grows_the_workers_at_once_to_what_it_wants() {
        let (mut b, t) = balancer();
        assert_eq!(b.current(), 2, "starts at the minimum");
        assert_eq!(b.observe(150, t), None, "two workers serve 150");
        assert_eq!(b.observe(450, t + secs(1)), Some(5));
        assert_eq!(
            b.observe(5_000, t + secs(2)),
            Some(8),
            "capped at the maximum"
        );
        assert_eq!(b.observe(9_000, t + secs(3)), None);
    }

    #[test]
    fn the_workers_shrink_only_after_the_cooldown_to_the_most_wanted_meanwhile() {
        let (mut b, t) = balancer();
        b.observe(800, t);
        assert_eq!(b.observe(0, t + secs(1)), None, "calm starts");
        assert_eq!(b.observe(350, t + secs(5)), None);
        assert_eq!(b.observe(0, t + secs(10)), None, "not yet 10 s calm");
        assert_eq!(
            b.observe(0, t + secs(11)),
            Some(4),
            "down to what the busiest calm sample wanted (350 → 4), not to 2"
        );
        assert_eq!(b.observe(0, t + secs(12)), None, "a new calm starts");
        assert_eq!(b.observe(0, t + secs(22)), Some(2), "idle: the minimum");
        assert_eq!(b.observe(0, t + secs(60)), None);
    }

    #[test]
    fn a_sample_that_wants_as_many_restarts_the_cooldown() {
        let (mut b, t) = balancer();
        b.observe(800, t);
        b.observe(0, t + secs(1));
        assert_eq!(b.observe(800, t + secs(9)), None, "busy again: calm over");
        assert_eq!(
            b.observe(0, t + secs(12)),
            None,
            "a new calm starts at 12 s"
        );
        assert_eq!(b.observe(0, t + secs(21)), None);
        assert_eq!(b.observe(0, t + secs(22)), Some(2));
    }

    #[test]
    fn a_lag_hovering_at_a_boundary_does_not_flap() {
        let (mut b, t) = balancer();
        let mut changes = Vec::new();
        // 290 wants 3, 310 wants 4: alternating every second for five minutes.
        for s in 0..300 {
            let lag = if s % 2 == 0 { 310 } else { 290 };
            if let Some(n) = b.observe(lag, t + secs(s)) {
                changes.push(n);
            }
        }
        assert_eq!(changes, [4], "one change up, then steady");
    }

    #[test]
    fn a_zero_cooldown_shrinks_on_the_first_calm_sample() {
        let policy = Concurrency::by_lag(1..=4, 10).cooldown(Duration::ZERO);
        let mut b = Balancer::new(policy);
        let t = Instant::now();
        assert_eq!(b.observe(40, t), Some(4));
        assert_eq!(b.observe(0, t), Some(1));
    }
}
