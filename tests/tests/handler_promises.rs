//! Handler promises that only show under timing: the background inbox purge, the revoke
//! drain (measured as redeliveries of already-applied messages after a rebalance), and
//! watermark commits with `key_concurrency` when later offsets finish first. Against real
//! Kafka and real PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use kafka_orm::deps::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use kafka_orm::{HandlerError, HandlerStats, KafkaOrm, RunningHandler, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use serde::{Deserialize, Serialize};

/// Inbox rows expire after 3 s.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "promises.expiring",
    key = "id",
    inbox(dedup = "id", retention = "3s"),
    partitions = 1,
    group = "expiring"
)]
struct Expiring {
    id: i64,
}

/// With the inbox: a redelivered applied message is skipped (and counted).
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "promises.transfers",
    key = "account",
    inbox(dedup = "id"),
    partitions = 4,
    group = "rebalance-inbox"
)]
struct Transfer {
    id: i64,
    account: String,
}

/// Without the inbox: a redelivered applied message reaches the handler body again.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "promises.plain",
    key = "account",
    partitions = 4,
    group = "rebalance-plain"
)]
struct PlainTransfer {
    id: i64,
    account: String,
}

/// One partition, many keys: `key_concurrency` lanes finish out of offset order.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "promises.laned",
    key = "account",
    inbox(dedup = "id"),
    partitions = 1,
    group = "laned"
)]
struct Laned {
    id: i64,
    account: String,
}

async fn setup(test: &str) -> Option<(KafkaOrm, DatabaseConnection)> {
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    db.execute_unprepared(
        "CREATE TABLE ledger (row_id BIGSERIAL PRIMARY KEY, id BIGINT NOT NULL, \
         account TEXT NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL, \
         run INTEGER NOT NULL)",
    )
    .await
    .unwrap();
    let orm = builder.database(db.clone()).build().await.unwrap();
    Some((orm, db))
}

/// One ledger row per application (no unique constraint: twice shows as two rows).
async fn record<C: ConnectionTrait>(
    conn: &C,
    id: i64,
    account: &str,
    partition: i32,
    offset: i64,
    run: i32,
) -> Result<(), HandlerError> {
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO ledger (id, account, kafka_partition, kafka_offset, run) VALUES ($1, $2, $3, $4, $5)",
        [
            id.into(),
            account.into(),
            partition.into(),
            offset.into(),
            run.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// `(id, kafka_offset, run)` of every ledger row, in application order.
async fn ledger(db: &DatabaseConnection) -> Vec<(i64, i64, i32)> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT id, kafka_offset, run FROM ledger ORDER BY row_id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
            r.try_get_by_index(2).unwrap(),
        )
    })
    .collect()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

