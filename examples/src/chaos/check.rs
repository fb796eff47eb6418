//! The checker: reads the topic from the beginning with a plain `read_committed` consumer,
//! the dead-letter topic, and the database, and counts what went wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::consumer::{BaseConsumer, Consumer};
use kafka_orm::deps::rdkafka::error::KafkaError;
use kafka_orm::deps::rdkafka::message::{Headers as _, Message};
use kafka_orm::deps::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

use crate::common::{
    self, Env, POISON_OVERSIZE_DIRECT, POISON_OVERSIZE_OUTBOX, POISON_REJECTED, POISON_UNDECODABLE,
    RELAY_EPOCH_HEADER, Result, stmt,
};
use crate::events::ChaosEvent;

/// One record as read from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    /// `(bucket, epoch)` from the relay's epoch header, when present and well formed.
    pub epoch: Option<(i32, i64)>,
    pub headers: BTreeMap<String, String>,
}

/// Reads every partition of `topic` from the beginning to its end as of the call.
pub async fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<Record>> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&bootstrap, &topic))
        .await
        .map_err(|e| format!("the topic reader panicked: {e}"))?
}

fn read_topic_blocking(bootstrap: &str, topic: &str) -> Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("chaos-check-{}", common::now_ms()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let partitions: Vec<i32> = meta
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(30))?;
        ends.insert(*p, high);
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut next: HashMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = |next: &HashMap<i32, i64>| {
        ends.iter()
            .all(|(p, end)| next.get(p).copied().unwrap_or(0) >= *end)
    };
    while !done(&next) {
        if Instant::now() > deadline {
            return Err(format!(
                "reading `{topic}` did not reach the end within 300 s (at {next:?}, ends {ends:?})"
            )
            .into());
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // With read_committed the end may lie below the high watermark (aborted or
                // control records): at EOF the partition is done.
                if let Some(end) = ends.get(&p) {
                    next.insert(p, *end);
                }
            }
            Some(Err(e)) => return Err(format!("reading `{topic}`: {e}").into()),
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hh in h.iter() {
                        let v = hh
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default();
                        headers.insert(hh.key.to_string(), v);
                    }
                }
                let epoch = headers.get(RELAY_EPOCH_HEADER).and_then(|v| {
                    let (b, e) = v.split_once(':')?;
                    Some((b.trim().parse().ok()?, e.trim().parse().ok()?))
                });
                next.insert(m.partition(), m.offset() + 1);
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().map(<[u8]>::to_vec),
                    epoch,
                    headers,
                });
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// The figures of a run. Each `*_examples` holds the first few offenders.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub committed: u64,
    pub applied_rows: u64,
    pub applied_distinct: u64,
    pub lost: u64,
    pub lost_never_on_topic: u64,
    pub lost_examples: Vec<String>,
    pub applied_twice: u64,
    pub applied_twice_examples: Vec<String>,
    pub applied_not_committed: u64,
    pub applied_order_violations: u64,
    pub applied_order_examples: Vec<String>,
    pub topic_records: u64,
    pub topic_events: u64,
    pub topic_distinct: u64,
    pub topic_duplicates: u64,
    pub dup_same_epoch: u64,
    pub dup_newer_epoch: u64,
    pub dup_older_epoch: u64,
    pub dup_no_epoch: u64,
    pub topic_regressions: u64,
    pub order_violations: u64,
    pub order_examples: Vec<String>,
    pub epoch_headers: u64,
    pub concurrent_relay: Option<u64>,
    pub concurrent_examples: Vec<String>,
    pub poison_sent: BTreeMap<String, u64>,
    pub dlq_expected: u64,
    pub dlq_records: u64,
    pub dlq_by_kind: BTreeMap<String, u64>,
    pub dlq_duplicates: u64,
    pub dlq_examples: Vec<String>,
    pub dlq_business: u64,
    pub outbox_left: u64,
    pub outbox_parked_poison: u64,
    pub outbox_failing_examples: Vec<String>,
}

const EXAMPLES: usize = 10;

fn example(list: &mut Vec<String>, what: impl FnOnce() -> String) {
    if list.len() < EXAMPLES {
        list.push(what());
    }
}

pub fn poison_kind(key: &str) -> Option<&'static str> {
    [
        (POISON_UNDECODABLE, "undecodable"),
        (POISON_REJECTED, "rejected"),
        (POISON_OVERSIZE_OUTBOX, "oversize-outbox"),
        (POISON_OVERSIZE_DIRECT, "oversize-direct"),
    ]
    .into_iter()
    .find(|(p, _)| key.starts_with(p))
    .map(|(_, k)| k)
}

