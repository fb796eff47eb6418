//! Handlers under faults, against real Kafka and PostgreSQL: a dead letter (or retry-tier
//! record) is written once even when the consumer dies right after sending it, and the
//! revoke drain works on a current-thread runtime.

use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka_orm::deps::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement,
};
use kafka_orm::{Delivery, HandlerError, HandlerFuture, KafkaOrm, RunningHandler, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "faults.payments",
    key = "account",
    inbox(dedup = "id"),
    group = "faults",
    retry(attempts = 1, backoff = "10ms", max_backoff = "10ms"),
    dlq,
    partitions = 2
)]
struct Payment {
    id: i64,
    account: String,
    amount: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "faults.refunds",
    key = "account",
    inbox(dedup = "id"),
    group = "faults-refunds",
    retry(attempts = 1, backoff = "10ms", max_backoff = "10ms"),
    retry_topics,
    dlq,
    partitions = 2
)]
struct Refund {
    id: i64,
    account: String,
    amount: i64,
}

async fn setup(test: &str) -> Option<(KafkaOrm, DatabaseConnection)> {
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    db.execute_unprepared(
        "CREATE TABLE applied (id BIGINT NOT NULL, kafka_partition INT NOT NULL, kafka_offset BIGINT NOT NULL)",
    )
    .await
    .unwrap();
    Some((builder.database(db.clone()).build().await.unwrap(), db))
}

/// Records the application (no unique constraint: twice would show), fails on a negative
/// amount.
async fn apply(
    txn: &DatabaseTransaction,
    id: i64,
    amount: i64,
    d: (i32, i64),
) -> Result<(), HandlerError> {
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO applied (id, kafka_partition, kafka_offset) VALUES ($1, $2, $3)",
        [id.into(), d.0.into(), d.1.into()],
    ))
    .await?;
    if amount < 0 {
        return Err(format!("negative amount {amount}").into());
    }
    Ok(())
}

async fn payments(orm: &KafkaOrm) -> RunningHandler {
    orm.topic::<Payment>()
        .handler_boxed(|txn, m| Box::pin(apply(txn, m.id, m.amount, (m.partition(), m.offset()))))
        .spawn()
        .await
        .unwrap()
}

async fn refunds(orm: &KafkaOrm) -> RunningHandler {
    orm.topic::<Refund>()
        .handler_boxed(|txn, m| Box::pin(apply(txn, m.id, m.amount, (m.partition(), m.offset()))))
        // Far in the future: the tier's record stays put while we count it.
        .retry_topic_delays([Duration::from_secs(3600); 3])
        .spawn()
        .await
        .unwrap()
}

async fn applied(db: &DatabaseConnection) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT id FROM applied ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get_by_index(0).unwrap())
    .collect()
}

/// Counts the committed records of `topic` (read from the start until quiet).
async fn count_records(orm: &KafkaOrm, topic: &str) -> usize {
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{topic}-counter"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false");
    let reader: StreamConsumer = cfg.create().unwrap();
    reader.subscribe(&[topic]).unwrap();
    let mut n = 0;
    while tokio::time::timeout(Duration::from_secs(5), reader.recv())
        .await
        .is_ok()
    {
        n += 1;
    }
    n
}

