//! `inbox_throughput` and its two raw baselines, on a 6-partition topic filled beforehand
//! (not timed). The clock starts once a warm-up share has been processed (the group has
//! joined) and stops when the last message is committed.
//!
//! - `inbox_throughput`: kafka-orm's handler (`topic.handler(..)`) with the inbox
//!   (`inbox(dedup = "seq")`); the handler does one SeaORM insert of a business row. Batch
//!   mode (`.batch(500, 20 ms)`) against `raw_consume_batch_insert`, per-message mode
//!   against `raw_per_message_txn`; each at concurrency 1 (as the baselines) and 8 (the
//!   handler's default).
//! - `raw_consume_batch_insert`: one raw rdkafka consumer; decode, buffer up to 500
//!   messages (or 20 ms), insert them with one multi-row `INSERT .. ON CONFLICT DO NOTHING`
//!   in a transaction, commit, then commit the offsets (async);
//! - `raw_per_message_txn`: per message `BEGIN; INSERT; COMMIT`, then store its offset
//!   (auto-committed every second).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::message::Message;
use kafka_orm::deps::rdkafka::{Offset, TopicPartitionList};
use kafka_orm::{Delivery, HandlerError};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Set, Statement, TransactionTrait,
    Value,
};

use crate::Config;
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario};
use crate::produce::{Msg, send_all};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};

