//! The outbox relay: delivers committed outbox rows to Kafka, then deletes them.
//!
//! Per outbox table, one task loops: claim a batch (lowest ids first, only from buckets
//! this instance owns, skipping keys that have a row backing off), produce the rows in
//! order with the idempotent producer, wait for every acknowledgement, delete the
//! delivered rows and give failed rows an exponential backoff. A row is deleted only after
//! the broker acknowledged it, so a crash at any point means redelivery, never loss.
//!
//! Several instances may run on one database (PostgreSQL): each owns a fair share of the
//! 64 key-hash buckets through lease rows in `kafka_orm_relay_leases`, renewed every
//! second and lost when not renewed (an instance that dies frees its buckets after the
//! lease TTL; one that stops gracefully frees them at once). Rows are only claimed from
//! buckets whose lease is valid at the moment of the claim. One key hashes to one bucket,
//! so no key is ever delivered by two instances at once, and buckets change hands only
//! between batches, so a key's order survives a hand-over. [`OutboxRelayBuilder::single_node`]
//! skips leases (the only mode on SQLite, which has one relay).
//!
//! On PostgreSQL the relay `LISTEN`s for the `NOTIFY` that `publish` sends on commit and
//! wakes at once; it also polls, as a fallback.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{BUCKETS, NOTIFY_CHANNEL, decode_headers, now_ms, placeholders, table_of};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::producer::{MESSAGE_ID_HEADER, TYPE_HEADER};
use crate::topic::TopicSpec;

/// Table holding the bucket leases of relay instances (PostgreSQL).
pub const LEASE_TABLE: &str = "kafka_orm_relay_leases";

/// Table where live relay instances announce themselves, so that each can compute its
/// fair share of buckets (PostgreSQL).
pub const MEMBER_TABLE: &str = "kafka_orm_relay_members";

/// The database clock in epoch milliseconds, so lease expiry never depends on the
/// relay machines' clocks agreeing.
const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Configures and starts an outbox relay; get one with [`KafkaOrm::outbox_relay`].
#[derive(Debug, Clone)]
#[must_use = "call `.spawn()` to start the relay"]
pub struct OutboxRelayBuilder {
    orm: KafkaOrm,
    batch_size: usize,
    poll_interval: Duration,
    backoff: Duration,
    max_backoff: Duration,
    single_node: Option<bool>,
    lease_ttl: Duration,
    lease_interval: Duration,
    listen: bool,
    instance_id: String,
}

impl KafkaOrm {
    /// A relay delivering the outboxes of every registered `outbox` topic.
    pub fn outbox_relay(&self) -> OutboxRelayBuilder {
        OutboxRelayBuilder {
            orm: self.clone(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
            single_node: None,
            lease_ttl: Duration::from_secs(15),
            lease_interval: Duration::from_secs(1),
            listen: true,
            instance_id: uuid::Uuid::now_v7().to_string(),
        }
    }
}

impl OutboxRelayBuilder {
    /// Rows claimed and produced per batch (default 500).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// How often the relay looks for rows without a wake-up (default 500 ms; it is the
    /// only trigger on SQLite and when `LISTEN` is off).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Backoff of a failed row: `base * 2^(attempts-1)`, capped at `max` (defaults 200 ms
    /// and 60 s), with ±20 % jitter. Only that row's key waits; other keys go on.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// Runs without leases, owning every bucket: for one relay per database. The default
    /// on SQLite; on PostgreSQL the default is leased, safe with any number of instances.
    pub fn single_node(mut self) -> Self {
        self.single_node = Some(true);
        self
    }

    /// Lease time-to-live and renewal interval (defaults 15 s and 1 s). An instance that
    /// dies hands its buckets over after `ttl`.
    pub fn leases(mut self, ttl: Duration, renew_every: Duration) -> Self {
        self.lease_ttl = ttl;
        self.lease_interval = renew_every.min(ttl / 3);
        self
    }

