//! Handlers with the inbox, retries, the dead-letter topic, backpressure, rebalances and
//! shutdown, against real Kafka and real PostgreSQL (SQLite where said).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use kafka_orm::deps::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
};
use kafka_orm::{
    Delivery, HandlerError, HandlerStats, Headers, KafkaOrm, KafkaOrmBuilder, MESSAGE_ID_HEADER,
    RunningHandler, Topic,
};
use kafka_orm_tests::{fresh_postgres, fresh_sqlite, real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "inbox.payments",
    key = "account",
    inbox(dedup = "payment_id"),
    partitions = 4,
    group = "ledger",
    retry(attempts = 3, backoff = "20ms", max_backoff = "100ms"),
    dlq
)]
struct PaymentReceived {
    payment_id: i64,
    account: String,
    seq: i64,
    amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "inbox.notes", key = "id", inbox, group = "notes")]
struct NoteAdded {
    id: i64,
    text: String,
}

fn payment(id: i64, accounts: i64) -> PaymentReceived {
    PaymentReceived {
        payment_id: id,
        account: format!("acct-{}", id % accounts),
        seq: id,
        amount: 100 + id,
    }
}

async fn setup(test: &str) -> Option<(KafkaOrm, DatabaseConnection)> {
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    Some((start(builder, &db).await, db))
}

async fn start(builder: KafkaOrmBuilder, db: &DatabaseConnection) -> KafkaOrm {
    let id = match db.get_database_backend() {
        DbBackend::Postgres => "BIGSERIAL PRIMARY KEY",
        _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE IF NOT EXISTS ledger (id {id}, payment_id BIGINT NOT NULL, account TEXT NOT NULL, \
         seq BIGINT NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL)"
    ))
    .await
    .unwrap();
    builder.database(db.clone()).build().await.unwrap()
}

/// The handler under test: one ledger row per applied payment (no unique constraint, so
/// an application twice would show as two rows).
async fn apply(
    txn: &DatabaseTransaction,
    msg: &Delivery<PaymentReceived>,
) -> Result<(), HandlerError> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO ledger (payment_id, account, seq, kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4, $5)"
        }
        _ => {
            "INSERT INTO ledger (payment_id, account, seq, kafka_partition, kafka_offset) VALUES (?, ?, ?, ?, ?)"
        }
    };
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [
            msg.payment_id.into(),
            msg.account.clone().into(),
            msg.seq.into(),
            msg.partition().into(),
            msg.offset().into(),
        ],
    ))
    .await?;
    if msg.amount < 0 {
        return Err(format!("negative amount {}", msg.amount).into());
    }
    Ok(())
}

async fn spawn_ledger(orm: &KafkaOrm) -> RunningHandler {
    orm.topic::<PaymentReceived>()
        .handler_boxed(|txn, msg| Box::pin(apply(txn, msg)))
        .concurrency(4)
        .spawn()
        .await
        .unwrap()
}

async fn ledger(db: &DatabaseConnection) -> Vec<(i64, String, i64, i32, i64)> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT payment_id, account, seq, kafka_partition, kafka_offset FROM ledger ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
            r.try_get_by_index(2).unwrap(),
            r.try_get_by_index(3).unwrap(),
            r.try_get_by_index(4).unwrap(),
        )
    })
    .collect()
}

