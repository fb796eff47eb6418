//! The handler's concurrency limit: a semaphore that can be resized while permits are held
//! ([`Limit`]), and the task that resizes it from the lag samples ([`balance_by_lag`]).
//!
//! A lane takes a permit for each handler call and gives it back when the call returns.
//! Growing adds permits at once; shrinking takes free permits away at once and the rest
//! as running calls return them, so no call is interrupted and the number of calls at
//! once is never above the limit for longer than the calls already running take.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit, watch};

use super::Counters;
use super::concurrency::{Balancer, Concurrency};
use crate::telemetry::lag::PartitionLag;

/// A semaphore whose size can change while permits are held.
#[derive(Debug)]
pub(crate) struct Limit {
    semaphore: Semaphore,
    /// Permits to drop instead of returning, because the limit shrank while they were held.
    owed: AtomicUsize,
    /// The size; resizes are serialized by this lock.
    size: Mutex<usize>,
}

/// A held permit; returned on drop (or dropped for good if the limit shrank meanwhile).
#[must_use]
pub(crate) struct Permit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    owed: &'a AtomicUsize,
}

impl Limit {
    /// A limit of `size` (at least 1).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Limit {
            semaphore: Semaphore::new(size),
            owed: AtomicUsize::new(0),
            size: Mutex::new(size),
        }
    }

    /// Waits for a free permit.
    pub async fn acquire(&self) -> Permit<'_> {
        Permit {
            // The semaphore is never closed, so this only waits.
            permit: self.semaphore.acquire().await.ok(),
            owed: &self.owed,
        }
    }

    /// The current size.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        *self.size.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resizes to `size` (at least 1); returns the size before.
    pub fn resize(&self, size: usize) -> usize {
        let size = size.max(1);
        let mut current = self.size.lock().unwrap_or_else(|e| e.into_inner());
        let before = *current;
        if size > before {
            // Cancel what is still owed first, then add the rest.
            let grow = size - before;
            let cancelled = take_up_to(&self.owed, grow);
            self.semaphore.add_permits(grow - cancelled);
        } else if size < before {
            let shrink = before - size;
            let gone = self.semaphore.forget_permits(shrink);
            self.owed.fetch_add(shrink - gone, Ordering::SeqCst);
        }
        *current = size;
        before
    }
}

/// Takes up to `n` from `counter`; returns how many it took.
fn take_up_to(counter: &AtomicUsize, n: usize) -> usize {
    let before = counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
            Some(c.saturating_sub(n))
        })
        .unwrap_or_default();
    before.min(n)
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take()
            && take_up_to(self.owed, 1) == 1
        {
            permit.forget();
        }
    }
}

/// What the balancing task needs.
pub(crate) struct ByLag {
    pub policy: Concurrency,
    pub limit: Arc<Limit>,
    /// The lag sampler's samples.
    pub samples: watch::Receiver<Option<Vec<PartitionLag>>>,
    /// The handler's topic (namespace applied): its retry tiers do not count.
    pub topic: String,
    pub group: String,
    pub counters: Arc<Counters>,
    pub gauge: metrics::Gauge,
    /// The last sample's lag while it wanted more than the maximum; 0 otherwise (health).
    pub beyond_max: Arc<AtomicU64>,
    /// Becomes true when the handler stops.
    pub stopping: watch::Receiver<bool>,
}

