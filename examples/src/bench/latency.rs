//! `relay_latency`, `outbox_to_consumer_latency` and `end_to_end_latency`: a steady light
//! load (200 commits/s), one event per transaction, and how long each takes to get
//! through. Everything runs in this process, on one clock.
//!
//! - commit time: when `txn.commit()` returned for the event (its `seq`, carried in the
//!   payload, finds it).
//! - `relay_latency`: commit → the relay recorded the delivery, i.e. the broker
//!   acknowledged the row and the relay deleted it. A thread samples
//!   `relay.stats().delivered` every ~0.2 ms; with one sequential publisher and one relay,
//!   rows are delivered in commit order, so the k-th commit is delivered when the counter
//!   reaches k. Run with `LISTEN/NOTIFY` and with polling only (`.listen(false)`, the
//!   default 500 ms poll interval).
//! - `outbox_to_consumer_latency`: commit → the typed consumer stream (`consume()`)
//!   yielded the event (NOTIFY run).
//! - `end_to_end_latency`: commit in the producing service → the consuming service's
//!   handler transaction (inbox row + one SeaORM insert) committed (NOTIFY run; the
//!   handler runs in its own consumer group). The handler records when its body finished;
//!   the same thread samples `HandlerStats::handled`, and the k-th finished message is
//!   counted committed when `handled` reaches k (exact unless two messages overlap, rare at
//!   this load).
//! - baselines, same rate and duration, raw rdkafka producer: produce → delivery future
//!   resolved (for `relay_latency`); produce → the same typed consumer yielded it (for
//!   `outbox_to_consumer_latency`); produce → a raw per-message transaction inserting the
//!   same row committed after receipt (for `end_to_end_latency`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::producer::FutureRecord;
use kafka_orm::{OutboxRelay, RunningHandler};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::Config;
use crate::inbox::{BUSINESS_TABLE, handle};
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario, now_us, summary};
use crate::produce::delivered;
use crate::report::{Baseline, Figure, Outcome, Params, Progress};

/// Per-message latencies of one run, in milliseconds.
#[derive(Default)]
struct Samples {
    /// Raw: produce → ack. Outbox: commit → relay delivered.
    relay: Vec<f64>,
    /// Produce/commit → typed consumer.
    consumer: Vec<f64>,
    /// Produce/commit → consuming transaction committed (raw) / handler committed.
    end_to_end: Vec<f64>,
}

