//! `relay_latency` and `outbox_to_consumer_latency`: a steady light load (200 commits/s),
//! one event per transaction, and how long each takes to get through.
//!
//! How it is measured (one process, one clock):
//! - commit time: when `txn.commit()` returned for the event (the event's `seq`, carried in
//!   its payload, finds it);
//! - `relay_latency`: commit → the relay recorded the delivery, i.e. the broker acknowledged
//!   the row and the relay deleted it. A thread samples `relay.stats().delivered` every
//!   ~0.2 ms; with one sequential publisher and one relay, rows are delivered in commit
//!   order, so the k-th commit is delivered when the counter reaches k. Run with `LISTEN/
//!   NOTIFY` and with polling only (`.listen(false)`, default 500 ms poll interval).
//! - `outbox_to_consumer_latency`: commit → the typed consumer stream (`consume()`) in
//!   this process yielded the event (NOTIFY run).
//! - baselines, same rate and duration: raw rdkafka produce → delivery future resolved
//!   (for `relay_latency`) and raw produce → the same typed consumer yielded it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::OutboxRelay;
use kafka_orm::deps::rdkafka::producer::FutureRecord;
use sea_orm::TransactionTrait;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::Config;
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario, now_us, summary};
use crate::produce::delivered;
use crate::report::{Baseline, Figure, Outcome, Params, Progress};

/// Per-message latencies of one run, in milliseconds.
struct Samples {
    first: Vec<f64>,
    second: Vec<f64>,
    commits: u64,
}

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

    let raw_ack = summary(&mut raw.first);
    let raw_consumer = summary(&mut raw.second);
    let notify_relay = summary(&mut notify.first);
    let notify_consumer = summary(&mut notify.second);
    let polling_relay = summary(&mut polling.first);

    let rows = |name: &'static str,
                mode: &str,
                got: (f64, f64, f64),
                base: (f64, f64, f64),
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
                    .extra("what", what);
                if let Some(Some(limit)) = goals.get(i) {
                    f = f.goal(format!("{stat} <= {limit} ms"), value <= *limit);
                }
                Outcome::measured(name, params, f).variant(format!("{mode} {stat}"))
            })
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    out.extend(rows(
        "relay_latency",
        "NOTIFY",
        notify_relay,
        raw_ack,
        "raw produce->ack",
        [Some(5.0), Some(25.0)],
        "commit returned -> relay counted the row delivered (broker ack + delete); watched via relay.stats()",
    ));
    out.extend(rows(
        "relay_latency",
        "polling",
        polling_relay,
        raw_ack,
        "raw produce->ack",
        [None, None],
        "as NOTIFY, with .listen(false) and the default 500 ms poll interval",
    ));
    out.extend(rows(
        "outbox_to_consumer_latency",
        "NOTIFY",
        notify_consumer,
        raw_consumer,
        "raw produce->consumer",
        [None, None],
        "commit returned -> typed consume() stream yielded the event, same process",
    ));
    for o in &mut out {
        if let Some(f) = match &mut o.result {
            crate::report::Result::Measured(f) => Some(f),
            _ => None,
        } {
            let samples = if o.name == "relay_latency"
                && o.variant.as_deref().unwrap_or("").starts_with("polling")
            {
                polling.commits
            } else {
                notify.commits
            };
            f.extra.insert("samples".into(), samples.into());
        }
    }
    Ok(out)
}

/// A consumer task recording when each `seq` arrived.
struct Receiver {
    seen: Arc<Mutex<HashMap<i64, i64>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Receiver {
    async fn start(sc: &Scenario) -> Result<Self> {
        let mut consumer = sc.orm.topic::<BenchEvent>().consume().await?;
        let seen: Arc<Mutex<HashMap<i64, i64>>> = Arc::default();
        let (stop, mut stopped) = watch::channel(false);
        let task_seen = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let result = loop {
                tokio::select! {
                    d = consumer.next() => match d {
                        Some(Ok(d)) => {
                            let at = now_us();
                            task_seen.lock().unwrap().insert(d.seq, at);
                        }
                        Some(Err(e)) => break Err(e.into()),
                        None => break Ok(()),
                    },
                    _ = stopped.changed() => break Ok(()),
                }
            };
            consumer.close(Duration::from_secs(5)).await?;
            result
        });
        Ok(Receiver { seen, stop, task })
    }

    fn received(&self, seq: i64) -> Option<i64> {
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

fn pacer(rate: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Raw produce at the steady rate: produce → ack, and produce → consumer.
async fn raw_run(config: &Config, sc: &Scenario, progress: &Progress) -> Result<Samples> {
    let producer = sc.infra.raw_producer()?;
    let topic = sc.topic();
    let receiver = Receiver::start(sc).await?;
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
        if (0..seq).any(|s| receiver.received(s).is_some()) && seq >= config.latency_rate as i64 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the consumer received nothing within 60 s".into());
        }
    }
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
    let last = first + commits as i64;
    receiver.wait_all(first..last, 60).await?;
    // The send time is also in the payload (`sent_at_us`); the consumer runs on this
    // process's clock.
    let mut consumer_ms = Vec::with_capacity(commits as usize);
    for (k, sent) in sent_at.iter().enumerate() {
        let got = receiver
            .received(first + k as i64)
            .ok_or("a message went missing")?;
        consumer_ms.push((got - sent) as f64 / 1000.0);
    }
    receiver.stop().await?;
    let first_samples = std::mem::take(&mut *acks.lock().unwrap());
    Ok(Samples {
        first: first_samples,
        second: consumer_ms,
        commits,
    })
}