    /// Whether to `LISTEN` for commit notifications on PostgreSQL (default yes). Off,
    /// the relay only polls.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// The instance name in the lease table (default: a fresh UUID).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Starts one task per outbox table (and one listener on PostgreSQL).
    ///
    /// Fails when the context has no database or no topic has an outbox.
    pub fn spawn(self) -> Result<OutboxRelay> {
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
        let backend = db.get_database_backend();
        let leased = backend == DatabaseBackend::Postgres && self.single_node != Some(true);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let mut wakers = HashMap::new();
        let mut tasks = Vec::new();
        for spec in specs {
            let wake = Arc::new(Notify::new());
            wakers.insert(table_of(spec).to_string(), Arc::clone(&wake));
            let worker = Worker {
                orm: self.orm.clone(),
                db: db.clone(),
                backend,
                spec,
                table: table_of(spec),
                topic: self.orm.topic_name(spec),
                config: self.clone(),
                leased,
                wake,
                stopped: stopped.clone(),
                shared: Arc::clone(&shared),
                window: std::sync::atomic::AtomicUsize::new(4),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        if backend == DatabaseBackend::Postgres && self.listen {
            tasks.push(tokio::spawn(listen(
                db,
                wakers,
                self.poll_interval,
                stopped,
                Arc::clone(&shared),
            )));
        }
        Ok(OutboxRelay {
            stop,
            tasks,
            shared,
        })
    }
}

#[derive(Default)]
struct Shared {
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_error: Mutex<Option<String>>,
    listening: std::sync::atomic::AtomicBool,
    owned: Mutex<HashMap<&'static str, usize>>,
}

impl Shared {
    fn error(&self, what: String) {
        tracing::warn!(error = %what, "kafka-orm outbox relay");
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(what);
        }
    }
}

/// A running relay. [`OutboxRelay::shutdown`] stops it after the batches in flight are
/// delivered and recorded; dropping it stops it the same way, in the background.
pub struct OutboxRelay {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// Counters of one relay instance since it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStats {
    /// Rows delivered and deleted.
    pub delivered: u64,
    /// Failed delivery attempts (each backs its row off).
    pub failed: u64,
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
        use std::sync::atomic::Ordering::Relaxed;
        RelayStats {
            delivered: self.shared.delivered.load(Relaxed),
            failed: self.shared.failed.load(Relaxed),
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
    /// tasks, at most `timeout`; what is still running then is aborted (its rows are
    /// delivered again later: nothing is lost).
    pub async fn shutdown(mut self, timeout: Duration) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(timeout, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
    }

    /// Kills the relay at once, mid-batch if need be, as a crash would (for tests and
    /// emergencies): undeleted rows are redelivered by the next relay.
    pub fn abort(mut self) {
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

/// One claimed row.
struct Row {
    id: i64,
    message_id: String,
    key: Option<String>,
    payload: Vec<u8>,
    headers: Vec<u8>,
    attempts: i32,
}

struct Worker {
    orm: KafkaOrm,
    db: DatabaseConnection,
    backend: DatabaseBackend,
    spec: &'static TopicSpec,
    table: &'static str,
    topic: String,
    config: OutboxRelayBuilder,
    leased: bool,
    wake: Arc<Notify>,
    stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
    /// The claim window, in batches (see [`Worker::claim`]).
    window: std::sync::atomic::AtomicUsize,
}

impl Worker {
    async fn run(mut self) {
        let mut owned: Vec<i32> = if self.leased {
            Vec::new()
        } else {
            (0..BUCKETS).collect()
        };
        let mut next_lease = Instant::now();
        let mut error_streak = 0u32;
        while !*self.stopped.borrow() {
            if self.leased && Instant::now() >= next_lease {
                match self.maintain_leases().await {
                    Ok(now_owned) => owned = now_owned,
                    Err(e) => {
                        owned.clear();
                        self.shared.error(e.to_string());
                    }
                }
                next_lease = Instant::now() + self.config.lease_interval;
            }
            if let Ok(mut o) = self.shared.owned.lock() {
                o.insert(self.table, owned.len());
            }
            let claimed = if owned.is_empty() {
                Ok(0)
            } else {
                self.batch().await
            };
            match claimed {
                Ok(n) if n > 0 => {
                    error_streak = 0;
                    continue;
                }
                Ok(_) => error_streak = 0,
                Err(e) => {
                    self.shared.error(e.to_string());
                    error_streak = error_streak.saturating_add(1);
                }
            }
            let pause = if error_streak > 0 {
                backoff(
                    self.config.backoff,
                    self.config.max_backoff,
                    error_streak as i32,
                )
            } else {
                self.config.poll_interval
            };
            let until_lease = next_lease.saturating_duration_since(Instant::now());
            let pause = if self.leased {
                pause.min(until_lease)
            } else {
                pause
            };
            tokio::select! {
                _ = self.wake.notified(), if error_streak == 0 => {}
                _ = tokio::time::sleep(pause) => {}
                _ = self.stopped.changed() => {}
            }
        }
        if self.leased {
            let _ = self.release_all().await;
        }
    }

    fn sql(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend, placeholders(self.backend, sql), values)
    }

    fn context(&self, what: &str) -> String {
        format!("{what} (outbox table `{}`)", self.table)
    }

    /// Claims, delivers and records one batch; returns the number of rows claimed.
    async fn batch(&self) -> Result<usize> {
        let rows = self.claim().await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let span = tracing::debug_span!("kafka_orm.relay_batch", table = self.table, rows = n);
        async {
            let (delivered, failed) = self.deliver(rows).await;
            self.record(delivered, failed).await
        }
        .instrument(span)
        .await?;
        Ok(n)
    }

    /// Claims the next batch: the lowest ids that are due, in owned buckets, of keys with
    /// no row backing off.
    ///
    /// The inner query walks the primary key in id order for a bounded window, whatever the
    /// planner believes of the filters (with a plain `ORDER BY id LIMIT` and filters whose
    /// selectivity it cannot know, PostgreSQL chose a sequential scan and a sort of the whole
    /// table: 130 ms per batch at 100k rows). The outer query filters that window. When the
    /// window was full but yielded less than a batch (rows of other instances' buckets or of
    /// blocked keys in front), it is widened, up to 64 batches: at once when nothing at all
    /// was claimable, else from the next claim on.
    async fn claim(&self) -> Result<Vec<Row>> {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            let factor = self.window.load(Relaxed);
            let window = self.config.batch_size * factor;
            let (claimed, scanned) = self.claim_in(window).await?;
            let full_window = scanned >= window;
            if claimed.len() < self.config.batch_size && full_window && factor < 64 {
                self.window.store(factor * 2, Relaxed);
                if claimed.is_empty() {
                    continue;
                }
            } else if claimed.len() == self.config.batch_size && factor > 4 {
                self.window.store(factor / 2, Relaxed);
            }
            return Ok(claimed);
        }
    }

    /// One claim over the lowest `window` due rows; also returns how many rows the window
    /// held (the left join keeps that count when nothing is claimable).
    async fn claim_in(&self, window: usize) -> Result<(Vec<Row>, usize)> {
        let table = self.table;
        let now = now_ms();
        let batch = self.config.batch_size;
        let owner_filter = if self.leased {
            format!(
                "bucket = ANY(ARRAY(SELECT bucket FROM {LEASE_TABLE} WHERE outbox = ? AND owner = ? AND expires_at > {PG_NOW_MS} + 1000)) AND "
            )
        } else {
            String::new()
        };
        let sql = format!(
            "WITH w AS (SELECT id, message_id, message_key, bucket, payload, headers, attempts \
                FROM \"{table}\" WHERE next_attempt_at <= ? ORDER BY id LIMIT {window}), \
             c AS (SELECT COUNT(*) AS scanned FROM w) \
             SELECT c.scanned, x.id, x.message_id, x.message_key, x.payload, x.headers, x.attempts \
             FROM c LEFT JOIN (SELECT * FROM w WHERE {owner_filter}(message_key IS NULL OR message_key NOT IN \
                  (SELECT message_key FROM \"{table}\" WHERE attempts > 0 AND next_attempt_at > ? AND message_key IS NOT NULL)) \
                ORDER BY id LIMIT {batch}) x ON 1 = 1 \
             ORDER BY x.id"
        );
        let mut values: Vec<Value> = vec![now.into()];
        if self.leased {
            values.push(table.into());
            values.push(self.config.instance_id.clone().into());
        }
        values.push(now.into());
        let rows = self
            .db
            .query_all_raw(self.sql(&sql, values))
            .await
            .map_err(|e| Error::db(self.context("claiming rows"), e))?;
        let scanned = rows
            .first()
            .and_then(|r| r.try_get_by_index::<i64>(0).ok())
            .unwrap_or(0)
            .max(0) as usize;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let read = || -> std::result::Result<Option<Row>, sea_orm::DbErr> {
                let Some(id) = r.try_get_by_index::<Option<i64>>(1)? else {
                    return Ok(None);
                };
                Ok(Some(Row {
                    id,
                    message_id: r.try_get_by_index(2)?,
                    key: r.try_get_by_index(3)?,
                    payload: r.try_get_by_index(4)?,
                    headers: r.try_get_by_index(5)?,
                    attempts: r.try_get_by_index(6)?,
                }))
            };
            if let Some(row) =
                read().map_err(|e| Error::db(self.context("reading claimed rows"), e))?
            {
                claimed.push(row);
            }
        }
        Ok((claimed, scanned))
    }