impl Figures {
    /// Why the run failed (empty: it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.lost > 0 {
            f.push(format!("{} committed events never applied", self.lost));
        }
        if self.applied_twice > 0 {
            f.push(format!("{} events applied twice", self.applied_twice));
        }
        if self.applied_not_committed > 0 {
            f.push(format!(
                "{} applied events were never committed",
                self.applied_not_committed
            ));
        }
        if self.order_violations > 0 {
            f.push(format!(
                "{} per-key order violations among first deliveries on the topic",
                self.order_violations
            ));
        }
        if self.applied_order_violations > 0 {
            f.push(format!(
                "{} per-key order violations among first applications",
                self.applied_order_violations
            ));
        }
        if let Some(n) = self.concurrent_relay.filter(|n| *n > 0) {
            f.push(format!(
                "{n} records of an older relay epoch after a newer one (two relays delivered one bucket at once)"
            ));
        }
        if self.dlq_records != self.dlq_expected {
            f.push(format!(
                "{} dead-letter records for {} poison messages that should be there",
                self.dlq_records, self.dlq_expected
            ));
        }
        if self.outbox_left > 0 {
            f.push(format!(
                "{} outbox rows left (besides {} oversize poison rows)",
                self.outbox_left, self.outbox_parked_poison
            ));
        }
        f
    }

    pub fn to_json(&self) -> Value {
        json!({
            "committed": self.committed,
            "applied_rows": self.applied_rows,
            "applied_distinct": self.applied_distinct,
            "lost": self.lost,
            "lost_never_on_topic": self.lost_never_on_topic,
            "lost_examples": self.lost_examples,
            "applied_twice": self.applied_twice,
            "applied_twice_examples": self.applied_twice_examples,
            "applied_not_committed": self.applied_not_committed,
            "applied_order_violations": self.applied_order_violations,
            "applied_order_examples": self.applied_order_examples,
            "topic_records": self.topic_records,
            "topic_events": self.topic_events,
            "topic_distinct": self.topic_distinct,
            "topic_duplicates": self.topic_duplicates,
            "topic_duplicates_by_epoch": {
                "same_epoch": self.dup_same_epoch,
                "newer_epoch": self.dup_newer_epoch,
                "older_epoch": self.dup_older_epoch,
                "no_epoch_header": self.dup_no_epoch,
            },
            "topic_regressions": self.topic_regressions,
            "order_violations_first_delivery": self.order_violations,
            "order_examples": self.order_examples,
            "relay_epoch_headers": self.epoch_headers,
            "concurrent_relay_violations": self.concurrent_relay,
            "concurrent_relay_examples": self.concurrent_examples,
            "poison_sent": self.poison_sent,
            "dlq_expected": self.dlq_expected,
            "dlq_records": self.dlq_records,
            "dlq_by_kind": self.dlq_by_kind,
            "dlq_duplicates": self.dlq_duplicates,
            "dlq_examples": self.dlq_examples,
            "dlq_business_events": self.dlq_business,
            "outbox_left": self.outbox_left,
            "outbox_parked_poison": self.outbox_parked_poison,
            "outbox_failing_examples": self.outbox_failing_examples,
        })
    }
}

type EventId = (String, i64);

async fn pairs(db: &DatabaseConnection, sql: &str) -> Result<Vec<(String, i64)>> {
    let rows = db.query_all_raw(stmt(sql, vec![])).await?;
    rows.iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect::<std::result::Result<Vec<_>, sea_orm::DbErr>>()
        .map_err(Into::into)
}