const BATCH: usize = 500;
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// The business row a handler writes, as a SeaORM entity.
pub mod business {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bench_business")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub key: String,
        pub sent_at_us: i64,
        pub pad: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The benchmark's batch handler: one SeaORM `insert_many` for the batch.
pub async fn handle_batch(
    txn: &DatabaseTransaction,
    msgs: &[&Delivery<BenchEvent>],
) -> std::result::Result<(), HandlerError> {
    business::Entity::insert_many(msgs.iter().map(|msg| business_row(msg)))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The DDL of the business table.
pub const BUSINESS_TABLE: &str = "CREATE TABLE bench_business (seq BIGINT PRIMARY KEY, \
    key TEXT NOT NULL, sent_at_us BIGINT NOT NULL, pad TEXT NOT NULL)";

/// The business row of one event.
fn business_row(msg: &BenchEvent) -> business::ActiveModel {
    business::ActiveModel {
        seq: Set(msg.seq),
        key: Set(msg.key.clone()),
        sent_at_us: Set(msg.sent_at_us),
        pad: Set(msg.pad.clone()),
    }
}

/// The benchmark's handler: one SeaORM insert.
pub async fn handle(
    txn: &DatabaseTransaction,
    msg: &Delivery<BenchEvent>,
) -> std::result::Result<(), HandlerError> {
    business::Entity::insert(business_row(msg))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    let params = |messages: u64, concurrency: usize| Params {
        messages,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency,
    };
    let mut out = Vec::new();

    progress.phase("raw consume + batched insert");
    let sc = infra.scenario("inbox_raw_batch").await?;
    let r = consume_run(config.messages, config, &sc, Mode::Batch, progress).await;
    sc.cleanup().await;
    let raw_batch = r.as_ref().ok().map(|(rate, _)| *rate);
    out.push(match r {
        Ok((rate, secs)) => Outcome::measured(
            "raw_consume_batch_insert",
            params(config.messages, 1),
            Figure::new(rate, "msg/s").extra("seconds", secs).extra(
                "what",
                "rdkafka StreamConsumer; per <=500 msgs: BEGIN; multi-row INSERT; COMMIT; async offset commit",
            ),
        ),
        Err(e) => Outcome::failed(
            "raw_consume_batch_insert",
            params(config.messages, 1),
            e.to_string(),
        ),
    });

    progress.phase("raw consume + a transaction per message");
    let sc = infra.scenario("inbox_raw_per_msg").await?;
    let r = consume_run(config.per_message, config, &sc, Mode::PerMessage, progress).await;
    sc.cleanup().await;
    let raw_per_message = r.as_ref().ok().map(|(rate, _)| *rate);
    out.push(match r {
        Ok((rate, secs)) => Outcome::measured(
            "raw_per_message_txn",
            params(config.per_message, 1),
            Figure::new(rate, "msg/s").extra("seconds", secs).extra(
                "what",
                "rdkafka StreamConsumer; per message: BEGIN; INSERT; COMMIT; store offset (auto-commit 1 s)",
            ),
        ),
        Err(e) => Outcome::failed(
            "raw_per_message_txn",
            params(config.per_message, 1),
            e.to_string(),
        ),
    });

    for (batch, concurrency) in [(true, 1), (true, 8), (false, 1), (false, 8)] {
        let (n, mode, baseline_name, baseline) = if batch {
            (
                config.messages,
                "batch",
                "raw_consume_batch_insert",
                raw_batch,
            )
        } else {
            (
                config.per_message,
                "per message",
                "raw_per_message_txn",
                raw_per_message,
            )
        };
        let variant = format!("{mode}, concurrency {concurrency}");
        progress.phase(format!("handler: {variant}"));
        let name = format!(
            "inbox_{}_{concurrency}",
            if batch { "batch" } else { "single" }
        );
        let r = match infra.scenario(&name).await {
            Ok(sc) => {
                let r = handler_run(n, config, &sc, batch, concurrency, progress).await;
                sc.cleanup().await;
                r
            }
            Err(e) => Err(e),
        };
        let outcome = match r {
            Ok(m) => {
                let mut f = Figure::new(m.rate, "msg/s")
                    .extra("seconds", m.secs)
                    .extra("transactions", m.transactions)
                    .extra("duplicates", m.duplicates)
                    .extra(
                        "what",
                        if batch {
                            "topic.batch_handler(one SeaORM insert_many per batch) with \
                             inbox(dedup = \"seq\"), offsets committed by the runtime; topic \
                             filled beforehand"
                        } else {
                            "topic.handler(one SeaORM insert) with inbox(dedup = \"seq\"), \
                             offsets committed by the runtime; topic filled beforehand"
                        },
                    );
                if let Some(b) = baseline {
                    let name = if concurrency == 1 {
                        baseline_name.to_string()
                    } else {
                        format!("{baseline_name} (concurrency 1)")
                    };
                    f = f.baseline(Baseline::new(name, b));
                }
                Outcome::measured("inbox_throughput", params(n, concurrency), f)
            }
            Err(e) => Outcome::failed("inbox_throughput", params(n, concurrency), e.to_string()),
        };
        out.push(outcome.variant(variant));
    }
    Ok(out)
}

struct HandlerMeasured {
    rate: f64,
    secs: f64,
    transactions: u64,
    duplicates: u64,
}

/// Fills the topic, runs the handler and times the messages after the warm-up share.
async fn handler_run(
    n: u64,
    config: &Config,
    sc: &Scenario,
    batch: bool,
    concurrency: usize,
    progress: &Progress,
) -> Result<HandlerMeasured> {
    sc.db.execute_unprepared(BUSINESS_TABLE).await?;
    let warm = (n / 20).max(200);
    let total = warm + n;
    progress.phase(format!(
        "filling the topic with {total} messages (not timed)"
    ));
    let producer = sc.infra.raw_producer()?;
    let msgs: Vec<Msg> = (0..total)
        .map(|i| Msg::new(i, config.payload_bytes))
        .collect();
    send_all(&producer, &sc.topic(), &msgs, Some(progress)).await?;
    drop(msgs);

    let topic = sc.orm.topic::<BenchEvent>();
    let running = if batch {
        // Batch mode: one transaction and one SeaORM `insert_many` per batch.
        topic
            .batch_handler(BATCH, BATCH_WAIT, handle_batch)
            .concurrency(concurrency)
            .spawn()
            .await?
    } else {
        topic
            .handler(handle)
            .concurrency(concurrency)
            .spawn()
            .await?
    };
    progress.phase(format!("handling {total} messages"));
    let result: Result<HandlerMeasured> = async {
        let mut t0: Option<(Instant, u64, u64)> = None;
        let mut last = (0, Instant::now());
        loop {
            let stats = running.stats();
            let done = stats.handled + stats.duplicates;
            if t0.is_none() && done >= warm {
                t0 = Some((Instant::now(), done, stats.transactions));
                progress.phase(format!("handling {n} messages (timed)"));
            }
            if done >= total {
                let (t0, from, txns) = t0.ok_or("the warm-up never ended")?;
                let secs = t0.elapsed().as_secs_f64();
                return Ok(HandlerMeasured {
                    rate: (done - from) as f64 / secs,
                    secs,
                    transactions: stats.transactions - txns,
                    duplicates: stats.duplicates,
                });
            }
            if running.is_finished() {
                return Err("the handler stopped on its own".into());
            }
            if done != last.0 {
                last = (done, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(60) {
                return Err(format!("the handler stalled at {done} of {total}: {stats:?}").into());
            }
            progress.count(done, total);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    .await;
    let stopped = running.shutdown().await;
    let measured = result?;
    stopped?;
    Ok(measured)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Batch,
    PerMessage,
}

async fn consume_run(
    n: u64,
    config: &Config,
    sc: &Scenario,
    mode: Mode,
    progress: &Progress,
) -> Result<(f64, f64)> {
    sc.db.execute_unprepared(BUSINESS_TABLE).await?;
    let warm = (n / 20).max(200);
    let total = warm + n;
    progress.phase(format!(
        "filling the topic with {total} messages (not timed)"
    ));
    let producer = sc.infra.raw_producer()?;
    let msgs: Vec<Msg> = (0..total)
        .map(|i| Msg::new(i, config.payload_bytes))
        .collect();
    send_all(&producer, &sc.topic(), &msgs, Some(progress)).await?;
    drop(msgs);

    let consumer: StreamConsumer = sc
        .infra
        .client_config()
        .set("group.id", format!("{}raw-inbox", sc.namespace))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "enable.auto.commit",
            if mode == Mode::PerMessage {
                "true"
            } else {
                "false"
            },
        )
        .set("auto.commit.interval.ms", "1000")
        .create()?;
    consumer.subscribe(&[&sc.topic()])?;
    let result = consume(&consumer, sc, mode, warm, total, progress).await;
    let c = consumer;
    // Closing a consumer may wait on the broker: off the runtime, bounded.
    let closed = tokio::task::spawn_blocking(move || {
        c.unsubscribe();
        drop(c);
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
    result
}

async fn consume(
    consumer: &StreamConsumer,
    sc: &Scenario,
    mode: Mode,
    warm: u64,
    total: u64,
    progress: &Progress,
) -> Result<(f64, f64)> {
    let topic = sc.topic();
    let mut processed = 0u64;
    let mut t0: Option<(Instant, u64)> = None;
    let mut buffer: Vec<(BenchEvent, i32, i64)> = Vec::with_capacity(BATCH);
    let mut idle_since = Instant::now();
    progress.phase("consuming");
    while processed < total {
        if t0.is_none() && processed >= warm {
            t0 = Some((Instant::now(), processed));
            progress.phase(format!("consuming {} messages (timed)", total - warm));
        }
        let next = tokio::time::timeout(BATCH_WAIT, consumer.recv()).await;
        match next {
            Ok(msg) => {
                let msg = msg?;
                idle_since = Instant::now();
                let event: BenchEvent = serde_json::from_slice(msg.payload().unwrap_or_default())?;
                match mode {
                    Mode::Batch => {
                        buffer.push((event, msg.partition(), msg.offset()));
                        if buffer.len() >= BATCH {
                            processed += flush(consumer, sc, &topic, &mut buffer).await?;
                        }
                    }
                    Mode::PerMessage => {
                        let txn = sc.db.begin().await?;
                        insert(&txn, std::slice::from_ref(&event)).await?;
                        txn.commit().await?;
                        consumer.store_offset_from_message(&msg)?;
                        processed += 1;
                    }
                }
            }
            Err(_) => {
                if !buffer.is_empty() {
                    processed += flush(consumer, sc, &topic, &mut buffer).await?;
                } else if idle_since.elapsed() > Duration::from_secs(60) {
                    return Err(format!("no message for 60 s after {processed} of {total}").into());
                }
            }
        }
        progress.count(processed, total);
    }
    let (t0, from) = t0.ok_or("the warm-up never ended")?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(((total - from) as f64 / secs, secs))
}

/// Inserts the buffered events in one transaction, then commits their offsets.
async fn flush(
    consumer: &StreamConsumer,
    sc: &Scenario,
    topic: &str,
    buffer: &mut Vec<(BenchEvent, i32, i64)>,
) -> Result<u64> {
    let events: Vec<BenchEvent> = buffer.iter().map(|(e, _, _)| e.clone()).collect();
    let txn = sc.db.begin().await?;
    insert(&txn, &events).await?;
    txn.commit().await?;
    let mut highest: HashMap<i32, i64> = HashMap::new();
    for (_, p, o) in buffer.iter() {
        let e = highest.entry(*p).or_insert(*o);
        *e = (*e).max(*o);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in highest {
        tpl.add_partition_offset(topic, p, Offset::Offset(o + 1))?;
    }
    consumer.commit(&tpl, CommitMode::Async)?;
    let n = buffer.len() as u64;
    buffer.clear();
    Ok(n)
}

async fn insert<C: ConnectionTrait>(conn: &C, events: &[BenchEvent]) -> Result<()> {
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
    sql.push_str(" ON CONFLICT (seq) DO NOTHING");
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}