    /// Produces `rows` in id order and waits for every acknowledgement. A row that fails
    /// blocks its key's later rows in the batch (they are not sent), so no key is reordered.
    async fn deliver(&self, rows: Vec<Row>) -> (Vec<i64>, Vec<(Row, String)>) {
        let producer = self.orm.producer();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut in_flight = Vec::with_capacity(rows.len());
        let mut failed = Vec::new();
        for row in rows {
            if let Some(k) = &row.key
                && blocked.contains(k)
            {
                continue;
            }
            let Some(mut headers) = decode_headers(&row.headers) else {
                let err = "the row's headers column is malformed".to_string();
                block(&mut blocked, &row);
                failed.push((row, err));
                continue;
            };
            headers.insert(MESSAGE_ID_HEADER, row.message_id.as_str());
            headers.insert(TYPE_HEADER, self.spec.type_name);
            let native = headers.to_rdkafka();
            let mut enqueued = None;
            let mut error = None;
            for _ in 0..10_000 {
                let mut record = FutureRecord::to(&self.topic)
                    .payload(&row.payload)
                    .headers(native.clone());
                if let Some(k) = &row.key {
                    record = record.key(k.as_bytes());
                }
                match producer.send_result(record) {
                    Ok(future) => {
                        enqueued = Some(future);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            match enqueued {
                Some(future) => in_flight.push((row, future)),
                None => {
                    block(&mut blocked, &row);
                    let err = error.unwrap_or_else(|| "the producer queue stayed full".into());
                    failed.push((row, err));
                }
            }
        }
        let mut delivered = Vec::with_capacity(in_flight.len());
        for (row, future) in in_flight {
            match future.await {
                Ok(Ok(_)) => delivered.push(row.id),
                Ok(Err((e, _))) => failed.push((row, e.to_string())),
                Err(_) => failed.push((row, "the producer was dropped".into())),
            }
        }
        (delivered, failed)
    }

    /// Deletes delivered rows and backs failed rows off.
    async fn record(&self, delivered: Vec<i64>, failed: Vec<(Row, String)>) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        for chunk in delivered.chunks(1000) {
            // The ids travel as one text parameter, so the statement text never changes
            // and stays prepared.
            let ids = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let sql = match self.backend {
                DatabaseBackend::Postgres => format!(
                    "DELETE FROM \"{}\" WHERE id = ANY(string_to_array($1, ',')::bigint[])",
                    self.table
                ),
                _ => format!(
                    "DELETE FROM \"{}\" WHERE id IN (SELECT value FROM json_each('[' || ? || ']'))",
                    self.table
                ),
            };
            self.db
                .execute_raw(Statement::from_sql_and_values(
                    self.backend,
                    sql,
                    [ids.into()],
                ))
                .await
                .map_err(|e| Error::db(self.context("deleting delivered rows"), e))?;
            self.shared.delivered.fetch_add(chunk.len() as u64, Relaxed);
        }
        for (row, error) in failed {
            let attempts = row.attempts.saturating_add(1);
            let wait = backoff(self.config.backoff, self.config.max_backoff, attempts);
            self.shared.failed.fetch_add(1, Relaxed);
            self.shared.error(format!(
                "row {} (key {:?}) of `{}` failed attempt {attempts}: {error}; retrying in {wait:?}",
                row.id, row.key, self.table
            ));
            let sql = format!(
                "UPDATE \"{}\" SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                self.table
            );
            let next = now_ms() + wait.as_millis() as i64;
            self.db
                .execute_raw(self.sql(
                    &sql,
                    vec![attempts.into(), next.into(), error.into(), row.id.into()],
                ))
                .await
                .map_err(|e| Error::db(self.context("recording a failed row"), e))?;
        }
        Ok(())
    }

    /// Renews this instance's leases, gives back buckets above its fair share and takes
    /// free or expired ones up to it. Returns the buckets owned now.
    async fn maintain_leases(&self) -> Result<Vec<i32>> {
        let me = self.config.instance_id.clone();
        let table = self.table;
        let ttl = self.config.lease_ttl.as_millis() as i64;
        let ctx = || self.context("maintaining relay leases");
        let buckets = |rows: Vec<sea_orm::QueryResult>| -> Result<Vec<i32>> {
            rows.iter()
                .map(|r| r.try_get_by_index::<i32>(0))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::db(ctx(), e))
        };
        let renew = format!(
            "UPDATE {LEASE_TABLE} SET expires_at = {PG_NOW_MS} + ? \
             WHERE outbox = ? AND owner = ? AND expires_at > {PG_NOW_MS} RETURNING bucket"
        );
        let rows = self
            .db
            .query_all_raw(self.sql(&renew, vec![ttl.into(), table.into(), me.clone().into()]))
            .await
            .map_err(|e| Error::db(ctx(), e))?;
        let mut owned = buckets(rows)?;
        owned.sort_unstable();

        // Announce this instance and count the live ones (dead ones age out).
        let heartbeat = format!(
            "INSERT INTO {MEMBER_TABLE} (outbox, owner, expires_at) VALUES (?, ?, {PG_NOW_MS} + ?) \
             ON CONFLICT (outbox, owner) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        );
        self.db
            .execute_raw(self.sql(
                &heartbeat,
                vec![table.into(), me.clone().into(), ttl.into()],
            ))
            .await
            .map_err(|e| Error::db(ctx(), e))?;
        let members = format!(
            "SELECT COUNT(*) FROM {MEMBER_TABLE} WHERE outbox = ? AND expires_at > {PG_NOW_MS}"
        );
        let members: i64 = self
            .db
            .query_one_raw(self.sql(&members, vec![table.into()]))
            .await
            .map_err(|e| Error::db(ctx(), e))?
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()
            .map_err(|e| Error::db(ctx(), e))?
            .unwrap_or(1);
        let fair = (BUCKETS as usize).div_ceil(members.max(1) as usize);

        if owned.len() > fair {
            let give_back: Vec<i32> = owned.split_off(fair);
            let list = give_back
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let release = format!(
                "UPDATE {LEASE_TABLE} SET owner = NULL, expires_at = 0 \
                 WHERE outbox = ? AND owner = ? AND bucket IN ({list})"
            );
            self.db
                .execute_raw(self.sql(&release, vec![table.into(), me.clone().into()]))
                .await
                .map_err(|e| Error::db(ctx(), e))?;
        } else if owned.len() < fair {
            let want = (fair - owned.len()) as i64;
            let acquire = format!(
                "UPDATE {LEASE_TABLE} SET owner = ?, expires_at = {PG_NOW_MS} + ? \
                 WHERE outbox = ? AND bucket IN (SELECT bucket FROM {LEASE_TABLE} \
                   WHERE outbox = ? AND (owner IS NULL OR expires_at <= {PG_NOW_MS}) \
                   ORDER BY bucket LIMIT ? FOR UPDATE SKIP LOCKED) \
                 RETURNING bucket"
            );
            let rows = self
                .db
                .query_all_raw(self.sql(
                    &acquire,
                    vec![
                        me.into(),
                        ttl.into(),
                        table.into(),
                        table.into(),
                        want.into(),
                    ],
                ))
                .await
                .map_err(|e| Error::db(ctx(), e))?;
            owned.extend(buckets(rows)?);
            owned.sort_unstable();
        }
        Ok(owned)
    }

    async fn release_all(&self) -> Result<()> {
        for sql in [
            format!(
                "UPDATE {LEASE_TABLE} SET owner = NULL, expires_at = 0 WHERE outbox = ? AND owner = ?"
            ),
            format!("DELETE FROM {MEMBER_TABLE} WHERE outbox = ? AND owner = ?"),
        ] {
            self.db
                .execute_raw(self.sql(
                    &sql,
                    vec![self.table.into(), self.config.instance_id.clone().into()],
                ))
                .await
                .map_err(|e| Error::db(self.context("releasing relay leases"), e))?;
        }
        Ok(())
    }
}

fn block(blocked: &mut HashSet<String>, row: &Row) {
    if let Some(k) = &row.key {
        blocked.insert(k.clone());
    }
}

/// `base * 2^(attempt-1)`, capped at `max`, with ±20 % jitter.
fn backoff(base: Duration, max: Duration, attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 30) as u32 - 1;
    let raw = base.saturating_mul(1u32 << exp.min(20)).min(max);
    let jitter = (now_ms() as u64 ^ (attempt as u64).wrapping_mul(0x9e37_79b9)) % 41;
    raw.mul_f64(0.8 + jitter as f64 / 100.0).min(max)
}

/// Wakes the table workers when a publishing transaction commits (PostgreSQL
/// `LISTEN`); reconnects after failures, while the workers keep polling.
async fn listen(
    db: DatabaseConnection,
    wakers: HashMap<String, Arc<Notify>>,
    retry: Duration,
    mut stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    use sea_orm::sqlx::postgres::PgListener;
    use std::sync::atomic::Ordering::Relaxed;
    while !*stopped.borrow() {
        let pool = db.get_postgres_connection_pool().clone();
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                shared.error(format!("cannot LISTEN for outbox commits: {e}; polling"));
                tokio::select! {
                    _ = tokio::time::sleep(retry) => continue,
                    _ = stopped.changed() => break,
                }
            }
        };
        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
            shared.error(format!("cannot LISTEN on `{NOTIFY_CHANNEL}`: {e}; polling"));
            tokio::time::sleep(retry).await;
            continue;
        }
        shared.listening.store(true, Relaxed);
        // Anything committed while we were not listening is picked up now.
        wakers.values().for_each(|w| w.notify_one());
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(n) => {
                        if let Some(w) = wakers.get(n.payload()) {
                            w.notify_one();
                        }
                    }
                    Err(e) => {
                        shared.error(format!("LISTEN connection lost: {e}; reconnecting"));
                        break;
                    }
                },
                _ = stopped.changed() => break,
            }
        }
        shared.listening.store(false, Relaxed);
    }
}

