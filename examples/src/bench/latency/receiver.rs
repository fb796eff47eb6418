//! What the latency runs watch with: a typed consumer recording when each event arrived
//! (and, for the raw baseline, when a transaction inserting its business row committed),
//! the consuming service's inbox handler, and a thread sampling counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::{KafkaOrm, RunningHandler};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tokio::sync::watch;

use crate::inbox::handle;
use crate::infra::{BenchEvent, Result, now_us};

/// When each event (by `seq`) reached the consumer, and when its business row committed.
pub type Seen = Arc<Mutex<HashMap<i64, (i64, i64)>>>;

/// A consumer task recording when each `seq` arrived and, with a transaction, when a
/// transaction inserting its business row committed after that.
pub struct Receiver {
    pub seen: Seen,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Receiver {
    pub async fn start(orm: &KafkaOrm, db: &DatabaseConnection, with_txn: bool) -> Result<Self> {
        let mut consumer = orm.topic::<BenchEvent>().consume().await?;
        let db = db.clone();
        let seen: Seen = Arc::default();
        let (stop, mut stopped) = watch::channel(false);
        let task_seen = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let result: Result<()> = async {
                loop {
                    tokio::select! {
                        d = consumer.next() => match d {
                            Some(Ok(d)) => {
                                let at = now_us();
                                let committed = if with_txn {
                                    let txn = db.begin().await?;
                                    raw_insert(&txn, &d).await?;
                                    txn.commit().await?;
                                    now_us()
                                } else {
                                    at
                                };
                                task_seen.lock().unwrap().insert(d.seq, (at, committed));
                            }
                            Some(Err(e)) => return Err(e.into()),
                            None => return Ok(()),
                        },
                        _ = stopped.changed() => return Ok(()),
                    }
                }
            }
            .await;
            consumer.shutdown().await?;
            result
        });
        Ok(Receiver { seen, stop, task })
    }

    pub fn received(&self, seq: i64) -> Option<(i64, i64)> {
        self.seen.lock().unwrap().get(&seq).copied()
    }

    /// Waits until every seq in `seqs` arrived, at most `secs`.
    pub async fn wait_all(&self, seqs: std::ops::Range<i64>, secs: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let missing = {
                let seen = self.seen.lock().unwrap();
                seqs.clone().filter(|s| !seen.contains_key(s)).count()
            };
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{missing} of {} messages did not reach the consumer within {secs} s",
                    seqs.end - seqs.start
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// The raw consumer's business insert (the same row the handler writes).
async fn raw_insert<C: ConnectionTrait>(conn: &C, e: &BenchEvent) -> Result<()> {
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO bench_business (seq, key, sent_at_us, pad) VALUES ($1, $2, $3, $4)",
        [
            e.seq.into(),
            e.key.clone().into(),
            e.sent_at_us.into(),
            e.pad.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// When each handler body finished: (seq, µs).
pub type Finished = Arc<Mutex<Vec<(i64, i64)>>>;

/// The consuming service's handler (its own group, inbox + one SeaORM insert), recording
/// when each body finished.
pub async fn start_handler(orm: &KafkaOrm, finished: &Finished) -> Result<RunningHandler> {
    let finished = Arc::clone(finished);
    let running = orm
        .topic::<BenchEvent>()
        .group("bench-handler")
        .handler(async move |txn, msg| {
            handle(txn, msg).await?;
            finished.lock().unwrap().push((msg.seq, now_us()));
            Ok(())
        })
        .spawn()
        .await?;
    Ok(running)
}

/// Waits until `handler` handled `n` messages (at most 60 s).
pub async fn wait_handled(handler: Option<&RunningHandler>, n: u64) -> Result<()> {
    let Some(h) = handler else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.stats().handled < n {
        if h.is_finished() {
            return Err("the handler stopped on its own".into());
        }
        if Instant::now() > deadline {
            return Err(format!("the handler handled {:?} of {n} within 60 s", h.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Samples counters from a thread of its own, recording each change with its time.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<(u64, i64)>>>,
}

/// A counter the [`Watcher`] samples.
pub type Counter = Box<dyn Fn() -> u64 + Send>;

impl Watcher {
    pub fn start(counters: Vec<Counter>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut marks: Vec<Vec<(u64, i64)>> = vec![Vec::new(); counters.len()];
            let mut last = vec![u64::MAX; counters.len()];
            while !thread_stop.load(Ordering::Relaxed) {
                for (i, c) in counters.iter().enumerate() {
                    let v = c();
                    if v != last[i] {
                        marks[i].push((v, now_us()));
                        last[i] = v;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            marks
        });
        Watcher { stop, thread }
    }

    pub fn stop(self) -> Result<Vec<Vec<(u64, i64)>>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self
            .thread
            .join()
            .map_err(|_| "the watcher thread panicked")?)
    }
}

/// When `marks` (a counter's changes) first reached `base + k + 1`, for each k.
pub fn reached(marks: &[(u64, i64)], base: u64, n: usize) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(n);
    let mut mark = marks.iter().peekable();
    for k in 0..n {
        let needed = base + k as u64 + 1;
        while mark.peek().is_some_and(|(d, _)| *d < needed) {
            mark.next();
        }
        let (_, at) = mark
            .peek()
            .ok_or_else(|| format!("the watcher never saw the counter reach {needed}"))?;
        out.push(*at);
    }
    Ok(out)
}

/// Handler commit times per message: the k-th body to finish (`finished`, from `first`)
/// is taken as committed when the handled counter (`marks`) reached `base + k`; returns
/// (index from `first`, µs).
pub fn handler_commits(
    finished: &mut [(i64, i64)],
    marks: &[(u64, i64)],
    base: u64,
    first: i64,
) -> Result<Vec<(usize, i64)>> {
    finished.sort_by_key(|(_, at)| *at);
    let committed = reached(marks, base, finished.len())?;
    Ok(finished
        .iter()
        .zip(committed)
        .filter(|((seq, _), _)| *seq >= first)
        .map(|((seq, _), done)| ((seq - first) as usize, done))
        .collect())
}