/// Computes the figures from the topic, the dead-letter topic and the database.
pub async fn check(env: &Env, db: &DatabaseConnection) -> Result<Figures> {
    let mut f = Figures::default();

    // The database: what was committed, what was applied (in application order).
    let committed: HashSet<EventId> = pairs(db, "SELECT key, seq FROM chaos_committed")
        .await?
        .into_iter()
        .collect();
    f.committed = committed.len() as u64;
    let applied = pairs(
        db,
        "SELECT key, seq FROM chaos_applied ORDER BY applied_at, id",
    )
    .await?;
    f.applied_rows = applied.len() as u64;
    let mut applied_count: HashMap<EventId, u64> = HashMap::new();
    let mut first_applied_max: HashMap<String, i64> = HashMap::new();
    for (key, seq) in &applied {
        let n = applied_count.entry((key.clone(), *seq)).or_insert(0);
        *n += 1;
        if *n == 1 {
            let max = first_applied_max.entry(key.clone()).or_insert(0);
            if *seq < *max {
                f.applied_order_violations += 1;
                example(&mut f.applied_order_examples, || {
                    format!("{key}: applied #{seq} after #{max}")
                });
            } else {
                *max = *seq;
            }
        }
    }
    f.applied_distinct = applied_count.len() as u64;
    for ((key, seq), n) in &applied_count {
        if *n > 1 {
            f.applied_twice += n - 1;
            example(&mut f.applied_twice_examples, || {
                format!("{key}#{seq} applied {n} times")
            });
        }
        if !committed.contains(&(key.clone(), *seq)) {
            f.applied_not_committed += 1;
        }
    }

    // The topic, from the beginning, as a plain read_committed reader sees it.
    let records = read_topic(&env.bootstrap, &env.topic()).await?;
    f.topic_records = records.len() as u64;
    let mut seen: HashMap<EventId, Option<(i32, i64)>> = HashMap::new();
    let mut max_seen: HashMap<String, i64> = HashMap::new();
    let mut max_first: HashMap<String, i64> = HashMap::new();
    let mut epochs: HashMap<(i32, i32), i64> = HashMap::new();
    let mut concurrent = 0u64;
    for r in &records {
        if let Some((bucket, epoch)) = r.epoch {
            f.epoch_headers += 1;
            let max = epochs.entry((r.partition, bucket)).or_insert(epoch);
            if epoch < *max {
                concurrent += 1;
                example(&mut f.concurrent_examples, || {
                    format!(
                        "partition {} offset {} key {:?}: bucket {bucket} epoch {epoch} after epoch {max}",
                        r.partition, r.offset, r.key
                    )
                });
            } else {
                *max = epoch;
            }
        }
        let Some(key) = &r.key else { continue };
        if poison_kind(key).is_some() {
            continue;
        }
        let Some(evt) = r
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_slice::<ChaosEvent>(p).ok())
        else {
            continue;
        };
        f.topic_events += 1;
        let id = (evt.key.clone(), evt.seq);
        let top = max_seen.entry(evt.key.clone()).or_insert(0);
        if evt.seq < *top {
            f.topic_regressions += 1;
        } else {
            *top = evt.seq;
        }
        match seen.get(&id) {
            Some(first_epoch) => {
                f.topic_duplicates += 1;
                match (first_epoch.map(|e| e.1), r.epoch.map(|e| e.1)) {
                    (Some(a), Some(b)) if a == b => f.dup_same_epoch += 1,
                    (Some(a), Some(b)) if b > a => f.dup_newer_epoch += 1,
                    (Some(_), Some(_)) => f.dup_older_epoch += 1,
                    _ => f.dup_no_epoch += 1,
                }
            }
            None => {
                seen.insert(id, r.epoch);
                let max = max_first.entry(evt.key.clone()).or_insert(0);
                if evt.seq < *max {
                    f.order_violations += 1;
                    example(&mut f.order_examples, || {
                        format!(
                            "{}: #{} first delivered after #{} (partition {} offset {})",
                            evt.key, evt.seq, max, r.partition, r.offset
                        )
                    });
                } else {
                    *max = evt.seq;
                }
            }
        }
    }
    f.topic_distinct = seen.len() as u64;
    f.concurrent_relay = (f.epoch_headers > 0).then_some(concurrent);

    let mut lost: Vec<&EventId> = committed
        .iter()
        .filter(|id| !applied_count.contains_key(*id))
        .collect();
    lost.sort();
    f.lost = lost.len() as u64;
    for (key, seq) in lost {
        let on_topic = seen.contains_key(&(key.clone(), *seq));
        if !on_topic {
            f.lost_never_on_topic += 1;
        }
        example(&mut f.lost_examples, || {
            format!(
                "{key}#{seq} ({})",
                if on_topic {
                    "on the topic"
                } else {
                    "never on the topic"
                }
            )
        });
    }

    // Poison sent, and the dead-letter topic.
    let poison = db
        .query_all_raw(stmt(
            "SELECT kind, COUNT(*), COUNT(*) FILTER (WHERE expect_dlq) FROM chaos_poison GROUP BY kind",
            vec![],
        ))
        .await?;
    for r in &poison {
        let kind: String = r.try_get_by_index(0)?;
        let n: i64 = r.try_get_by_index(1)?;
        let dlq: i64 = r.try_get_by_index(2)?;
        f.poison_sent.insert(kind, n as u64);
        f.dlq_expected += dlq as u64;
    }
    let dlq = read_topic(&env.bootstrap, &env.dlq()).await?;
    f.dlq_records = dlq.len() as u64;
    let mut dlq_seen: HashMap<String, u64> = HashMap::new();
    for r in &dlq {
        let key = r.key.clone().unwrap_or_default();
        let kind = poison_kind(&key).unwrap_or("business");
        *f.dlq_by_kind.entry(kind.to_string()).or_insert(0) += 1;
        if kind == "business" {
            f.dlq_business += 1;
        }
        let source = format!(
            "{}@{}/{}",
            key,
            r.headers
                .get(kafka_orm::handler::DLQ_SOURCE_PARTITION)
                .map(String::as_str)
                .unwrap_or("?"),
            r.headers
                .get(kafka_orm::handler::DLQ_SOURCE_OFFSET)
                .map(String::as_str)
                .unwrap_or("?"),
        );
        let n = dlq_seen.entry(source.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            f.dlq_duplicates += 1;
            example(&mut f.dlq_examples, || {
                format!(
                    "{source} dead-lettered {n} times (dlq partition {} offset {})",
                    r.partition, r.offset
                )
            });
        }
    }

    // What the outbox still holds.
    let table = common::outbox_table();
    let rows = db
        .query_all_raw(stmt(
            &format!(
                "SELECT message_key, attempts, last_error FROM \"{table}\" ORDER BY id LIMIT 1000"
            ),
            vec![],
        ))
        .await?;
    let total: i64 = db
        .query_one_raw(stmt(&format!("SELECT COUNT(*) FROM \"{table}\""), vec![]))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    let parked: i64 = db
        .query_one_raw(stmt(
            &format!("SELECT COUNT(*) FROM \"{table}\" WHERE message_key LIKE $1"),
            vec![format!("{POISON_OVERSIZE_OUTBOX}%").into()],
        ))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0);
    f.outbox_parked_poison = parked as u64;
    f.outbox_left = (total - parked).max(0) as u64;
    for r in &rows {
        let key: Option<String> = r.try_get_by_index(0)?;
        let attempts: i32 = r.try_get_by_index(1)?;
        let error: Option<String> = r.try_get_by_index(2)?;
        example(&mut f.outbox_failing_examples, || {
            format!("{key:?}: {attempts} failed attempts, last error {error:?}")
        });
    }
    Ok(f)
}

