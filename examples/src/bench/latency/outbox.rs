//! The outbox side of the latency runs: one event per transaction at a steady rate, the
//! relay (LISTEN/NOTIFY or polling only) and, with NOTIFY, the consuming services, in this
//! process or in another one ([`super::apart`]).
//!
//! - commit time: when `txn.commit()` returned for the event (its `seq` finds it);
//! - relay: commit → the relay saw the broker's acknowledgement (`stats().acknowledged`,
//!   sampled every ~0.2 ms by a thread; one sequential publisher and one relay, so the k-th
//!   commit is acknowledged when the counter reaches k);
//! - consumer: commit → the typed `consume()` stream yielded the event;
//! - end to end: commit → the consuming service's handler transaction (inbox row + one
//!   SeaORM insert) committed (the k-th body to finish counts as committed when
//!   `handled` reaches k: exact unless two messages overlap, rare at this load);
//! - NOTIFY: commit → a `LISTEN` connection of the bench's own got the notification (the
//!   k-th notification is the k-th commit's), and `extra.breakdown`: where each batch's
//!   time went inside the relay (see [`crate::breakdown`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::{OutboxRelay, RunningHandler};
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::apart::Apart;
use super::receiver::{
    Finished, Receiver, Watcher, handler_commits, reached, start_handler, wait_handled,
};
use super::{Samples, pacer};
use crate::Config;
use crate::inbox::BUSINESS_TABLE;
use crate::infra::{BenchEvent, Result, Scenario, now_us};
use crate::report::Progress;

/// Where the consuming services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumers {
    /// In this process, beside the relay (and the publisher).
    InProcess,
    /// In a process of their own.
    Apart,
    /// None: the relay polls only.
    Polling,
}

impl Consumers {
    pub fn label(self) -> &'static str {
        match self {
            Consumers::InProcess => "NOTIFY",
            Consumers::Apart => "NOTIFY apart",
            Consumers::Polling => "polling",
        }
    }
}

/// The consuming services of one run.
enum Services {
    Here {
        receiver: Receiver,
        handler: Arc<RunningHandler>,
        finished: Finished,
    },
    There(Box<Apart>),
    Nothing,
}

impl Services {
    async fn start(sc: &Scenario, consumers: Consumers) -> Result<Self> {
        Ok(match consumers {
            Consumers::InProcess => {
                let finished: Finished = Arc::default();
                let handler = Arc::new(start_handler(&sc.orm, &finished).await?);
                let receiver = Receiver::start(&sc.orm, &sc.db, false).await?;
                Services::Here {
                    receiver,
                    handler,
                    finished,
                }
            }
            Consumers::Apart => Services::There(Box::new(Apart::spawn(sc).await?)),
            Consumers::Polling => Services::Nothing,
        })
    }

    /// Whether the consumers have seen messages flow (warm-up done).
    fn ready(&self) -> bool {
        match self {
            Services::Here {
                receiver, handler, ..
            } => !receiver.seen.lock().unwrap().is_empty() && handler.stats().handled > 0,
            Services::There(apart) => apart.ready(),
            Services::Nothing => true,
        }
    }

    fn handler(&self) -> Option<&Arc<RunningHandler>> {
        match self {
            Services::Here { handler, .. } => Some(handler),
            _ => None,
        }
    }
}

/// The outbox at the steady rate (see the module docs).
pub async fn outbox_run(
    config: &Config,
    sc: &Scenario,
    consumers: Consumers,
    progress: &Progress,
) -> Result<Samples> {
    sc.db.execute_unprepared(BUSINESS_TABLE).await?;
    let listen = consumers != Consumers::Polling;
    let relay = Arc::new(sc.orm.outbox_relay().listen(listen).spawn().await?);
    let services = Services::start(sc, consumers).await;
    let result = match services {
        Ok(mut services) => {
            let r = measure(config, sc, &relay, &mut services, consumers, progress).await;
            let stopped = stop(services).await;
            r.and_then(|s| stopped.map(|()| s))
        }
        Err(e) => Err(e),
    };
    if let Ok(relay) = Arc::try_unwrap(relay) {
        relay.shutdown().await?;
    }
    result
}

async fn stop(services: Services) -> Result<()> {
    match services {
        Services::Here {
            receiver, handler, ..
        } => {
            receiver.stop().await?;
            if let Ok(h) = Arc::try_unwrap(handler) {
                h.shutdown().await?;
            }
            Ok(())
        }
        Services::There(apart) => (*apart).kill().await,
        Services::Nothing => Ok(()),
    }
}

/// Commits one event (`seq`) in its own transaction; returns when the commit returned.
async fn commit(config: &Config, sc: &Scenario, seq: i64) -> Result<i64> {
    let mut e = BenchEvent::new(seq as u64, config.payload_bytes);
    e.sent_at_us = now_us();
    let txn = sc.db.begin().await?;
    sc.orm.topic::<BenchEvent>().publish(&txn, &e).await?;
    txn.commit().await?;
    Ok(now_us())
}

