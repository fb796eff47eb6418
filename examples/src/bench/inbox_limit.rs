//! `inbox_txn_limit`: what PostgreSQL allows for the handler's transaction shape, measured
//! as pgbench would, with no Kafka: `concurrency` tokio tasks in a tight loop on the same
//! connection pool (SeaORM over sqlx, prepared statements), each transaction
//!
//! ```sql
//! BEGIN;
//! INSERT INTO bench_event_inbox (consumer_group, topic, kafka_partition, kafka_offset,
//!     processed_at, dedup_seq) VALUES (..) [, (..) ...] ON CONFLICT DO NOTHING
//!     [RETURNING topic, kafka_partition, kafka_offset];   -- batch: as the runtime's
//! INSERT INTO bench_business (seq, key, sent_at_us, pad) VALUES (..) [, (..) ...];
//! COMMIT;
//! ```
//!
//! with 1 message per transaction (the per-message handler's shape) or `per_txn` (the batch
//! handler's), into the real inbox table `build()` created (its unique index included), the
//! same payloads. A limit, not a competitor: the handler does this and more (consume,
//! decode, dispatch to lanes, offsets), so its ratio to the limit is at most 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use kafka_orm::Topic;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use crate::business::BUSINESS_TABLE;
use crate::infra::{BenchEvent, PARTITIONS, Result, Scenario, summary};

/// One measured limit.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Messages per second.
    pub rate: f64,
    pub secs: f64,
    pub transactions: u64,
    /// Per transaction (BEGIN .. COMMIT), milliseconds.
    pub txn_p50_ms: f64,
    pub txn_p99_ms: f64,
}

impl Limit {
    /// Two runs of the same limit as one: all their messages over all their time.
    pub fn combine(&self, other: &Limit) -> Limit {
        let secs = self.secs + other.secs;
        let messages = self.rate * self.secs + other.rate * other.secs;
        let weight =
            self.transactions as f64 / (self.transactions + other.transactions).max(1) as f64;
        Limit {
            rate: messages / secs,
            secs,
            transactions: self.transactions + other.transactions,
            // Percentiles do not combine; the transaction-weighted mean is close enough.
            txn_p50_ms: self.txn_p50_ms * weight + other.txn_p50_ms * (1.0 - weight),
            txn_p99_ms: self.txn_p99_ms.max(other.txn_p99_ms),
        }
    }
}

/// The inbox columns the runtime writes (`kafka-orm-runtime/src/inbox.rs`), the dedup
/// column last.
const INBOX_COLUMNS: &str =
    "consumer_group, topic, kafka_partition, kafka_offset, processed_at, dedup_seq";

/// Creates the business table when missing and empties both tables.
pub async fn prepare(sc: &Scenario) -> Result<()> {
    let inbox = inbox_table()?;
    sc.db
        .execute_unprepared(&BUSINESS_TABLE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        .await?;
    sc.db
        .execute_unprepared(&format!("TRUNCATE \"{inbox}\", bench_business"))
        .await?;
    Ok(())
}

fn inbox_table() -> Result<&'static str> {
    Ok(BenchEvent::SPEC
        .inbox
        .ok_or("BenchEvent has no inbox")?
        .table)
}

/// Runs a warm-up of `n / 20` messages, then `n` messages timed, `per_txn` per
/// transaction, `concurrency` transactions at once; empties the tables first.
pub async fn measure(
    sc: &Scenario,
    n: u64,
    per_txn: usize,
    concurrency: usize,
    payload_bytes: usize,
) -> Result<Limit> {
    prepare(sc).await?;
    let warm = (n / 20).max(per_txn as u64 * concurrency as u64);
    run(sc, 0, warm, per_txn, concurrency, payload_bytes).await?;
    run(sc, warm, n, per_txn, concurrency, payload_bytes).await
}

async fn run(
    sc: &Scenario,
    from: u64,
    n: u64,
    per_txn: usize,
    concurrency: usize,
    payload_bytes: usize,
) -> Result<Limit> {
    let inbox = inbox_table()?;
    let group = format!("{}bench", sc.namespace);
    let topic = sc.topic();
    let events: Arc<Vec<BenchEvent>> = Arc::new(
        (from..from + n)
            .map(|i| BenchEvent::new(i, payload_bytes))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (db, events, next) = (sc.db.clone(), Arc::clone(&events), Arc::clone(&next));
        let (group, topic) = (group.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(per_txn, Ordering::Relaxed);
                if i >= events.len() {
                    return Result::Ok(latencies);
                }
                let chunk = &events[i..(i + per_txn).min(events.len())];
                let started = Instant::now();
                let txn = db.begin().await?;
                let (sql, values) = inbox_insert(inbox, &group, &topic, chunk);
                if per_txn > 1 {
                    // The runtime's batch statement returns what it inserted.
                    txn.query_all_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        sql + " RETURNING topic, kafka_partition, kafka_offset",
                        values,
                    ))
                    .await?;
                } else {
                    txn.execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        sql,
                        values,
                    ))
                    .await?;
                }
                let (sql, values) = business_insert(chunk);
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .await?;
                txn.commit().await?;
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())??);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (p50, p99, _) = summary(&mut latencies);
    Ok(Limit {
        rate: n as f64 / secs,
        secs,
        transactions: latencies.len() as u64,
        txn_p50_ms: p50,
        txn_p99_ms: p99,
    })
}

/// `INSERT .. ON CONFLICT DO NOTHING` of the inbox rows of `events`, as the runtime
/// builds it (where each message was read: a partition and offset derived from `seq`).
fn inbox_insert(
    table: &str,
    group: &str,
    topic: &str,
    events: &[BenchEvent],
) -> (String, Vec<Value>) {
    let now = crate::infra::now_us() / 1000;
    let mut sql = format!("INSERT INTO \"{table}\" ({INBOX_COLUMNS}) VALUES ");
    let mut values: Vec<Value> = Vec::with_capacity(events.len() * 6);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let p = i * 6;
        sql.push_str(&format!(
            "(${},${},${},${},${},${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6
        ));
        values.push(group.into());
        values.push(topic.into());
        values.push(((e.seq % i64::from(PARTITIONS)) as i32).into());
        values.push((e.seq / i64::from(PARTITIONS)).into());
        values.push(now.into());
        values.push(e.seq.into());
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    (sql, values)
}

/// The business rows of `events`, one multi-row `INSERT` (as SeaORM's `insert_many`).
fn business_insert(events: &[BenchEvent]) -> (String, Vec<Value>) {
    let mut sql = String::from("INSERT INTO bench_business (seq, key, sent_at_us, pad) VALUES ");
    let mut values: Vec<Value> = Vec::with_capacity(events.len() * 4);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let p = i * 4;
        sql.push_str(&format!("(${},${},${},${})", p + 1, p + 2, p + 3, p + 4));
        values.push(e.seq.into());
        values.push(e.key.clone().into());
        values.push(e.sent_at_us.into());
        values.push(e.pad.clone().into());
    }
    (sql, values)
}