/// The figures as a table, one line each.
pub fn table(f: &Figures) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("committed".into(), f.committed.to_string()),
        (
            "applied (rows / distinct)".into(),
            format!("{} / {}", f.applied_rows, f.applied_distinct),
        ),
        (
            "lost (never applied)".into(),
            format!("{} ({} never on the topic)", f.lost, f.lost_never_on_topic),
        ),
        ("applied twice".into(), f.applied_twice.to_string()),
        (
            "applied but never committed".into(),
            f.applied_not_committed.to_string(),
        ),
        (
            "order violations, first deliveries".into(),
            f.order_violations.to_string(),
        ),
        (
            "order violations, first applications".into(),
            f.applied_order_violations.to_string(),
        ),
        (
            "topic records (events / distinct)".into(),
            format!(
                "{} ({} / {})",
                f.topic_records, f.topic_events, f.topic_distinct
            ),
        ),
        (
            "duplicate records on the topic".into(),
            format!(
                "{} (same epoch {}, newer epoch {}, older epoch {}, no epoch {})",
                f.topic_duplicates,
                f.dup_same_epoch,
                f.dup_newer_epoch,
                f.dup_older_epoch,
                f.dup_no_epoch
            ),
        ),
        (
            "seq going backwards (plain reader)".into(),
            f.topic_regressions.to_string(),
        ),
        (
            "concurrent relay violations".into(),
            match f.concurrent_relay {
                Some(n) => format!("{n} ({} records with an epoch header)", f.epoch_headers),
                None => "n/a (no record carries kafka-orm-relay-epoch)".into(),
            },
        ),
        (
            "poison sent".into(),
            f.poison_sent
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "DLQ records / expected".into(),
            format!(
                "{} / {} (duplicates {}, business events {})",
                f.dlq_records, f.dlq_expected, f.dlq_duplicates, f.dlq_business
            ),
        ),
        (
            "outbox rows left".into(),
            format!(
                "{} (+ {} oversize poison rows kept by the relay)",
                f.outbox_left, f.outbox_parked_poison
            ),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows.drain(..) {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}
