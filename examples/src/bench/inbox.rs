//! `inbox_throughput`, the limits it is measured against, and two raw consumers, on a
//! 6-partition topic filled beforehand (not timed). The clock starts once a warm-up share
//! has been processed (the group has joined) and stops when the last message is committed.
//!
//! - `inbox_throughput`: kafka-orm's handler (`topic.handler(..)`) with the inbox
//!   (`inbox(dedup = "seq")`); the handler does one SeaORM insert of a business row. Batch
//!   mode (`batch_handler(500, 20 ms)`, one SeaORM `insert_many`) and per-message mode, each
//!   at concurrency 1 and 8 (the handler's default). Each is compared with
//!   `inbox_txn_limit` of its own shape and concurrency, measured right after it
//!   ([`crate::inbox_limit`]: the same transactions in a tight loop, no Kafka). When the
//!   concurrency exceeds the partitions (8 > 6: the handler runs one lane per partition),
//!   the limit at 6 is measured too, and in batch mode the limit at the handler's mean batch
//!   size: what is left between those and the handler is consuming, decoding, dispatching
//!   and committing offsets (`extra.gap`).
//! - `raw_consume_batch_insert`: one raw rdkafka consumer; decode, buffer up to 500
//!   messages (or 20 ms), insert them with one multi-row `INSERT .. ON CONFLICT DO NOTHING`
//!   in a transaction, commit, then commit the offsets (async);
//! - `raw_per_message_txn`: per message `BEGIN; INSERT; COMMIT`, then store its offset
//!   (auto-committed every second). Both are hand-written consumers without an inbox row
//!   (more baselines of the handler rows, not limits).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::message::Message;
use kafka_orm::deps::rdkafka::{Offset, TopicPartitionList};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};
use serde_json::json;

use crate::Config;
use crate::inbox_limit::{self, Limit};
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario};
use crate::produce::{Msg, send_all};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};

pub use crate::business::{BATCH, BATCH_WAIT, BUSINESS_TABLE, handle, handle_batch};

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
        let (n, mode, raw_name, raw) = if batch {
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
        let name = format!(
            "inbox_{}_{concurrency}",
            if batch { "batch" } else { "single" }
        );
        // The limit of the same shape and concurrency, half of it right before the handler
        // and half right after (commits are fsync-bound, and the disk's pace drifts), on a
        // database of its own.
        let per_txn = if batch { BATCH } else { 1 };
        let n_limit = |per_txn: usize| {
            if per_txn == 1 {
                n
            } else {
                n.max(per_txn as u64 * 40)
            }
        };
        let limit_sc = infra.scenario(&format!("{name}_limit")).await?;
        let label = limit_variant(per_txn, concurrency);
        progress.phase(format!("limit before the handler: {label}"));
        let before = inbox_limit::measure(
            &limit_sc,
            n_limit(per_txn) / 2,
            per_txn,
            concurrency,
            config.payload_bytes,
        )
        .await;
        progress.phase(format!("handler: {variant}"));
        let r = match infra.scenario(&name).await {
            Ok(sc) => {
                let r = handler_run(n, config, &sc, batch, concurrency, progress).await;
                sc.cleanup().await;
                r
            }
            Err(e) => Err(e),
        };
        progress.phase(format!("limit after the handler: {label}"));
        let after = inbox_limit::measure(
            &limit_sc,
            n_limit(per_txn) / 2,
            per_txn,
            concurrency,
            config.payload_bytes,
        )
        .await;
        let m = match r {
            Ok(m) => m,
            Err(e) => {
                limit_sc.cleanup().await;
                out.push(
                    Outcome::failed("inbox_throughput", params(n, concurrency), e.to_string())
                        .variant(variant),
                );
                continue;
            }
        };
        let mut limits: Vec<(usize, usize, String, Limit)> = Vec::new();
        let main = before.and_then(|b| after.map(|a| (b.combine(&a), Some((b, a)))));
        let params_of = |per_txn: usize, c: usize| params(n_limit(per_txn), c);
        let row = push_limit(
            &mut out,
            params_of(per_txn, concurrency),
            per_txn,
            concurrency,
            "",
            main,
        );
        limits.extend(row);

        // Where the gap goes: the limit at the handler's lanes and at its mean batch.
        let lanes = concurrency.min(PARTITIONS as usize);
        let mut more = Vec::new();
        if concurrency > lanes {
            more.push((per_txn, lanes, format!("{lanes} = the handler's lanes")));
        }
        let observed = (m.messages as f64 / m.transactions.max(1) as f64)
            .round()
            .max(1.0) as usize;
        if batch && observed < per_txn {
            more.push((
                observed,
                lanes,
                format!("{observed} = the handler's mean batch, {lanes} lanes"),
            ));
        }
        for (per_txn, c, why) in more {
            progress.phase(format!("limit: {}", limit_variant(per_txn, c)));
            let r = inbox_limit::measure(
                &limit_sc,
                n_limit(per_txn),
                per_txn,
                c,
                config.payload_bytes,
            )
            .await
            .map(|l| (l, None));
            limits.extend(push_limit(
                &mut out,
                params_of(per_txn, c),
                per_txn,
                c,
                &why,
                r,
            ));
        }
        limit_sc.cleanup().await;
        out.push(
            Outcome::measured(
                "inbox_throughput",
                params(n, concurrency),
                handler_figure(&m, batch, concurrency, &limits, raw_name, raw),
            )
            .variant(variant),
        );
    }
    Ok(out)
}