async fn wait_for_rows(db: &DatabaseConnection, n: usize, secs: u64) {
    within(secs, &format!("{n} ledger rows"), async {
        while ledger(db).await.len() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn wait_stats(h: &RunningHandler, what: &str, ok: impl Fn(&HandlerStats) -> bool) {
    within(60, what, async {
        while !ok(&h.stats()) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
}

fn assert_once_each_and_key_order(rows: &[(i64, String, i64, i32, i64)], expected: usize) {
    let ids: HashSet<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(rows.len(), expected, "every payment applied exactly once");
    assert_eq!(ids.len(), expected);
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (_, account, seq, ..) in rows {
        if let Some(prev) = last.insert(account, *seq) {
            assert!(
                *seq > prev,
                "account {account} applied seq {seq} after {prev}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_applied_once() {
    let Some((orm, db)) = setup("inbox-dup").await else {
        return;
    };
    let payments = orm.topic::<PaymentReceived>();
    // A producer resend: the same payment id twice, as two Kafka messages.
    payments.produce(&payment(1, 3)).await.unwrap();
    payments.produce(&payment(1, 3)).await.unwrap();
    payments.produce(&payment(2, 3)).await.unwrap();
    // A relay redelivery on a bare inbox: the same message id twice.
    let notes = orm.topic::<NoteAdded>();
    let same_id = Headers::new().with(MESSAGE_ID_HEADER, "0193b1d0-0000-7000-8000-000000000001");
    let note = NoteAdded {
        id: 7,
        text: "hi".into(),
    };
    notes
        .produce_with_headers(&note, same_id.clone())
        .await
        .unwrap();
    notes.produce_with_headers(&note, same_id).await.unwrap();
    notes
        .produce(&NoteAdded {
            id: 8,
            text: "other id".into(),
        })
        .await
        .unwrap();

    let h = spawn_ledger(&orm).await;
    let applied_notes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = applied_notes.clone();
    let n = notes
        .handler_boxed(move |_txn, _msg| {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        })
        .spawn()
        .await
        .unwrap();
    wait_stats(&h, "3 payments seen", |s| s.handled + s.duplicates == 3).await;
    wait_stats(&n, "3 notes seen", |s| s.handled + s.duplicates == 3).await;
    let rows = ledger(&db).await;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>().len(),
        2,
        "{rows:?}"
    );
    assert_eq!(h.stats().duplicates, 1);
    assert_eq!(n.stats().duplicates, 1);
    assert_eq!(applied_notes.load(std::sync::atomic::Ordering::SeqCst), 2);
    h.shutdown().await.unwrap();
    n.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_rolls_back_retries_then_dead_letters_with_headers() {
    let Some((orm, db)) = setup("inbox-dlq").await else {
        return;
    };
    let payments = orm.topic::<PaymentReceived>();
    let bad = PaymentReceived {
        amount: -5,
        ..payment(10, 1)
    };
    payments.produce(&bad).await.unwrap();
    payments.produce(&payment(11, 1)).await.unwrap(); // same key, behind the bad one
    let h = spawn_ledger(&orm).await;
    wait_stats(&h, "dead-letter and next", |s| {
        s.dead_lettered == 1 && s.handled == 1
    })
    .await;
    assert_eq!(h.stats().retries, 2, "3 attempts = 2 retries");
    let rows = ledger(&db).await;
    assert_eq!(
        rows.len(),
        1,
        "the failed attempts' writes were rolled back: {rows:?}"
    );
    assert_eq!(rows[0].0, 11);

    // The dead-letter topic has the raw record and where it came from.
    let dlq_name = format!("{}.dlq", payments.name());
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{dlq_name}-reader"))
        .set("auto.offset.reset", "earliest");
    let reader: kafka_orm::deps::rdkafka::consumer::StreamConsumer = cfg.create().unwrap();
    use kafka_orm::deps::rdkafka::Message;
    use kafka_orm::deps::rdkafka::consumer::Consumer;
    use kafka_orm::deps::rdkafka::message::Headers as _;
    reader.subscribe(&[&dlq_name]).unwrap();
    let m = within(60, "the dead letter", reader.recv()).await.unwrap();
    let headers: BTreeMap<String, String> = m
        .headers()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(headers["kafka-orm-dlq-source-topic"], payments.name());
    assert_eq!(headers["kafka-orm-dlq-attempts"], "3");
    assert!(
        headers["kafka-orm-dlq-error"].contains("negative amount -5"),
        "{headers:?}"
    );
    assert!(headers.contains_key("kafka-orm-dlq-source-partition"));
    assert!(headers.contains_key("kafka-orm-dlq-source-offset"));
    let first: i64 = headers["kafka-orm-dlq-first-failure"].parse().unwrap();
    let last: i64 = headers["kafka-orm-dlq-last-failure"].parse().unwrap();
    assert!(first <= last);
    let back: PaymentReceived = serde_json::from_slice(m.payload().unwrap()).unwrap();
    assert_eq!(back, bad);
    assert_eq!(m.key(), Some(&b"acct-0"[..]));
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_payload_is_dead_lettered_and_the_partition_moves_on() {
    let Some((orm, db)) = setup("inbox-undecodable").await else {
        return;
    };
    let name = orm.topic::<PaymentReceived>().name();
    let raw: kafka_orm::deps::rdkafka::producer::FutureProducer =
        orm.client_config().create().unwrap();
    raw.send(
        kafka_orm::deps::rdkafka::producer::FutureRecord::to(&name)
            .key("acct-0")
            .payload("garbage"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    orm.topic::<PaymentReceived>()
        .produce(&payment(3, 1))
        .await
        .unwrap();
    let h = spawn_ledger(&orm).await;
    wait_stats(&h, "undecodable dead-lettered, next applied", |s| {
        s.undecodable == 1 && s.dead_lettered == 1 && s.handled == 1
    })
    .await;
    assert_eq!(ledger(&db).await.len(), 1);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_db_commit_and_offset_commit_redelivers_and_skips() {
    let Some(builder) = real_kafka("inbox-crash") else {
        return;
    };
    let Some(db) = fresh_postgres("inbox-crash").await else {
        return;
    };
    // First life: offsets are never committed (as if it crashed right after each DB commit).
    let crashing = start(
        builder.clone().consumer_set("enable.auto.commit", "false"),
        &db,
    )
    .await;
    let events: Vec<PaymentReceived> = (0..100).map(|i| payment(i, 5)).collect();
    crashing
        .topic::<PaymentReceived>()
        .produce_all(&events)
        .await
        .unwrap();
    let h = spawn_ledger(&crashing).await;
    wait_for_rows(&db, 100, 60).await;
    h.abort();

    // Second life: everything comes again, and the inbox skips all of it.
    let orm = start(builder, &db).await;
    let h = spawn_ledger(&orm).await;
    wait_stats(&h, "all 100 redelivered", |s| s.duplicates == 100).await;
    assert_eq!(h.stats().handled, 0);
    assert_once_each_and_key_order(&ledger(&db).await, 100);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_joining_mid_stream_applies_nothing_twice_and_loses_nothing() {
    let Some((orm, db)) = setup("inbox-join").await else {
        return;
    };
    let payments = orm.topic::<PaymentReceived>();
    let first = spawn_ledger(&orm).await;
    let total = 3_000;
    let events: Vec<PaymentReceived> = (0..total).map(|i| payment(i, 40)).collect();
    payments.produce_all(&events[..1_000]).await.unwrap();
    wait_stats(&first, "first consumer busy", |s| s.handled > 0).await;
    let second = spawn_ledger(&orm).await;
    payments.produce_all(&events[1_000..2_000]).await.unwrap();
    wait_stats(&second, "second consumer assigned", |s| s.assignments > 0).await;
    payments.produce_all(&events[2_000..]).await.unwrap();
    wait_for_rows(&db, total as usize, 120).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_once_each_and_key_order(&ledger(&db).await, total as usize);
    assert!(
        first.stats().revocations > 0,
        "the join rebalanced the first consumer"
    );
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_pauses_and_resumes_partitions_without_rebalancing() {
    let Some((orm, db)) = setup("inbox-slow").await else {
        return;
    };
    let events: Vec<PaymentReceived> = (0..200).map(|i| payment(i, 8)).collect();
    orm.topic::<PaymentReceived>()
        .produce_all(&events)
        .await
        .unwrap();
    let h = orm
        .topic::<PaymentReceived>()
        .handler_boxed(|txn, msg| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                apply(txn, msg).await
            })
        })
        .max_pending(8)
        .concurrency(2)
        .spawn()
        .await
        .unwrap();
    wait_for_rows(&db, 200, 120).await;
    let stats = h.stats();
    assert!(stats.pauses > 0 && stats.resumes > 0, "{stats:?}");
    assert_eq!(stats.assignments, 1, "no rebalance: {stats:?}");
    assert_eq!(stats.revocations, 0, "no rebalance: {stats:?}");
    assert!(
        stats.latency_p50 >= Duration::from_millis(10),
        "handlers sleep 10 ms: {stats:?}"
    );
    assert!(stats.latency_p99 >= stats.latency_p50);
    let lag = h.lag(Duration::from_secs(10)).await.unwrap();
    assert_eq!(lag.len(), 4, "{lag:?}");
    assert!(lag.iter().all(|l| l.lag == 0), "all consumed: {lag:?}");
    assert_once_each_and_key_order(&ledger(&db).await, 200);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_commits_exactly_what_was_applied() {
    let Some((orm, db)) = setup("inbox-shutdown").await else {
        return;
    };
    let events: Vec<PaymentReceived> = (0..3_000).map(|i| payment(i, 30)).collect();
    orm.topic::<PaymentReceived>()
        .produce_all(&events)
        .await
        .unwrap();
    let h = spawn_ledger(&orm).await;
    wait_stats(&h, "some progress", |s| s.handled >= 300).await;
    let stats = h.shutdown().await.unwrap();
    let rows = ledger(&db).await;
    assert_eq!(rows.len() as u64, stats.handled);
    assert!(rows.len() < 3_000, "shut down before the end");

    // What the group committed is exactly, per partition, the applied prefix.
    let reader = orm.topic::<PaymentReceived>().consume().await.unwrap();
    let committed = within(60, "the assignment", async {
        loop {
            let c = reader.committed(Duration::from_secs(10)).await.unwrap();
            if c.len() == 4 {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    for (partition, next) in committed {
        let mut applied: Vec<i64> = rows
            .iter()
            .filter(|r| r.3 == partition)
            .map(|r| r.4)
            .collect();
        applied.sort_unstable();
        let expected: Vec<i64> = (0..next.unwrap_or(0)).collect();
        assert_eq!(
            applied, expected,
            "partition {partition}: applied offsets = committed prefix"
        );
    }
    reader.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_applies_each_once_in_key_order_and_isolates_a_bad_message() {
    let Some((orm, db)) = setup("inbox-batch").await else {
        return;
    };
    let mut events: Vec<PaymentReceived> = (0..1_000).map(|i| payment(i, 16)).collect();
    events[500].amount = -1;
    orm.topic::<PaymentReceived>()
        .produce_all(&events)
        .await
        .unwrap();
    let h = orm
        .topic::<PaymentReceived>()
        .handler_boxed(|txn, msg| Box::pin(apply(txn, msg)))
        .batch(100, Duration::from_millis(20))
        .spawn()
        .await
        .unwrap();
    wait_stats(&h, "batch done", |s| {
        s.handled == 999 && s.dead_lettered == 1
    })
    .await;
    let stats = h.stats();
    assert!(stats.transactions < 500, "batched: {stats:?}");
    let rows = ledger(&db).await;
    assert!(rows.iter().all(|r| r.0 != 500));
    assert_once_each_and_key_order(&rows, 999);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purge_deletes_only_old_rows() {
    let Some((orm, db)) = setup("inbox-purge").await else {
        return;
    };
    orm.topic::<PaymentReceived>()
        .produce_all(&(0..10).map(|i| payment(i, 2)).collect::<Vec<_>>())
        .await
        .unwrap();
    let h = spawn_ledger(&orm).await;
    wait_for_rows(&db, 10, 60).await;
    h.shutdown().await.unwrap();
    // Age four rows past the retention (7 days by default).
    let eight_days_ms = 8 * 24 * 3600 * 1000_i64;
    db.execute_unprepared(&format!(
        "UPDATE payment_received_inbox SET processed_at = processed_at - {eight_days_ms} WHERE dedup_payment_id < 4"
    ))
    .await
    .unwrap();
    let purged = kafka_orm::inbox::purge_expired(&db, &[PaymentReceived::SPEC])
        .await
        .unwrap();
    assert_eq!(purged, 4);
    let left: Vec<i64> = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT dedup_payment_id FROM payment_received_inbox ORDER BY 1",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect();
    assert_eq!(left, (4..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox_round_trip() {
    let Some(builder) = real_kafka("inbox-sqlite") else {
        return;
    };
    let db = fresh_sqlite("inbox-sqlite").await;
    let orm = start(builder, &db).await;
    let payments = orm.topic::<PaymentReceived>();
    let events: Vec<PaymentReceived> = (0..50).map(|i| payment(i, 3)).collect();
    payments.produce_all(&events).await.unwrap();
    payments.produce_all(&events[..10]).await.unwrap(); // resent
    let h = payments
        .handler_boxed(|txn, msg| Box::pin(apply(txn, msg)))
        .concurrency(1)
        .spawn()
        .await
        .unwrap();
    wait_stats(&h, "all seen", |s| s.handled + s.duplicates == 60).await;
    assert_eq!(h.stats().duplicates, 10);
    assert_once_each_and_key_order(&ledger(&db).await, 50);
    h.shutdown().await.unwrap();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "inbox.shipments",
    key = "warehouse",
    inbox(dedup = "shipment_id"),
    group = "shipping",
    retry(attempts = 2, backoff = "10ms", max_backoff = "50ms"),
    retry_topics,
    dlq
)]
struct ShipmentRequested {
    shipment_id: i64,
    warehouse: String,
    /// How many attempts fail before one succeeds (`99`: all of them).
    fail_times: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_topics_retry_later_without_blocking_the_partition_then_dead_letter() {
    let Some((orm, _db)) = setup("inbox-retry-topics").await else {
        return;
    };
    let shipments = orm.topic::<ShipmentRequested>();
    let wh = |id, fail_times| ShipmentRequested {
        shipment_id: id,
        warehouse: "w1".into(),
        fail_times,
    };
    // 1 fails 3 times (2 in place + tier 1), 2 never fails, 3 always fails.
    shipments
        .produce_all(&[wh(1, 3), wh(2, 0), wh(3, 99)])
        .await
        .unwrap();
    let applied = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = applied.clone();
    let h = shipments
        .handler_boxed(move |_txn, msg| {
            let log = log.clone();
            Box::pin(async move {
                if msg.attempt() <= msg.fail_times {
                    return Err(
                        format!("attempt {} of {} fails", msg.attempt(), msg.shipment_id).into(),
                    );
                }
                log.lock().unwrap().push((msg.shipment_id, msg.attempt()));
                Ok(())
            })
        })
        .retry_topic_delays([
            Duration::from_millis(300),
            Duration::from_millis(300),
            Duration::from_millis(300),
        ])
        .spawn()
        .await
        .unwrap();
    wait_stats(&h, "1 and 2 applied, 3 dead-lettered", |s| {
        s.handled == 2 && s.dead_lettered == 1
    })
    .await;
    let applied = applied.lock().unwrap().clone();
    assert_eq!(
        applied[0],
        (2, 1),
        "2 was not blocked behind 1's retries: {applied:?}"
    );
    assert_eq!(
        applied[1],
        (1, 4),
        "1 succeeded on its 4th attempt, from retry tier 2: {applied:?}"
    );
    // Retries count in-place retries and tier hops: 1 failed 3 times (1 in place, 2 hops),
    // 3 failed 5 times (1 in place, 3 hops, then the dead-letter topic).
    assert_eq!(h.stats().retries, 3 + 4, "{:?}", h.stats());
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_gets_only_new_messages_and_writes_them_at_once() {
    let Some((orm, db)) = setup("inbox-batch-handler").await else {
        return;
    };
    let payments = orm.topic::<PaymentReceived>();
    let events: Vec<PaymentReceived> = (0..2_000).map(|i| payment(i, 25)).collect();
    payments.produce_all(&events).await.unwrap();
    payments.produce_all(&events[..300]).await.unwrap(); // resent: must be skipped
    let h = payments
        .batch_handler_boxed(500, Duration::from_millis(50), |txn, msgs| {
            Box::pin(async move {
                // One multi-row insert for the whole batch.
                let mut sql = String::from(
                    "INSERT INTO ledger (payment_id, account, seq, kafka_partition, kafka_offset) VALUES ",
                );
                let mut values = Vec::new();
                for (i, m) in msgs.iter().enumerate() {
                    let n = i * 5;
                    sql.push_str(&format!(
                        "{}(${}, ${}, ${}, ${}, ${})",
                        if i == 0 { "" } else { "," },
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5
                    ));
                    values.extend([
                        m.payment_id.into(),
                        m.account.clone().into(),
                        m.seq.into(),
                        m.partition().into(),
                        m.offset().into(),
                    ]);
                }
                txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
                    .await?;
                Ok(())
            })
        })
        .spawn()
        .await
        .unwrap();
    wait_stats(&h, "all seen", |s| s.handled + s.duplicates == 2_300).await;
    let stats = h.stats();
    assert_eq!(stats.duplicates, 300, "{stats:?}");
    assert!(stats.transactions <= 40, "batched: {stats:?}");
    assert_once_each_and_key_order(&ledger(&db).await, 2_000);
    h.shutdown().await.unwrap();
}
