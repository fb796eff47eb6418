//! The outbox relay: delivers committed outbox rows to Kafka, then deletes them.
//!
//! Per outbox table, one task runs a pipeline (`outbox/pipeline.rs`): claim a batch
//! (`outbox/claim.rs`: the lowest due ids of each bucket this instance holds, skipping keys
//! that have a row backing off) → deliver it in a task of its own (`outbox/deliver.rs`: in
//! order, with the idempotent producer, inside the lease's time bounds) → record (back off
//! what failed, then delete what the broker acknowledged, in the background). While one
//! batch awaits its acknowledgements the next is claimed beside it, leaving alone the keys
//! and rows still in flight (`outbox/inflight.rs`), so a failing row still blocks its
//! key's later rows and per-key order holds across batches. A row is deleted only after
//! the broker acknowledged it, so a crash at any point means redelivery, never loss.
//!
//! Several instances may run on one database (PostgreSQL): each holds a fair share of the
//! 64 key-hash buckets through leases (`outbox/lease.rs`) renewed by a task of its
//! own, independently of batches. A lease carries a fencing epoch that the claim, delete
//! and back-off statements check (each batch's with the epochs it was claimed in), the
//! relay produces only within time bounds that end before the lease can pass on, and a
//! bucket is released only once no batch in flight holds it, so **at most one instance
//! delivers a bucket at any moment**, whatever stalls (a broker outage, a frozen process,
//! a lost database). One key hashes to one bucket, so a key's order survives hand-overs.
//! Records carry the `kafka-orm-relay-epoch` header (`<bucket>:<epoch>`), so the
//! hand-overs are visible on the topic. [`OutboxRelayBuilder::single_node`] skips leases
//! (the only mode on SQLite, which has one relay).
//!
//! On PostgreSQL the relay `LISTEN`s for the `NOTIFY` that `publish` sends on commit and
//! wakes at once; it also polls, as a fallback.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::health::RelayWatch;
use super::lease::LeaseTiming;
use super::table::Table;
use super::table_of;
use super::worker::Worker;
use crate::backoff::Backoff;
use crate::context::KafkaOrm;
use crate::defaults;
use crate::error::{Error, Result};
use crate::telemetry::metrics::RelayMetrics;
use crate::topic::TopicSpec;

pub use super::lease::{LEASE_TABLE, MEMBER_TABLE};
pub use super::status::{FailingRow, OutboxStatus};

/// Header on every record a leased relay produces: `<bucket>:<epoch>`, the lease tenure
/// it was delivered under. Within a partition, a bucket's epochs never go backwards.
pub const RELAY_EPOCH_HEADER: &str = "kafka-orm-relay-epoch";

/// Configures and starts an outbox relay; get one with [`KafkaOrm::outbox_relay`].
#[derive(Debug, Clone)]
#[must_use = "call `.spawn().await` or `.run_until(shutdown).await` to start the relay"]
pub struct OutboxRelayBuilder {
    pub(super) orm: KafkaOrm,
    pub(super) batch: usize,
    pub(super) poll_interval: Duration,
    pub(super) backoff: Backoff,
    pub(super) transient_backoff: Backoff,
    pub(super) single_node: Option<bool>,
    pub(super) timing: LeaseTiming,
    pub(super) listen: bool,
    pub(super) instance_id: String,
    pub(super) health_max_age: Duration,
    pub(super) shutdown_timeout: Duration,
}

impl KafkaOrm {
    /// A relay delivering the outboxes of every registered `outbox` topic.
    pub fn outbox_relay(&self) -> OutboxRelayBuilder {
        OutboxRelayBuilder {
            orm: self.clone(),
            batch: defaults::RELAY_BATCH,
            poll_interval: defaults::RELAY_POLL_INTERVAL,
            backoff: Backoff::new(defaults::RELAY_BACKOFF, defaults::RELAY_MAX_BACKOFF),
            transient_backoff: Backoff::new(
                defaults::RELAY_BACKOFF,
                defaults::RELAY_MAX_TRANSIENT_BACKOFF,
            ),
            single_node: None,
            timing: LeaseTiming::new(defaults::LEASE_TTL, defaults::LEASE_RENEW),
            listen: true,
            instance_id: uuid::Uuid::now_v7().to_string(),
            health_max_age: defaults::RELAY_HEALTH_MAX_AGE,
            shutdown_timeout: self.shutdown_timeout(),
        }
    }
}