async fn measure(
    config: &Config,
    sc: &Scenario,
    relay: &Arc<OutboxRelay>,
    services: &mut Services,
    consumers: Consumers,
    progress: &Progress,
) -> Result<Samples> {
    let mode = consumers.label();
    ready_relay(relay, consumers != Consumers::Polling).await?;
    progress.phase(format!("{mode}: warm-up until the consumers see messages"));
    let mut ticks = pacer(config.latency_rate);
    let mut seq = 0i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seq < config.latency_rate as i64 || !services.ready() {
        ticks.tick().await;
        commit(config, sc, seq).await?;
        seq += 1;
        if Instant::now() > deadline {
            return Err(format!("{mode}: the consumers received nothing within 120 s").into());
        }
    }
    let acked = |r: &OutboxRelay| r.stats().acknowledged;
    crate::relay::wait_delivered(std::slice::from_ref(relay), seq as u64, None).await?;
    if let Services::Here {
        receiver, handler, ..
    } = services
    {
        receiver.wait_all(0..seq, 60).await?;
        wait_handled(Some(handler), seq as u64).await?;
    }
    let first = seq;
    let base = acked(relay);
    let base_handled = services.handler().map_or(0, |h| h.stats().handled);
    if let Services::Here { finished, .. } = services {
        finished.lock().unwrap().clear();
    }
    let notified = match consumers {
        Consumers::Polling => None,
        _ => Some(NotifyWatch::start(sc).await?),
    };
    let watcher = {
        let relay = Arc::clone(relay);
        let mut counters: Vec<super::receiver::Counter> = vec![Box::new(move || acked(&relay))];
        if let Some(h) = services.handler() {
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
    crate::breakdown::reset();
    let mut committed_at = Vec::with_capacity(commits as usize);
    for i in 0..commits {
        ticks.tick().await;
        committed_at.push(commit(config, sc, first + i as i64).await?);
        progress.count(i + 1, commits);
    }
    let drained = drain(
        relay,
        services,
        base + commits,
        first,
        commits,
        base_handled,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await; // the watcher sees the last changes
    let marks = watcher.stop()?;
    let breakdown = crate::breakdown::take();
    drained?;
    let mut samples = Samples::default();
    for (done, at) in reached(&marks[0], base, committed_at.len())?
        .iter()
        .zip(&committed_at)
    {
        samples.relay.push((done - at) as f64 / 1000.0);
    }
    if let Some(n) = notified {
        samples.notify = n.latencies(&committed_at).await?;
        samples.breakdown = breakdown;
    }
    consumed(
        services,
        &marks,
        base_handled,
        first,
        &committed_at,
        &mut samples,
    )
    .await?;
    Ok(samples)
}

/// Waits until the relay owns every bucket and (with NOTIFY) listens.
async fn ready_relay(relay: &OutboxRelay, listen: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.stats().owned_buckets < 64 || (listen && !relay.stats().listening) {
        if Instant::now() > deadline {
            return Err(format!("the relay was not ready within 60 s: {:?}", relay.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits until the measured commits went all the way through.
async fn drain(
    relay: &Arc<OutboxRelay>,
    services: &Services,
    acked: u64,
    first: i64,
    commits: u64,
    base_handled: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.stats().acknowledged < acked {
        if Instant::now() > deadline {
            return Err(format!("the relay acknowledged {:?} of {acked}", relay.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Services::Here { receiver, .. } = services {
        receiver.wait_all(first..first + commits as i64, 60).await?;
        wait_handled(services.handler().map(|h| &**h), base_handled + commits).await?;
    }
    Ok(())
}

/// The consumers' latencies: from this process's marks, or from the other process.
async fn consumed(
    services: &mut Services,
    marks: &[Vec<(u64, i64)>],
    base_handled: u64,
    first: i64,
    committed_at: &[i64],
    samples: &mut Samples,
) -> Result<()> {
    let last = first + committed_at.len() as i64;
    let (seen, committed): super::apart::Report = match services {
        Services::Here {
            receiver, finished, ..
        } => {
            let seen = (first..last)
                .map(|s| receiver.received(s).map(|(got, _)| (s, got)))
                .collect::<Option<Vec<_>>>()
                .ok_or("a message went missing")?;
            let mut finished = std::mem::take(&mut *finished.lock().unwrap());
            let committed = handler_commits(&mut finished, &marks[1], base_handled, first)?;
            (seen, committed)
        }
        Services::There(apart) => apart.report(first, last).await?,
        Services::Nothing => return Ok(()),
    };
    for (seq, got) in seen {
        samples
            .consumer
            .push((got - committed_at[(seq - first) as usize]) as f64 / 1000.0);
    }
    for (k, done) in committed {
        if let Some(at) = committed_at.get(k) {
            samples.end_to_end.push((done - at) as f64 / 1000.0);
        }
    }
    Ok(())
}

/// The bench's own `LISTEN` on the relays' channel: when each notification arrived.
struct NotifyWatch {
    times: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl NotifyWatch {
    /// Listens (returns once `LISTEN` is in place) and records every notification.
    async fn start(sc: &Scenario) -> Result<Self> {
        use sea_orm::sqlx::postgres::PgListener;
        let pool = sc.db.get_postgres_connection_pool().clone();
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(kafka_orm::outbox::NOTIFY_CHANNEL).await?;
        let times: Arc<Mutex<Vec<i64>>> = Arc::default();
        let into = Arc::clone(&times);
        let task = tokio::spawn(async move {
            while listener.recv().await.is_ok() {
                into.lock().unwrap().push(now_us());
            }
        });
        Ok(NotifyWatch { times, task })
    }

    /// Commit → notification per commit (the k-th notification is the k-th commit's).
    async fn latencies(self, committed_at: &[i64]) -> Result<Vec<f64>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.times.lock().unwrap().len() < committed_at.len() {
            if Instant::now() > deadline {
                self.task.abort();
                return Err("the bench's LISTEN missed notifications".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.task.abort();
        let times = self.times.lock().unwrap();
        Ok(times
            .iter()
            .zip(committed_at)
            .map(|(n, c)| (n - c) as f64 / 1000.0)
            .collect())
    }
}
