//! `inbox_throughput` and its two raw baselines.
//!
//! The inbox handler (issue 5) does not exist yet, so `inbox_throughput` is reported as
//! skipped. Its baselines stand alone and are measured now, on a 6-partition topic filled
//! beforehand (not timed), with one raw rdkafka consumer:
//! - `raw_consume_batch_insert`: decode, buffer up to 500 messages (or 20 ms), insert them
//!   with one multi-row `INSERT .. ON CONFLICT DO NOTHING` in a transaction, commit, then
//!   commit the offsets (async);
//! - `raw_per_message_txn`: per message `BEGIN; INSERT; COMMIT`, then store its offset
//!   (auto-committed every second).
//!
//! The clock starts once a warm-up share has been processed (the group has joined).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::message::Message;
use kafka_orm::deps::rdkafka::{Offset, TopicPartitionList};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use crate::Config;
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario};
use crate::produce::{Msg, send_all};
use crate::report::{Figure, Outcome, Params, Progress};

const SKIP: &str = "inbox handler not implemented yet (issue 5)";
const BATCH: usize = 500;

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    let params = |messages: u64| Params {
        messages,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency: 1,
    };
    let mut out = vec![
        Outcome::skipped("inbox_throughput", params(config.messages), SKIP).variant("batch"),
        Outcome::skipped("inbox_throughput", params(config.per_message), SKIP)
            .variant("per message"),
    ];

    progress.phase("raw consume + batched insert");
    let sc = infra.scenario("inbox_batch").await?;
    let r = consume_run(config.messages, config, &sc, Mode::Batch, progress).await;
    sc.cleanup().await;
    out.push(match r {
        Ok((rate, secs)) => Outcome::measured(
            "raw_consume_batch_insert",
            params(config.messages),
            Figure::new(rate, "msg/s").extra("seconds", secs).extra(
                "what",
                "rdkafka StreamConsumer; per <=500 msgs: BEGIN; multi-row INSERT; COMMIT; async offset commit",
            ),
        ),
        Err(e) => Outcome::failed("raw_consume_batch_insert", params(config.messages), e.to_string()),
    });

    progress.phase("raw consume + a transaction per message");
    let sc = infra.scenario("inbox_per_msg").await?;
    let r = consume_run(config.per_message, config, &sc, Mode::PerMessage, progress).await;
    sc.cleanup().await;
    out.push(match r {
        Ok((rate, secs)) => Outcome::measured(
            "raw_per_message_txn",
            params(config.per_message),
            Figure::new(rate, "msg/s").extra("seconds", secs).extra(
                "what",
                "rdkafka StreamConsumer; per message: BEGIN; INSERT; COMMIT; store offset (auto-commit 1 s)",
            ),
        ),
        Err(e) => Outcome::failed("raw_per_message_txn", params(config.per_message), e.to_string()),
    });
    Ok(out)
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
    sc.db
        .execute_unprepared(
            "CREATE TABLE bench_business (seq BIGINT PRIMARY KEY, key TEXT NOT NULL, \
             sent_at_us BIGINT NOT NULL, pad TEXT NOT NULL)",
        )
        .await?;
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
        let next = tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await;
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