/// Reports one `inbox_txn_limit` row; returns the limit when it was measured.
fn push_limit(
    out: &mut Vec<Outcome>,
    params: Params,
    per_txn: usize,
    concurrency: usize,
    why: &str,
    result: Result<(Limit, Option<(Limit, Limit)>)>,
) -> Option<(usize, usize, String, Limit)> {
    let label = limit_variant(per_txn, concurrency);
    let (l, halves) = match result {
        Ok(r) => r,
        Err(e) => {
            out.push(Outcome::failed("inbox_txn_limit", params, e.to_string()).variant(label));
            return None;
        }
    };
    let mut f = Figure::new(l.rate, "msg/s")
        .extra("seconds", l.secs)
        .extra("transactions", l.transactions)
        .extra("messages_per_txn", per_txn as u64)
        .extra("txn_p50_ms", l.txn_p50_ms)
        .extra("txn_p99_ms", l.txn_p99_ms)
        .extra(
            "what",
            "N tokio tasks in a tight loop, no Kafka: BEGIN; INSERT inbox rows ON CONFLICT DO \
             NOTHING; INSERT business rows; COMMIT (the handler's transaction, same tables, \
             payloads and pool)",
        );
    if let Some((b, a)) = halves {
        f = f
            .extra("before_handler_msg_per_s", b.rate)
            .extra("after_handler_msg_per_s", a.rate);
    }
    if !why.is_empty() {
        f = f.extra("why", why);
    }
    out.push(Outcome::measured("inbox_txn_limit", params, f).variant(label));
    Some((per_txn, concurrency, why.to_string(), l))
}

fn limit_variant(per_txn: usize, concurrency: usize) -> String {
    if per_txn == 1 {
        format!("per message, concurrency {concurrency}")
    } else {
        format!("batch {per_txn}, concurrency {concurrency}")
    }
}

/// The handler's row: the same-shape limit at its concurrency as the baseline, the other
/// limits and the raw consumer as more baselines, and where the gap goes.
fn handler_figure(
    m: &HandlerMeasured,
    batch: bool,
    concurrency: usize,
    limits: &[(usize, usize, String, Limit)],
    raw_name: &str,
    raw: Option<f64>,
) -> Figure {
    let lanes = concurrency.min(PARTITIONS as usize);
    let txns_per_s = m.transactions as f64 / m.secs;
    let mut f = Figure::new(m.rate, "msg/s")
        .extra("seconds", m.secs)
        .extra("transactions", m.transactions)
        .extra("duplicates", m.duplicates)
        .extra(
            "mean_messages_per_txn",
            m.messages as f64 / m.transactions.max(1) as f64,
        )
        .extra("handler_txn_p50_ms", m.txn_p50_ms)
        .extra("handler_txn_p99_ms", m.txn_p99_ms)
        .extra("lanes", lanes as u64)
        .extra(
            "what",
            if batch {
                "topic.batch_handler(one SeaORM insert_many per batch) with inbox(dedup = \"seq\"), \
                 offsets committed by the runtime; topic filled beforehand"
            } else {
                "topic.handler(one SeaORM insert) with inbox(dedup = \"seq\"), offsets committed \
                 by the runtime; topic filled beforehand"
            },
        );
    let mut gap = serde_json::Map::new();
    // The share of each lane's time spent inside a transaction (p50 as the typical one):
    // near 1, the handler is bound by its transactions; well below, by what happens
    // between them (consume, decode, dispatch, offsets).
    gap.insert(
        "lane_time_in_txn".into(),
        json!(txns_per_s * m.txn_p50_ms / 1e3 / lanes as f64),
    );
    for (i, (per_txn, c, why, l)) in limits.iter().enumerate() {
        let name = format!("inbox_txn_limit {}", limit_variant(*per_txn, *c));
        if i == 0 {
            f = f.baseline(Baseline::new(name.clone(), l.rate));
            gap.insert("limit_txn_p50_ms".into(), json!(l.txn_p50_ms));
            gap.insert(
                "txn_time_ratio_handler_to_limit".into(),
                json!(m.txn_p50_ms / l.txn_p50_ms),
            );
        } else {
            f = f.also(Baseline::new(format!("{name} ({why})"), l.rate));
        }
        gap.insert(format!("ratio_to {name}"), json!(m.rate / l.rate));
    }
    f = f.extra("gap", serde_json::Value::Object(gap));
    if let Some(r) = raw {
        let name = if concurrency == 1 {
            raw_name.to_string()
        } else {
            format!("{raw_name} (concurrency 1)")
        };
        f = f.also(Baseline::new(name, r));
    }
    // The goals the README set against the old raw baselines, now against the limits.
    if let Some(ratio) = f.ratio() {
        f = match (batch, concurrency) {
            (true, 1) => f,
            (true, _) => f.goal(">= 0.5 x same-shape limit", ratio >= 0.5),
            (false, 1) => f.goal(">= 0.8 x same-shape limit", ratio >= 0.8),
            (false, _) => f,
        };
        f = f.goal("<= 1.0 x limit (a limit)", ratio <= 1.0);
    }
    if batch {
        f = f.goal(">= 20k msg/s", m.rate >= 20_000.0);
    }
    f
}

struct HandlerMeasured {
    rate: f64,
    secs: f64,
    /// Messages in the timed window, and the transactions they took.
    messages: u64,
    transactions: u64,
    duplicates: u64,
    txn_p50_ms: f64,
    txn_p99_ms: f64,
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
                    messages: done - from,
                    transactions: stats.transactions - txns,
                    duplicates: stats.duplicates,
                    txn_p50_ms: stats.latency_p50.as_secs_f64() * 1e3,
                    txn_p99_ms: stats.latency_p99.as_secs_f64() * 1e3,
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