type Stats = (f64, f64, f64);

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    let commits = config.latency.as_secs() * config.latency_rate;
    let params = Params {
        messages: commits,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency: 1,
    };

    progress.phase("baseline: raw produce at a steady rate");
    let sc = infra.scenario("latency_raw").await?;
    let raw = raw_run(config, &sc, progress).await;
    sc.cleanup().await;
    let mut raw = raw?;
    progress.phase("outbox with LISTEN/NOTIFY");
    let sc = infra.scenario("latency_notify").await?;
    let notify = outbox_run(config, &sc, true, progress).await;
    sc.cleanup().await;
    let mut notify = notify?;
    progress.phase("outbox, polling only");
    let sc = infra.scenario("latency_poll").await?;
    let polling = outbox_run(config, &sc, false, progress).await;
    sc.cleanup().await;
    let mut polling = polling?;

    // For a closer look: BENCH_LATENCY_SAMPLES=file.json dumps every sample, in commit order.
    if let Ok(path) = std::env::var("BENCH_LATENCY_SAMPLES") {
        let doc = serde_json::json!({
            "raw": {"ack": raw.relay, "consumer": raw.consumer, "consumer_txn": raw.end_to_end},
            "notify": {"relay": notify.relay, "consumer": notify.consumer, "handler": notify.end_to_end},
            "polling": {"relay": polling.relay, "consumer": polling.consumer},
        });
        std::fs::write(&path, doc.to_string())?;
    }

    let rows = |name: &'static str,
                mode: &str,
                got: Stats,
                base: Stats,
                base_name: &str,
                goals: [Option<f64>; 2],
                what: &str| {
        let stats = [
            ("p50", got.0, base.0),
            ("p99", got.1, base.1),
            ("max", got.2, base.2),
        ];
        stats
            .into_iter()
            .enumerate()
            .map(|(i, (stat, value, baseline))| {
                let mut f = Figure::new(value, "ms")
                    .baseline(Baseline::new(format!("{base_name} {stat}"), baseline))
                    .extra("rate_per_s", config.latency_rate)
                    .extra("seconds", config.latency.as_secs())
                    .extra("samples", commits)
                    .extra("what", what);
                if let Some(Some(limit)) = goals.get(i) {
                    f = f.goal(format!("{stat} <= {limit} ms"), value <= *limit);
                }
                Outcome::measured(name, params, f).variant(format!("{mode} {stat}"))
            })
            .collect::<Vec<_>>()
    };
    let raw_ack = summary(&mut raw.relay);
    let mut out = Vec::new();
    out.extend(rows(
        "relay_latency",
        "NOTIFY",
        summary(&mut notify.relay),
        raw_ack,
        "raw produce->ack",
        [Some(5.0), Some(25.0)],
        "commit returned -> relay counted the row delivered (broker ack + delete); watched via relay.stats()",
    ));
    out.extend(rows(
        "relay_latency",
        "polling",
        summary(&mut polling.relay),
        raw_ack,
        "raw produce->ack",
        [None, None],
        "as NOTIFY, with .listen(false) and the default 500 ms poll interval",
    ));
    out.extend(rows(
        "outbox_to_consumer_latency",
        "NOTIFY",
        summary(&mut notify.consumer),
        summary(&mut raw.consumer),
        "raw produce->consumer",
        [None, None],
        "commit returned -> typed consume() stream yielded the event",
    ));
    out.extend(rows(
        "end_to_end_latency",
        "NOTIFY",
        summary(&mut notify.end_to_end),
        summary(&mut raw.end_to_end),
        "raw produce->consumer txn",
        [None, None],
        "commit in the producer -> the handler's transaction (inbox + SeaORM insert) committed",
    ));
    Ok(out)
}