/// The outbox at the steady rate: commit → relay delivered, and commit → consumer.
async fn outbox_run(
    config: &Config,
    sc: &Scenario,
    listen: bool,
    progress: &Progress,
) -> Result<Samples> {
    let relay = Arc::new(sc.orm.outbox_relay().listen(listen).spawn()?);
    let result = outbox_measure(config, sc, &relay, listen, progress).await;
    if let Ok(relay) = Arc::try_unwrap(relay) {
        relay.shutdown(Duration::from_secs(10)).await;
    }
    result
}

async fn outbox_measure(
    config: &Config,
    sc: &Scenario,
    relay: &Arc<OutboxRelay>,
    listen: bool,
    progress: &Progress,
) -> Result<Samples> {
    let mode = if listen { "NOTIFY" } else { "polling" };
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.stats().owned_buckets < 64 || (listen && !relay.stats().listening) {
        if Instant::now() > deadline {
            return Err(format!("the relay was not ready within 60 s: {:?}", relay.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receiver = Receiver::start(sc).await?;
    let commit = |seq: i64| async move {
        let mut e = BenchEvent::new(seq as u64, config.payload_bytes);
        e.sent_at_us = now_us();
        let txn = sc.db.begin().await?;
        sc.orm.topic::<BenchEvent>().publish(&txn, &e).await?;
        txn.commit().await?;
        Result::Ok(now_us())
    };

    progress.phase(format!("{mode}: warm-up until the consumer sees messages"));
    let mut ticks = pacer(config.latency_rate);
    let mut seq = 0i64;
    loop {
        ticks.tick().await;
        commit(seq).await?;
        seq += 1;
        if seq >= config.latency_rate as i64 && (0..seq).any(|s| receiver.received(s).is_some()) {
            break;
        }
        if Instant::now() > deadline + Duration::from_secs(60) {
            return Err("the consumer received nothing within 60 s".into());
        }
    }
    receiver.wait_all(0..seq, 60).await?;
    crate::relay::wait_delivered(std::slice::from_ref(relay), seq as u64, None).await?;
    let base = relay.stats().delivered;
    let first = seq;

    // Watch the relay's counter from a thread of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let relay = Arc::clone(relay);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut marks: Vec<(u64, i64)> = Vec::new();
            let mut last = u64::MAX;
            while !stop.load(Ordering::Relaxed) {
                let d = relay.stats().delivered;
                if d != last {
                    marks.push((d, now_us()));
                    last = d;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            marks
        })
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
        crate::relay::wait_delivered(std::slice::from_ref(relay), base + commits, None).await?;
        receiver.wait_all(first..last, 60).await
    }
    .await;
    // Let the watcher see the last change.
    tokio::time::sleep(Duration::from_millis(5)).await;
    stop.store(true, Ordering::Relaxed);
    let marks = watcher.join().map_err(|_| "the watcher thread panicked")?;
    drained?;

    let mut relay_ms = Vec::with_capacity(commits as usize);
    let mut mark = marks.iter().peekable();
    for (k, at) in committed_at.iter().enumerate() {
        let needed = base + k as u64 + 1;
        while mark.peek().is_some_and(|(d, _)| *d < needed) {
            mark.next();
        }
        let (_, done) = mark
            .peek()
            .ok_or_else(|| format!("the watcher never saw delivery {needed}"))?;
        relay_ms.push((done - at) as f64 / 1000.0);
    }
    let mut consumer_ms = Vec::with_capacity(commits as usize);
    for (k, at) in committed_at.iter().enumerate() {
        let got = receiver
            .received(first + k as i64)
            .ok_or("a message went missing")?;
        consumer_ms.push((got - at) as f64 / 1000.0);
    }
    receiver.stop().await?;
    Ok(Samples {
        first: relay_ms,
        second: consumer_ms,
        commits,
    })
}