/// Kills `h` the moment `done` holds, as a crash right after the send would.
async fn abort_when(h: RunningHandler, what: &str, done: impl Fn(&RunningHandler) -> bool) {
    within(60, what, async {
        while !done(&h) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_right_after_dead_lettering_does_not_dead_letter_again() {
    let Some((orm, db)) = setup("faults-dlq-once").await else {
        return;
    };
    let topic = orm.topic::<Payment>();
    topic
        .produce(&Payment {
            id: 0,
            account: "a".into(),
            amount: -1,
        })
        .await
        .unwrap();
    for id in 1..=10 {
        topic
            .produce(&Payment {
                id,
                account: "a".into(),
                amount: 1,
            })
            .await
            .unwrap();
    }
    let first = payments(&orm).await;
    abort_when(first, "the poison message to be dead-lettered", |h| {
        h.stats().dead_lettered == 1
    })
    .await;
    let second = payments(&orm).await;
    within(60, "every good payment applied", async {
        loop {
            let ids = applied(&db).await;
            if (1..=10).all(|id| ids.contains(&id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let dlq = format!("{}.dlq", topic.name());
    assert_eq!(
        count_records(&orm, &dlq).await,
        1,
        "one dead letter for one poison message"
    );
    let stats = second.shutdown().await.unwrap();
    assert_eq!(
        stats.dead_lettered, 0,
        "the successor did not dead-letter it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_right_after_forwarding_to_a_retry_tier_does_not_forward_again() {
    let Some((orm, _db)) = setup("faults-tier-once").await else {
        return;
    };
    let topic = orm.topic::<Refund>();
    topic
        .produce(&Refund {
            id: 0,
            account: "a".into(),
            amount: -1,
        })
        .await
        .unwrap();
    let first = refunds(&orm).await;
    abort_when(first, "the failing message to go to retry tier 1", |h| {
        h.stats().retries == 1
    })
    .await;
    let second = refunds(&orm).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tier = format!("{}.retry-1", topic.name());
    assert_eq!(
        count_records(&orm, &tier).await,
        1,
        "forwarded to the tier once"
    );
    let stats = second.shutdown().await.unwrap();
    assert_eq!(stats.retries, 0, "the successor did not forward it again");
}

fn slow<'a>(txn: &'a DatabaseTransaction, m: &'a Delivery<Payment>) -> HandlerFuture<'a> {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        apply(txn, m.id, 1, (m.partition(), m.offset())).await
    })
}

/// On a current-thread runtime the revoke drain must not wait on the only thread that
/// could finish the work it waits for.
#[tokio::test(flavor = "current_thread")]
async fn the_revoke_drain_works_on_a_current_thread_runtime() {
    let Some((orm, db)) = setup("faults-current-thread").await else {
        return;
    };
    let topic = orm.topic::<Payment>();
    for id in 1..=40 {
        topic
            .produce(&Payment {
                id,
                account: format!("a{}", id % 4),
                amount: 1,
            })
            .await
            .unwrap();
    }
    let first = orm
        .topic::<Payment>()
        .handler(slow)
        .drain_timeout(Duration::from_secs(30))
        .spawn()
        .await
        .unwrap();
    within(30, "the first handler to start applying", async {
        while first.stats().handled == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // A second member joins: the first must revoke, draining its in-flight message.
    let t0 = Instant::now();
    let second = orm
        .topic::<Payment>()
        .handler(slow)
        .drain_timeout(Duration::from_secs(30))
        .spawn()
        .await
        .unwrap();
    within(60, "the revocation to complete", async {
        while first.stats().revocations == 0 || second.stats().assignments == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the rebalance took {took:?}: the drain waited for its timeout (30 s)"
    );
    within(60, "all 40 applied", async {
        loop {
            let mut ids = applied(&db).await;
            ids.dedup();
            if ids.len() == 40 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let ids = applied(&db).await;
    assert_eq!(ids.len(), 40, "nothing applied twice: {ids:?}");
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

fn stuck<'a>(txn: &'a DatabaseTransaction, m: &'a Delivery<Payment>) -> HandlerFuture<'a> {
    Box::pin(async move {
        apply(txn, m.id, 1, (m.partition(), m.offset())).await?;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_running_handlers_and_hands_the_partitions_over() {
    let Some((orm, db)) = setup("faults-abort").await else {
        return;
    };
    let topic = orm.topic::<Payment>();
    for id in 1..=2 {
        // One per partition's worth of keys: both partitions get a stuck handler.
        topic
            .produce(&Payment {
                id,
                account: format!("a{id}"),
                amount: 1,
            })
            .await
            .unwrap();
    }
    let first = orm.topic::<Payment>().handler(stuck).spawn().await.unwrap();
    within(30, "the first handler to be stuck in a message", async {
        while first.stats().assignments == 0 || applied_in_flight(&db).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    first.abort();
    let second = payments(&orm).await;
    within(30, "the second handler to apply both", async {
        while applied(&db).await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        applied(&db).await,
        vec![1, 2],
        "each applied once, by the second handler"
    );
    second.shutdown().await.unwrap();
}

/// Rows written by transactions still open (the stuck handler's), seen through
/// PostgreSQL's activity view: any backend idle in a transaction.
async fn applied_in_flight(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index(0)
    .unwrap()
}