/// A consumer task recording when each `seq` arrived and, with a database, when a
/// transaction inserting its business row committed after that.
struct Receiver {
    seen: Arc<Mutex<HashMap<i64, (i64, i64)>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Receiver {
    async fn start(sc: &Scenario, with_txn: bool) -> Result<Self> {
        let mut consumer = sc.orm.topic::<BenchEvent>().consume().await?;
        let db = sc.db.clone();
        let seen: Arc<Mutex<HashMap<i64, (i64, i64)>>> = Arc::default();
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

    fn received(&self, seq: i64) -> Option<(i64, i64)> {
        self.seen.lock().unwrap().get(&seq).copied()
    }

    /// Waits until every seq in `seqs` arrived, at most `secs`.
    async fn wait_all(&self, seqs: std::ops::Range<i64>, secs: u64) -> Result<()> {
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

    async fn stop(self) -> Result<()> {
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

fn pacer(rate: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Raw produce at the steady rate: produce → ack, → consumer, → consumer's txn committed.
async fn raw_run(config: &Config, sc: &Scenario, progress: &Progress) -> Result<Samples> {
    sc.db.execute_unprepared(BUSINESS_TABLE).await?;
    let producer = sc.infra.raw_producer()?;
    let topic = sc.topic();
    let receiver = Receiver::start(sc, true).await?;
    let send = |seq: i64| {
        let mut e = BenchEvent::new(seq as u64, config.payload_bytes);
        let sent = now_us();
        e.sent_at_us = sent;
        let payload = e.payload();
        let record = FutureRecord::to(&topic)
            .key(e.key.as_bytes())
            .payload(&payload);
        producer
            .send_result(record)
            .map(|f| (sent, f))
            .map_err(|(e, _)| format!("enqueueing: {e}"))
    };
    // Warm-up: until the consumer has its partitions and sees messages flow.
    progress.phase("baseline: waiting for the consumer's assignment");
    let mut seq = 0i64;
    let mut ticks = pacer(config.latency_rate);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ticks.tick().await;
        delivered(send(seq)?.1.await)?;
        seq += 1;
        if seq >= config.latency_rate as i64 && (0..seq).any(|s| receiver.received(s).is_some()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the consumer received nothing within 60 s".into());
        }
    }
    receiver.wait_all(0..seq, 60).await?;
    let first = seq;
    let commits = config.latency.as_secs() * config.latency_rate;
    progress.phase(format!(
        "baseline: {commits} raw produces at {}/s",
        config.latency_rate
    ));
    let acks: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut waiters = Vec::new();
    let mut sent_at = Vec::with_capacity(commits as usize);
    for i in 0..commits {
        ticks.tick().await;
        let (sent, future) = send(first + i as i64)?;
        sent_at.push(sent);
        let acks = Arc::clone(&acks);
        waiters.push(tokio::spawn(async move {
            let r = future.await;
            let at = now_us();
            delivered(r)?;
            acks.lock().unwrap().push((at - sent) as f64 / 1000.0);
            Result::Ok(())
        }));
        progress.count(i + 1, commits);
    }
    for w in waiters {
        w.await.map_err(|e| e.to_string())??;
    }
    receiver.wait_all(first..first + commits as i64, 60).await?;
    let mut samples = Samples {
        relay: std::mem::take(&mut *acks.lock().unwrap()),
        ..Samples::default()
    };
    for (k, sent) in sent_at.iter().enumerate() {
        let (got, committed) = receiver
            .received(first + k as i64)
            .ok_or("a message went missing")?;
        samples.consumer.push((got - sent) as f64 / 1000.0);
        samples.end_to_end.push((committed - sent) as f64 / 1000.0);
    }
    receiver.stop().await?;
    Ok(samples)
}

/// Samples counters from a thread of its own, recording each change with its time.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<(u64, i64)>>>,
}

impl Watcher {
    fn start(counters: Vec<Box<dyn Fn() -> u64 + Send>>) -> Self {
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

    fn stop(self) -> Result<Vec<Vec<(u64, i64)>>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self
            .thread
            .join()
            .map_err(|_| "the watcher thread panicked")?)
    }
}

/// When `marks` (a counter's changes) first reached `base + k + 1`, for each k.
fn reached(marks: &[(u64, i64)], base: u64, n: usize) -> Result<Vec<i64>> {
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

/// The outbox at the steady rate: commit → relay delivered, → consumer, → handler
/// committed (NOTIFY run only).
async fn outbox_run(
    config: &Config,
    sc: &Scenario,
    listen: bool,
    progress: &Progress,
) -> Result<Samples> {
    sc.db.execute_unprepared(BUSINESS_TABLE).await?;
    let relay = Arc::new(sc.orm.outbox_relay().listen(listen).spawn().await?);
    let finished: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let handler = if listen {
        let finished = Arc::clone(&finished);
        let running = sc
            .orm
            .topic::<BenchEvent>()
            .group("bench-handler")
            .handler(async move |txn, msg| {
                handle(txn, msg).await?;
                finished.lock().unwrap().push((msg.seq, now_us()));
                Ok(())
            })
            .spawn()
            .await?;
        Some(Arc::new(running))
    } else {
        None
    };
    let result = outbox_measure(config, sc, &relay, handler.as_ref(), &finished, progress).await;
    if let Some(Ok(h)) = handler.map(Arc::try_unwrap) {
        h.shutdown().await?;
    }
    if let Ok(relay) = Arc::try_unwrap(relay) {
        relay.shutdown().await?;
    }
    result
}

async fn outbox_measure(
    config: &Config,
    sc: &Scenario,
    relay: &Arc<OutboxRelay>,
    handler: Option<&Arc<RunningHandler>>,
    finished: &Arc<Mutex<Vec<(i64, i64)>>>,
    progress: &Progress,
) -> Result<Samples> {
    let listen = handler.is_some();
    let mode = if listen { "NOTIFY" } else { "polling" };
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.stats().owned_buckets < 64 || (listen && !relay.stats().listening) {
        if Instant::now() > deadline {
            return Err(format!("the relay was not ready within 60 s: {:?}", relay.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receiver = Receiver::start(sc, false).await?;
    let commit = |seq: i64| async move {
        let mut e = BenchEvent::new(seq as u64, config.payload_bytes);
        e.sent_at_us = now_us();
        let txn = sc.db.begin().await?;
        sc.orm.topic::<BenchEvent>().publish(&txn, &e).await?;
        txn.commit().await?;
        Result::Ok(now_us())
    };
    let handled = |h: Option<&Arc<RunningHandler>>| h.map_or(0, |h| h.stats().handled);

    progress.phase(format!("{mode}: warm-up until the consumers see messages"));
    let mut ticks = pacer(config.latency_rate);
    let mut seq = 0i64;
    loop {
        ticks.tick().await;
        commit(seq).await?;
        seq += 1;
        let consumed = (0..seq).any(|s| receiver.received(s).is_some());
        if seq >= config.latency_rate as i64 && consumed && (!listen || handled(handler) > 0) {
            break;
        }
        if Instant::now() > deadline + Duration::from_secs(60) {
            return Err("the consumers received nothing within 60 s".into());
        }
    }
    receiver.wait_all(0..seq, 60).await?;
    crate::relay::wait_delivered(std::slice::from_ref(relay), seq as u64, None).await?;
    wait_handled(handler, seq as u64).await?;
    let base_delivered = relay.stats().delivered;
    let base_handled = handled(handler);
    finished.lock().unwrap().clear();
    let first = seq;

    let watcher = {
        let relay = Arc::clone(relay);
        let mut counters: Vec<Box<dyn Fn() -> u64 + Send>> =
            vec![Box::new(move || relay.stats().delivered)];
        if let Some(h) = handler {
            let h = Arc::clone(h);
            counters.push(Box::new(move || h.stats().handled));
        }
        Watcher::start(counters)
    };

    let commits = config.latency.as_secs() * config.latency_rate;
    progress.phase(format!(
        "{mode}: {commits} commits at {}/s",
        config.latency_rate
    ));
    let mut committed_at = Vec::with_capacity(commits as usize);
    for i in 0..commits {
        ticks.tick().await;
        committed_at.push(commit(first + i as i64).await?);
        progress.count(i + 1, commits);
    }
    let last = first + commits as i64;
    let drained = async {
        crate::relay::wait_delivered(std::slice::from_ref(relay), base_delivered + commits, None)
            .await?;
        receiver.wait_all(first..last, 60).await?;
        wait_handled(handler, base_handled + commits).await
    }
    .await;
    // Let the watcher see the last changes.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let marks = watcher.stop()?;
    drained?;

    let mut samples = Samples::default();
    let delivered_at = reached(&marks[0], base_delivered, committed_at.len())?;
    for (done, at) in delivered_at.iter().zip(&committed_at) {
        samples.relay.push((done - at) as f64 / 1000.0);
    }
    for (k, at) in committed_at.iter().enumerate() {
        let (got, _) = receiver
            .received(first + k as i64)
            .ok_or("a message went missing")?;
        samples.consumer.push((got - at) as f64 / 1000.0);
    }
    if handler.is_some() {
        // The k-th handler body to finish is taken as committed when `handled` reaches k.
        let mut finished = std::mem::take(&mut *finished.lock().unwrap());
        finished.sort_by_key(|(_, at)| *at);
        let committed = reached(&marks[1], base_handled, finished.len())?;
        for ((seq, _), done) in finished.iter().zip(committed) {
            let k = (seq - first) as usize;
            if let Some(at) = committed_at.get(k) {
                samples.end_to_end.push((done - at) as f64 / 1000.0);
            }
        }
    }
    receiver.stop().await?;
    Ok(samples)
}

async fn wait_handled(handler: Option<&Arc<RunningHandler>>, n: u64) -> Result<()> {
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