impl OutboxRelayBuilder {
    /// At most `max` rows claimed and produced per batch (default [`defaults::RELAY_BATCH`]).
    /// The relay never waits to fill a batch: it takes what is waiting, up to `max`.
    pub fn batch(mut self, max: usize) -> Self {
        self.batch = max.max(1);
        self
    }

    /// How often the relay looks for rows without a wake-up (default
    /// [`defaults::RELAY_POLL_INTERVAL`]; it is the only trigger on SQLite and when `LISTEN` is off).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Backoff of a failed row: `base * 2^(attempts-1)`, capped at `max` (defaults
    /// [`defaults::RELAY_BACKOFF`], [`defaults::RELAY_MAX_BACKOFF`]), with ±20 % jitter. Only that row's key waits; other keys go on. A row
    /// that failed for a transient reason (the broker unreachable or slow, a leader
    /// change) waits at most `min(max, 1 s)`, so delivery resumes soon after an outage.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(base, max);
        let cap = max.min(defaults::RELAY_MAX_TRANSIENT_BACKOFF);
        self.transient_backoff = Backoff::new(base.min(cap), cap);
        self
    }

    /// Runs without leases, owning every bucket: for one relay per database. The default
    /// on SQLite; on PostgreSQL the default is leased, safe with any number of instances.
    pub fn single_node(mut self) -> Self {
        self.single_node = Some(true);
        self
    }

    /// Lease time-to-live and renewal interval (defaults [`defaults::LEASE_TTL`] and
    /// [`defaults::LEASE_RENEW`]; the interval is at most a third of the TTL). A dead instance's buckets move after `ttl`; one restarted
    /// under the same [`instance_id`](Self::instance_id) takes them back at once. The
    /// relay's producer gets `message.timeout.ms` = `ttl / 3`, and a batch waits for its
    /// acknowledgements at most `ttl / 3 - ttl / 12`: everything produced under a lease is
    /// resolved before the lease can pass to another instance.
    pub fn leases(mut self, ttl: Duration, renew_every: Duration) -> Self {
        self.timing = LeaseTiming::new(ttl, renew_every);
        self
    }

    /// Whether to `LISTEN` for commit notifications on PostgreSQL (default yes). Off,
    /// the relay only polls.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// The instance name in the lease table (default: a fresh UUID). Give each relay
    /// process a stable name (e.g. the pod name) so a restarted process takes its buckets
    /// back at once instead of after the lease TTL. Two live processes with one name are
    /// detected (a session lock per name) and then wait for expiry like strangers.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// [`OutboxRelay::health`] is degraded while the oldest waiting row (sampled every
    /// [`metrics_interval`](crate::KafkaOrmBuilder::metrics_interval)) is older than `age`
    /// (default [`defaults::RELAY_HEALTH_MAX_AGE`]).
    pub fn health_max_age(mut self, age: Duration) -> Self {
        self.health_max_age = age;
        self
    }

    /// How long [`OutboxRelay::shutdown`] waits for the batches in flight (default: the
    /// context's [`shutdown_timeout`](crate::KafkaOrmBuilder::shutdown_timeout)).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Runs the relay until `shutdown` completes, then shuts it down gracefully; returns
    /// the final counters.
    pub async fn run_until<S: Future<Output = ()>>(self, shutdown: S) -> Result<RelayStats> {
        let relay = self.spawn().await?;
        shutdown.await;
        relay.shutdown().await
    }

    /// Starts one task per outbox table (plus its lease keeper, and one listener on
    /// PostgreSQL), and the backlog sampler.
    ///
    /// Fails when the context has no database, no topic has an outbox, or a producer
    /// cannot be created.
    pub async fn spawn(self) -> Result<OutboxRelay> {
        let (db, specs) = self.outbox_tables()?;
        let backend = db.get_database_backend();
        let leased = backend == DatabaseBackend::Postgres && self.single_node != Some(true);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let (name_tx, name_locked) = watch::channel(false);
        let mut tasks = Vec::new();
        if leased {
            tasks.push(tokio::spawn(super::name_lock::hold_name_lock(
                db.clone(),
                self.instance_id.clone(),
                name_tx,
                stopped.clone(),
                self.timing.renew_every,
            )));
        }
        let start = Start {
            db: db.clone(),
            leased,
            stopped: stopped.clone(),
            shared: Arc::clone(&shared),
            name_locked,
        };
        let mut wakers = HashMap::new();
        let mut sampled = Vec::new();
        for spec in specs {
            let worker = self.worker(spec, &start)?;
            wakers.insert(worker.table.table.to_string(), Arc::clone(&worker.wake));
            sampled.push((worker.table.table, worker.table.metrics.clone()));
            tasks.push(tokio::spawn(worker.run()));
        }
        let watch = RelayWatch {
            orm: self.orm.clone(),
            db: db.clone(),
            leased,
            listens: backend == DatabaseBackend::Postgres && self.listen,
            tables: sampled.iter().map(|(t, _)| *t).collect(),
            backlog: Arc::default(),
            max_age: self.health_max_age,
        };
        tasks.push(tokio::spawn(super::backlog::sample(
            db.clone(),
            sampled,
            self.orm.metrics_interval(),
            stopped.clone(),
            Arc::clone(&watch.backlog),
            Arc::clone(&shared),
        )));
        if watch.listens {
            let listen =
                super::listen::listen(db, wakers, self.poll_interval, stopped, Arc::clone(&shared));
            tasks.push(tokio::spawn(listen));
        }
        Ok(OutboxRelay {
            stop,
            tasks,
            shared,
            watch,
            shutdown_timeout: self.shutdown_timeout,
        })
    }

    /// The database and the registered topics with an outbox, or why there is nothing to
    /// relay.
    fn outbox_tables(&self) -> Result<(DatabaseConnection, Vec<&'static TopicSpec>)> {
        let db = self.orm.database().cloned().ok_or(Error::NoDatabase {
            operation: "outbox_relay",
            topic: "(all outbox topics)",
        })?;
        let specs: Vec<&'static TopicSpec> = self
            .orm
            .topics()
            .iter()
            .copied()
            .filter(|s| s.outbox.is_some())
            .collect();
        if specs.is_empty() {
            return Err(Error::Config(
                "no registered topic has `outbox`: nothing to relay".into(),
            ));
        }
        Ok((db, specs))
    }

    /// The worker of `spec`'s outbox table, with a producer of its own.
    fn worker(&self, spec: &'static TopicSpec, start: &Start) -> Result<Worker> {
        let table = Table {
            config: self.clone(),
            db: start.db.clone(),
            backend: start.db.get_database_backend(),
            spec,
            table: table_of(spec),
            topic: self.orm.topic_name(spec),
            producer: self.producer(None)?,
            batch_limit: None,
            batch_size: self.batch,
            leased: start.leased,
            me: self.instance_id.clone(),
            timing: self.timing,
            metrics: RelayMetrics::new(table_of(spec), &self.orm.topic_name(spec)),
        };
        Ok(Worker {
            table,
            config: self.clone(),
            wake: Arc::new(Notify::new()),
            stopped: start.stopped.clone(),
            shared: Arc::clone(&start.shared),
            name_locked: start.name_locked.clone(),
        })
    }

    /// A producer of the relay's own (per table: a purge never touches another table's
    /// batch), with `message.timeout.ms` inside the lease bounds, and the gapless guarantee:
    /// an error that could leave a hole in a partition (a rejected batch, e.g. one holding
    /// an oversized row, while later batches are in flight) stops the producer instead of
    /// letting later rows through; the relay then starts a new one and retries in order.
    /// Requests time out within the same bound, and metadata is refreshed every second, so
    /// a frozen leader's partitions move to their new leader within seconds.
    pub(super) fn producer(&self, batch_limit: Option<usize>) -> Result<FutureProducer> {
        let mut cfg = self.orm.producer_config();
        if let Some(limit) = batch_limit {
            // librdkafka does not split a batch the broker finds too large (Java's producer
            // does): keep its batches within the topic's `max.message.bytes`.
            cfg.set(
                "batch.size",
                limit.saturating_sub(512).max(1024).to_string(),
            );
        }
        let bound = self.timing.message_timeout.as_millis().to_string();
        cfg.set("message.timeout.ms", &bound)
            .set("enable.gapless.guarantee", "true")
            // A request to a frozen leader must not hold its partition for librdkafka's
            // 30 s: in-flight requests are drained before a partition moves to its new
            // leader, so they time out within the lease bound too; and the new leader is
            // learnt within a second.
            .set("request.timeout.ms", &bound)
            .set("topic.metadata.refresh.interval.ms", "1000");
        cfg.create()
            .map_err(|e| Error::kafka("creating the outbox relay's producer", e))
    }
}

