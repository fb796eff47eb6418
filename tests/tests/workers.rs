//! Workers on the real broker: a fixed `concurrency(n)` bounds the handler calls at once,
//! and `Concurrency::by_lag` grows the workers to the maximum under a backlog and shrinks
//! them to the minimum when idle, with every key's messages handled in order throughout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::handler::Concurrency;
use kafka_orm::{Delivery, HandlerStats, KafkaOrm, Reason, RunningHandler, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "workers.jobs",
    key = "key",
    partitions = 4,
    group = "workers-jobs"
)]
struct Job {
    id: i64,
    key: String,
}

fn jobs(ids: std::ops::Range<i64>, keys: i64) -> Vec<Job> {
    ids.map(|id| Job {
        id,
        key: format!("k{}", id % keys),
    })
    .collect()
}

/// What the handler saw: calls running now and the most at once, and each key's ids in
/// the order they were handled.
#[derive(Default)]
struct Seen {
    running: AtomicUsize,
    most: AtomicUsize,
    by_key: Mutex<BTreeMap<String, Vec<i64>>>,
}

impl Seen {
    async fn handle(&self, job: &Job, takes: Duration) {
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(takes).await;
        let mut by_key = self.by_key.lock().unwrap();
        by_key.entry(job.key.clone()).or_default().push(job.id);
        drop(by_key);
        self.running.fetch_sub(1, SeqCst);
    }

    /// Every key's ids were handled in the order they were produced, none twice.
    fn assert_in_order(&self, produced: &[Job]) {
        let by_key = self.by_key.lock().unwrap();
        for (key, ids) in by_key.iter() {
            let expected: Vec<i64> = produced
                .iter()
                .filter(|j| &j.key == key)
                .map(|j| j.id)
                .collect();
            assert_eq!(
                ids, &expected,
                "{key}'s jobs in the order they were produced"
            );
        }
        let handled: usize = by_key.values().map(Vec::len).sum();
        assert_eq!(handled, produced.len());
    }
}

async fn context(test: &str) -> Option<KafkaOrm> {
    let builder = real_kafka(test)?.metrics_interval(Duration::from_millis(200));
    Some(builder.build().await.unwrap())
}

/// A handler of jobs that takes `takes` per job, with `lanes` key lanes per partition.
async fn handler(
    orm: &KafkaOrm,
    seen: &Arc<Seen>,
    takes: Duration,
    lanes: u32,
    workers: impl Into<Concurrency>,
) -> RunningHandler {
    let seen = Arc::clone(seen);
    let running = orm
        .topic::<Job>()
        .handler_without_database(async move |job: &Delivery<Job>| {
            seen.handle(job, takes).await;
            Ok(())
        })
        .key_concurrency(lanes)
        .concurrency(workers)
        .spawn()
        .await
        .unwrap();
    wait_stats(&running, "the partitions assigned", |s| s.assignments >= 1).await;
    running
}

async fn wait_stats(h: &RunningHandler, what: &str, ok: impl Fn(&HandlerStats) -> bool) {
    within(60, what, async {
        while !ok(&h.stats()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_concurrency_bounds_the_handler_calls_at_once() {
    let Some(orm) = context("workers_fixed").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    // 4 partitions × 8 key lanes: 32 lanes that could run at once, 3 workers.
    let running = handler(&orm, &seen, Duration::from_millis(20), 8, 3).await;
    assert_eq!(running.stats().concurrency, 3);
    let produced = jobs(0..300, 64);
    orm.topic::<Job>().produce_all(&produced).await.unwrap();
    wait_stats(&running, "300 jobs handled", |s| s.handled == 300).await;
    let stats = running.shutdown().await.unwrap();
    assert_eq!(
        seen.most.load(SeqCst),
        3,
        "the three workers were all busy and never more: {stats:?}"
    );
    assert_eq!(stats.concurrency, 3);
    seen.assert_in_order(&produced);
}

/// Samples `stats().concurrency` every 20 ms until `stop`: the counts seen, without
/// repeats, and the last one.
struct Watcher {
    counts: Arc<Mutex<Vec<u64>>>,
    now: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(running: &Arc<RunningHandler>) -> Self {
        let counts = Arc::new(Mutex::new(Vec::new()));
        let now = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (running, out, current, stopped) =
            (running.clone(), counts.clone(), now.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stopped.load(SeqCst) {
                let n = running.stats().concurrency;
                current.store(n, SeqCst);
                {
                    let mut counts = out.lock().unwrap();
                    if counts.last() != Some(&n) {
                        counts.push(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Watcher {
            counts,
            now,
            stop,
            task,
        }
    }

    async fn until(&self, what: &str, ok: impl Fn(u64) -> bool) {
        within(60, what, async {
            while !ok(self.now.load(SeqCst)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Stops; the counts seen.
    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, SeqCst);
        self.task.await.unwrap();
        self.counts.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_grows_the_workers_to_the_maximum_and_idling_shrinks_them_to_the_minimum() {
    let Some(orm) = context("workers_by_lag").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    // One worker per 20 messages of lag, 1 to 8, down after 1 s of low lag; 25 ms a job,
    // so one worker handles 40 a second and 800 jobs are a backlog.
    let policy = Concurrency::by_lag(1..=8, 20).cooldown(Duration::from_secs(1));
    let takes = Duration::from_millis(25);
    let running = Arc::new(handler(&orm, &seen, takes, 4, policy).await);
    assert_eq!(running.stats().concurrency, 1, "starts at the minimum");
    let watcher = Watcher::start(&running);
    let backlog = jobs(0..800, 32);
    orm.topic::<Job>().produce_all(&backlog).await.unwrap();

    watcher.until("the workers growing to 8", |n| n == 8).await;
    // The sample that grew them wanted more than 8 (the lag was near 800): degraded.
    let health = running.health().await;
    assert!(
        health.reasons.iter().any(|r| matches!(
            r,
            Reason::WorkersAtMaximum { workers: 8, lag, .. } if *lag > 160
        )),
        "at the maximum with more lag than 8 workers serve: {health:?}"
    );
    wait_stats(&running, "the backlog handled", |s| s.handled == 800).await;
    let most = seen.most.load(SeqCst);
    assert!(
        (5..=8).contains(&most),
        "up to 8 calls ran at once, never more: {most}"
    );
    watcher
        .until("the workers shrinking to 1 when idle", |n| n == 1)
        .await;

    // One worker again, really: a trickle is handled one call at a time.
    seen.most.store(0, SeqCst);
    let trickle = jobs(800..815, 32);
    orm.topic::<Job>().produce_all(&trickle).await.unwrap();
    wait_stats(&running, "the trickle handled", |s| s.handled == 815).await;
    assert_eq!(
        seen.most.load(SeqCst),
        1,
        "one call at a time after the shrink"
    );

    let health = running.health().await;
    assert!(health.is_ready() && health.reasons.is_empty(), "{health:?}");
    let counts = watcher.stop().await;
    eprintln!("workers seen: {counts:?}, most calls at once {most}");
    assert_eq!(counts.first(), Some(&1), "{counts:?}");
    assert!(counts.contains(&8), "grew to the maximum: {counts:?}");
    assert!(
        counts.windows(2).filter(|w| w[1] > w[0]).count() <= 2,
        "no flapping: {counts:?}"
    );
    let running = Arc::into_inner(running).expect("the watcher let go");
    running.shutdown().await.unwrap();
    let produced: Vec<Job> = backlog.into_iter().chain(trickle).collect();
    seen.assert_in_order(&produced);
}