async fn wait_stats(h: &RunningHandler, secs: u64, what: &str, ok: impl Fn(&HandlerStats) -> bool) {
    within(secs, what, async {
        while !ok(&h.stats()) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
}

async fn wait_ledger(db: &DatabaseConnection, n: usize, secs: u64) {
    within(secs, &format!("{n} ledger rows"), async {
        while ledger(db).await.len() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The background inbox purge.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_handler_purges_expired_inbox_rows_by_itself_and_keeps_fresh_ones() {
    let Some((orm, db)) = setup("promises-purge").await else {
        return;
    };
    let topic = orm.topic::<Expiring>();
    let h = topic
        .handler_boxed(|txn, msg| {
            Box::pin(record(txn, msg.id, "-", msg.partition(), msg.offset(), 1))
        })
        .purge_interval(Duration::from_millis(200))
        .spawn()
        .await
        .unwrap();
    let old: Vec<Expiring> = (0..10).map(|id| Expiring { id }).collect();
    topic.produce_all(&old).await.unwrap();
    wait_stats(&h, 60, "the old batch handled", |s| s.handled == 10).await;
    // Past the 3 s retention of the old rows, then a fresh batch.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let fresh: Vec<Expiring> = (10..20).map(|id| Expiring { id }).collect();
    topic.produce_all(&fresh).await.unwrap();
    wait_stats(&h, 60, "the fresh batch handled", |s| s.handled == 20).await;
    // No purge is called here: only the handler's own purge task can delete rows.
    within(10, "the expired inbox rows to be purged", async {
        while count(
            &db,
            "SELECT COUNT(*) FROM expiring_inbox WHERE dedup_id < 10",
        )
        .await
            > 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let kept: Vec<i64> = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT dedup_id FROM expiring_inbox ORDER BY 1",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect();
    assert_eq!(kept, (10..20).collect::<Vec<_>>(), "fresh rows are kept");
    assert_eq!(
        ledger(&db).await.len(),
        20,
        "the purge touches only the inbox"
    );
    h.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The revoke drain, measured: after a consumer joins mid-stream, how often did an
// already-applied message come back?

const REBALANCE_TOTAL: i64 = 1_200;
/// Handler time per message: at 4 in flight, the backlog lasts several seconds, so the
/// join always finds work in flight.
const REBALANCE_WORK: Duration = Duration::from_millis(20);

/// Runs the join scenario: `spawn(run)` starts instance `run` (1, then 2 mid-stream).
/// Returns the two instances' final stats.
async fn join_mid_stream<S, F>(
    db: &DatabaseConnection,
    produce: impl std::future::Future<Output = ()>,
    spawn: S,
) -> (HandlerStats, HandlerStats)
where
    S: Fn(i32) -> F,
    F: std::future::Future<Output = RunningHandler>,
{
    let first = spawn(1).await;
    produce.await;
    wait_stats(&first, 60, "the first instance busy", |s| s.handled >= 100).await;
    let second = spawn(2).await;
    wait_stats(&second, 60, "the second instance assigned", |s| {
        s.assignments > 0
    })
    .await;
    wait_ledger(db, REBALANCE_TOTAL as usize, 120).await;
    // Late redeliveries would show within this.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = (first.stats(), second.stats());
    assert!(
        a.revocations > 0,
        "the join rebalanced the first instance: {a:?}"
    );
    assert!(
        a.handled > 0 && b.handled > 0,
        "both instances applied messages: {a:?} {b:?}"
    );
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    (a, b)
}

fn account(id: i64) -> String {
    format!("acct-{}", id % 40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_join_no_applied_message_reaches_the_handler_body_again() {
    // Without the inbox every redelivery of an applied message runs the handler body: the
    // revoke drain (finish in-flight work, commit it, then let the partitions go) is all
    // that keeps a rebalance from re-applying finished work.
    let Some((orm, db)) = setup("promises-rebalance-plain").await else {
        return;
    };
    let again = Arc::new(AtomicU64::new(0));
    let spawn = |run: i32| {
        let (orm, db, again) = (orm.clone(), db.clone(), Arc::clone(&again));
        async move {
            orm.topic::<PlainTransfer>()
                .handler_boxed(move |txn, msg| {
                    let (db, again) = (db.clone(), Arc::clone(&again));
                    Box::pin(async move {
                        // Applied (and committed) before? Read outside this transaction.
                        let seen = count(
                            &db,
                            &format!("SELECT COUNT(*) FROM ledger WHERE id = {}", msg.id),
                        )
                        .await;
                        if seen > 0 {
                            again.fetch_add(1, Relaxed);
                        }
                        tokio::time::sleep(REBALANCE_WORK).await;
                        record(
                            txn,
                            msg.id,
                            &msg.account,
                            msg.partition(),
                            msg.offset(),
                            run,
                        )
                        .await
                    })
                })
                .concurrency(4)
                .spawn()
                .await
                .unwrap()
        }
    };
    let events: Vec<PlainTransfer> = (0..REBALANCE_TOTAL)
        .map(|id| PlainTransfer {
            id,
            account: account(id),
        })
        .collect();
    let topic = orm.topic::<PlainTransfer>();
    let (a, b) = join_mid_stream(
        &db,
        async {
            topic.produce_all(&events).await.unwrap();
        },
        spawn,
    )
    .await;
    let rows = ledger(&db).await;
    let distinct: HashSet<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(distinct.len() as i64, REBALANCE_TOTAL, "nothing lost");
    let reapplied = rows.len() - distinct.len();
    let seen_again = again.load(Relaxed);
    eprintln!(
        "applied twice: {reapplied}, handler body saw an applied message: {seen_again}; first {a:?}, second {b:?}"
    );
    assert_eq!(
        (reapplied, seen_again),
        (0, 0),
        "the revoke drain committed all finished work before the partitions moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_join_the_inbox_has_no_applied_message_to_skip() {
    // With the inbox a redelivered applied message is skipped, not re-applied, so the
    // ledger is right either way; the inbox's skip count shows whether the drain
    // really happened.
    let Some((orm, db)) = setup("promises-rebalance-inbox").await else {
        return;
    };
    let spawn = |run: i32| {
        let orm = orm.clone();
        async move {
            orm.topic::<Transfer>()
                .handler_boxed(move |txn, msg| {
                    Box::pin(async move {
                        tokio::time::sleep(REBALANCE_WORK).await;
                        record(
                            txn,
                            msg.id,
                            &msg.account,
                            msg.partition(),
                            msg.offset(),
                            run,
                        )
                        .await
                    })
                })
                .concurrency(4)
                .spawn()
                .await
                .unwrap()
        }
    };
    let events: Vec<Transfer> = (0..REBALANCE_TOTAL)
        .map(|id| Transfer {
            id,
            account: account(id),
        })
        .collect();
    let topic = orm.topic::<Transfer>();
    let (a, b) = join_mid_stream(
        &db,
        async {
            topic.produce_all(&events).await.unwrap();
        },
        spawn,
    )
    .await;
    let rows = ledger(&db).await;
    let distinct: HashSet<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        (rows.len() as i64, distinct.len() as i64),
        (REBALANCE_TOTAL, REBALANCE_TOTAL),
        "each applied once"
    );
    eprintln!("inbox skips: first {a:?}, second {b:?}");
    assert_eq!(
        a.duplicates + b.duplicates,
        0,
        "no applied message was delivered again after the join"
    );
}

// ---------------------------------------------------------------------------------------
// Watermark commits with `key_concurrency`, when later offsets finish first.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_key_lanes_the_commit_never_passes_an_unfinished_message() {
    let Some((orm, db)) = setup("promises-lanes").await else {
        return;
    };
    // One partition: offsets 0..60, two slow keys at offsets 10 and 30, the rest on 20
    // fast keys spread over the lanes. The slow ones never finish in the first life, so
    // everything after offset 10 that finishes there finishes before an earlier offset.
    let slow = |id: i64| id == 10 || id == 30;
    let events: Vec<Laned> = (0..60)
        .map(|id| Laned {
            id,
            account: if slow(id) {
                format!("slow-{id}")
            } else {
                format!("fast-{}", id % 20)
            },
        })
        .collect();
    let topic = orm.topic::<Laned>();
    topic.produce_all(&events).await.unwrap();
    let started_slow = Arc::new(AtomicU64::new(0));
    let crashed = Arc::new(AtomicBool::new(false));
    let first = {
        let (started_slow, crashed) = (Arc::clone(&started_slow), Arc::clone(&crashed));
        topic
            .handler_boxed(move |txn, msg| {
                let (started_slow, crashed) = (Arc::clone(&started_slow), Arc::clone(&crashed));
                Box::pin(async move {
                    if msg.account.starts_with("slow") {
                        started_slow.fetch_add(1, Relaxed);
                        // In flight until the crash, then never committed (as when the
                        // process dies; `abort()` alone leaves in-flight handlers running).
                        while !crashed.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        return Err("crashed".into());
                    }
                    record(txn, msg.id, &msg.account, 0, msg.offset(), 1).await
                })
            })
            .key_concurrency(4)
            .concurrency(4)
            .spawn()
            .await
            .unwrap()
    };
    within(60, "both slow messages in flight", async {
        while started_slow.load(Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Let every lane not stuck behind a slow key finish, and librdkafka's 1 s auto-commit
    // commit what was stored.
    let mut last = 0;
    within(60, "the first life to settle", async {
        loop {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let n = first.stats().handled;
            if n == last {
                return;
            }
            last = n;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let applied_first: BTreeMap<i64, i64> = ledger(&db)
        .await
        .into_iter()
        .map(|(id, offset, _)| (offset, id))
        .collect();
    assert!(
        (0..10).all(|o| applied_first.contains_key(&o)),
        "everything before the first slow message finished: {applied_first:?}"
    );
    let later_done = applied_first.keys().filter(|o| **o > 10).count();
    assert!(
        later_done > 0,
        "later offsets finished while offset 10 was in flight: {applied_first:?}"
    );
    first.abort();
    crashed.store(true, Relaxed);

    // Second life: whatever the group committed, it must redeliver offset 10 and
    // everything after it that was not applied; and it must not go back before offset 10
    // (what finished in order was committed).
    let second = topic
        .handler_boxed(|txn, msg| Box::pin(record(txn, msg.id, &msg.account, 0, msg.offset(), 2)))
        .key_concurrency(4)
        .spawn()
        .await
        .unwrap();
    wait_stats(&second, 60, "the second life assigned", |s| {
        s.assignments > 0
    })
    .await;
    // Until everything is applied, or the second life has nothing more to do.
    within(60, "the second life to settle", async {
        let mut idle = 0;
        let mut last = None;
        while ledger(&db).await.len() < 60 && idle < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = second.stats();
            let now = Some(s.handled + s.duplicates);
            idle = if now == last { idle + 1 } else { 0 };
            last = now;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = ledger(&db).await;
    let ids: HashSet<i64> = rows.iter().map(|r| r.0).collect();
    let missing: Vec<i64> = (0..60).filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "nothing skipped, but never applied: {missing:?} (the commit passed an unfinished message)"
    );
    assert_eq!(rows.len(), 60, "nothing applied twice: {rows:?}");
    for slow_id in [10, 30] {
        assert!(
            rows.iter().any(|r| r.0 == slow_id && r.2 == 2),
            "the unfinished message {slow_id} was redelivered and applied in the second life"
        );
    }
    let stats = second.stats();
    eprintln!(
        "first life applied offsets {:?}; second life {stats:?}",
        applied_first.keys().collect::<Vec<_>>()
    );
    // Redelivered = what the second life received: offsets 10..60 exactly.
    assert_eq!(
        stats.handled + stats.duplicates,
        50,
        "the second life starts at offset 10, the lowest unfinished one: {stats:?}"
    );
    assert_eq!(
        stats.duplicates as usize, later_done,
        "the later offsets that had finished come again and are skipped: {stats:?}"
    );
    second.shutdown().await.unwrap();
}