/// Counters and state shared by a relay's tasks.
#[derive(Default)]
pub(crate) struct Shared {
    pub(super) acknowledged: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) fenced: AtomicU64,
    last_error: Mutex<Option<String>>,
    pub(crate) listening: AtomicBool,
    /// Set by [`OutboxRelay::abort`]: behave as a crash, release nothing.
    pub(crate) aborted: AtomicBool,
    owned: Mutex<HashMap<&'static str, usize>>,
    /// The last lease round's error per table (none after a round that worked).
    lease_errors: Mutex<HashMap<&'static str, String>>,
}

impl Shared {
    pub(crate) fn error(&self, what: String) {
        tracing::warn!(error = %what, "kafka-orm outbox relay");
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(what);
        }
    }

    pub(crate) fn set_owned(&self, table: &'static str, n: usize) {
        if let Ok(mut o) = self.owned.lock() {
            o.insert(table, n);
        }
    }

    /// Buckets of `table` this instance owns.
    pub(crate) fn owned_of(&self, table: &str) -> usize {
        self.owned
            .lock()
            .map(|o| o.get(table).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Records how the last lease round of `table` went.
    pub(crate) fn lease_round(&self, table: &'static str, error: Option<String>) {
        if let Ok(mut errors) = self.lease_errors.lock() {
            match error {
                Some(e) => errors.insert(table, e),
                None => errors.remove(table),
            };
        }
    }

    /// The last lease round's error of `table`, if it failed.
    pub(crate) fn lease_error(&self, table: &str) -> Option<String> {
        self.lease_errors.lock().ok()?.get(table).cloned()
    }
}

/// What every table's worker of one relay shares.
struct Start {
    db: DatabaseConnection,
    leased: bool,
    stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
    name_locked: watch::Receiver<bool>,
}

/// A running relay. [`OutboxRelay::shutdown`] stops it after the batches in flight are
/// delivered and recorded; dropping it stops it the same way, in the background.
pub struct OutboxRelay {
    stop: watch::Sender<bool>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) watch: RelayWatch,
    shutdown_timeout: Duration,
}