/// Resizes the limit from each new lag sample until the handler stops: wait for a sample,
/// decide ([`Balancer`]), resize, record.
pub(crate) async fn balance_by_lag(mut task: ByLag) {
    let mut balancer = Balancer::new(task.policy);
    loop {
        tokio::select! {
            changed = task.samples.changed() => if changed.is_err() { break },
            _ = task.stopping.wait_for(|stop| *stop) => break,
        }
        let lag: u64 = match &*task.samples.borrow_and_update() {
            Some(sample) => sample
                .iter()
                .filter(|p| p.topic == task.topic)
                .map(|p| u64::try_from(p.lag).unwrap_or_default())
                .sum(),
            None => continue,
        };
        let beyond = if task.policy.beyond_max(lag) { lag } else { 0 };
        task.beyond_max.store(beyond, Ordering::Relaxed);
        let Some(workers) = balancer.observe(lag, Instant::now()) else {
            continue;
        };
        let before = task.limit.resize(workers);
        task.counters
            .concurrency
            .store(workers as u64, Ordering::Relaxed);
        task.gauge.set(workers as f64);
        tracing::info!(
            topic = %task.topic, group = %task.group, lag, from = before, to = workers,
            "handler concurrency changed with the lag"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// How many permits can be taken right now.
    fn free(limit: &Limit) -> usize {
        let mut held = Vec::new();
        while let Ok(p) = limit.semaphore.try_acquire() {
            held.push(p);
        }
        held.len()
    }

    async fn take(limit: &Limit, n: usize) -> Vec<Permit<'_>> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(limit.acquire().await);
        }
        held
    }

    #[tokio::test]
    async fn it_bounds_permits_at_its_size() {
        let limit = Limit::new(3);
        let held = take(&limit, 3).await;
        let fourth = tokio::time::timeout(Duration::from_millis(20), limit.acquire()).await;
        assert!(fourth.is_err(), "a fourth waits");
        drop(held);
        assert_eq!(free(&limit), 3);
    }

    #[tokio::test]
    async fn growing_adds_permits_at_once() {
        let limit = Limit::new(2);
        let held = take(&limit, 2).await;
        assert_eq!(limit.resize(5), 2);
        assert_eq!(free(&limit), 3);
        drop(held);
        assert_eq!((free(&limit), limit.size()), (5, 5));
    }

    #[tokio::test]
    async fn shrinking_takes_free_permits_at_once_and_held_ones_as_they_return() {
        let limit = Limit::new(4);
        let mut held = take(&limit, 3).await;
        assert_eq!(limit.resize(1), 4);
        assert_eq!(
            free(&limit),
            0,
            "the free one is gone, two held ones are owed"
        );
        held.pop();
        assert_eq!(free(&limit), 0, "the first returned is dropped");
        held.pop();
        assert_eq!(free(&limit), 0, "the second too");
        held.pop();
        assert_eq!(free(&limit), 1, "the last one comes back: size 1");
    }

    #[tokio::test]
    async fn growing_while_owed_cancels_the_debt_first() {
        let limit = Limit::new(4);
        let held = take(&limit, 4).await;
        limit.resize(1);
        limit.resize(3);
        assert_eq!(free(&limit), 0, "still four held");
        drop(held);
        assert_eq!((free(&limit), limit.size()), (3, 3));
        limit.resize(0);
        assert_eq!((free(&limit), limit.size()), (1, 1), "never below 1");
    }

    fn sample(lags: &[(&str, i64)]) -> Option<Vec<PartitionLag>> {
        let lags = lags
            .iter()
            .enumerate()
            .map(|(i, (topic, lag))| PartitionLag {
                topic: topic.to_string(),
                partition: i as i32,
                lag: *lag,
            });
        Some(lags.collect())
    }

    /// Waits until the limit has `size`.
    async fn sized(limit: &Limit, size: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while limit.size() != size {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the limit never reached {size}: {}", limit.size()));
    }

    #[tokio::test]
    async fn the_task_resizes_the_limit_from_the_topics_lag_until_the_handler_stops() {
        let limit = Arc::new(Limit::new(1));
        let (samples, receiver) = watch::channel(None);
        let (stop, stopping) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let beyond_max = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(balance_by_lag(ByLag {
            policy: Concurrency::by_lag(1..=8, 100).cooldown(Duration::ZERO),
            limit: Arc::clone(&limit),
            samples: receiver,
            topic: "t".into(),
            group: "g".into(),
            counters: Arc::clone(&counters),
            gauge: metrics::Gauge::noop(),
            beyond_max: Arc::clone(&beyond_max),
            stopping,
        }));
        // 300 + 200 on the topic's partitions; the retry tier's backlog does not count.
        samples.send_replace(sample(&[("t", 300), ("t", 200), ("t.retry-1", 10_000)]));
        sized(&limit, 5).await;
        assert_eq!(counters.concurrency.load(Ordering::Relaxed), 5);
        assert_eq!(
            beyond_max.load(Ordering::Relaxed),
            0,
            "5 of 8: not at the maximum"
        );
        samples.send_replace(sample(&[("t", 900)]));
        sized(&limit, 8).await;
        assert_eq!(beyond_max.load(Ordering::Relaxed), 900, "900 wants 9 of 8");
        samples.send_replace(sample(&[("t", 0), ("t", 0)]));
        sized(&limit, 1).await;
        assert_eq!(counters.concurrency.load(Ordering::Relaxed), 1);
        assert_eq!(beyond_max.load(Ordering::Relaxed), 0);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with the handler")
            .unwrap();
    }

    #[tokio::test]
    async fn resizing_under_load_keeps_calls_at_once_within_the_size() {
        let limit = Arc::new(Limit::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let worst = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (limit, running, worst) = (limit.clone(), running.clone(), worst.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let _p = limit.acquire().await;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    worst.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }));
        }
        limit.resize(6);
        tokio::time::sleep(Duration::from_millis(30)).await;
        limit.resize(3);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(worst.load(Ordering::SeqCst) <= 6);
        assert_eq!(free(&limit), 3, "every permit back, at the last size");
    }
}