/// The outbox of one topic as the database has it now (all relay instances together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStatus {
    /// The Rust type.
    pub type_name: &'static str,
    /// The outbox table.
    pub table: &'static str,
    /// Rows waiting for delivery.
    pub backlog: u64,
    /// Age of the oldest waiting row.
    pub oldest_age: Option<Duration>,
    /// Rows that failed at least once, lowest id first (at most 20), with their errors.
    pub failing: Vec<FailingRow>,
}

/// A row that failed delivery and is backing off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingRow {
    /// Row id.
    pub id: i64,
    /// Message key.
    pub key: Option<String>,
    /// Failed attempts so far.
    pub attempts: i32,
    /// When it is tried next, epoch ms.
    pub next_attempt_at_ms: i64,
    /// The last error.
    pub last_error: Option<String>,
}

impl KafkaOrm {
    /// Backlog, oldest age and failing rows of every outbox table.
    pub async fn outbox_status(&self) -> Result<Vec<OutboxStatus>> {
        let db = self.database().ok_or(Error::NoDatabase {
            operation: "outbox_status",
            topic: "(all outbox topics)",
        })?;
        let backend = db.get_database_backend();
        let mut out = Vec::new();
        for spec in self.topics().iter().filter(|s| s.outbox.is_some()) {
            let table = table_of(spec);
            let ctx = || format!("reading the status of outbox table `{table}`");
            let summary = db
                .query_one_raw(Statement::from_string(
                    backend,
                    format!("SELECT COUNT(*), MIN(created_at) FROM \"{table}\""),
                ))
                .await
                .map_err(|e| Error::db(ctx(), e))?;
            let (backlog, oldest) = match summary {
                Some(r) => (
                    r.try_get_by_index::<i64>(0)
                        .map_err(|e| Error::db(ctx(), e))?,
                    r.try_get_by_index::<Option<i64>>(1)
                        .map_err(|e| Error::db(ctx(), e))?,
                ),
                None => (0, None),
            };
            let failing = db
                .query_all_raw(Statement::from_string(
                    backend,
                    format!(
                        "SELECT id, message_key, attempts, next_attempt_at, last_error FROM \"{table}\" \
                         WHERE attempts > 0 ORDER BY id LIMIT 20"
                    ),
                ))
                .await
                .map_err(|e| Error::db(ctx(), e))?
                .iter()
                .map(|r| {
                    Ok(FailingRow {
                        id: r.try_get_by_index(0)?,
                        key: r.try_get_by_index(1)?,
                        attempts: r.try_get_by_index(2)?,
                        next_attempt_at_ms: r.try_get_by_index(3)?,
                        last_error: r.try_get_by_index(4)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, sea_orm::DbErr>>()
                .map_err(|e| Error::db(ctx(), e))?;
            out.push(OutboxStatus {
                type_name: spec.type_name,
                table,
                backlog: backlog.max(0) as u64,
                oldest_age: oldest.map(|c| Duration::from_millis((now_ms() - c).max(0) as u64)),
                failing,
            });
        }
        Ok(out)
    }
}