/// Counters of one relay instance since it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStats {
    /// Rows the broker acknowledged (counted at the acknowledgement, before the delete).
    pub acknowledged: u64,
    /// Rows delivered and deleted.
    pub delivered: u64,
    /// Failed delivery attempts (each backs its row off).
    pub failed: u64,
    /// Delivered rows whose delete was refused because the lease had passed on (another
    /// instance delivers them again).
    pub fenced: u64,
    /// The last error the relay logged (database, broker or row), if any.
    pub last_error: Option<String>,
    /// Whether the PostgreSQL `LISTEN` connection is up (false: polling only).
    pub listening: bool,
    /// Key-hash buckets this instance owns now, over all outbox tables (each table has
    /// 64; a single-node relay owns them all).
    pub owned_buckets: usize,
}

impl OutboxRelay {
    /// Counters and the last error of this instance.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            acknowledged: self.shared.acknowledged.load(Relaxed),
            delivered: self.shared.delivered.load(Relaxed),
            failed: self.shared.failed.load(Relaxed),
            fenced: self.shared.fenced.load(Relaxed),
            last_error: self.shared.last_error.lock().ok().and_then(|e| e.clone()),
            listening: self.shared.listening.load(Relaxed),
            owned_buckets: self
                .shared
                .owned
                .lock()
                .map(|o| o.values().sum())
                .unwrap_or(0),
        }
    }

    /// Stops claiming, finishes the batches in flight, releases leases and waits for the
    /// tasks, at most the builder's [`shutdown_timeout`](OutboxRelayBuilder::shutdown_timeout);
    /// what is still running then is aborted (its rows are delivered again later: nothing
    /// is lost). Returns the final counters.
    pub async fn shutdown(mut self) -> Result<RelayStats> {
        let timeout = self.shutdown_timeout;
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(timeout, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        Ok(self.stats())
    }

    /// Kills the relay at once, mid-batch if need be, as a crash would (for tests and
    /// emergencies): undeleted rows are redelivered by the next relay.
    pub fn abort(mut self) {
        // Before the tasks are cancelled: one that sees the stop signal `Drop` sends first
        // must not release its leases.
        self.shared.aborted.store(true, Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
        }
    }
}

impl Drop for OutboxRelay {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("stats", &self.stats())
            .finish()
    }
}
