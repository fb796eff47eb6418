//! Handlers without a database (`handler_without_database`): on the real broker, with no
//! database anywhere in the context, they retry with backoff, go through the retry topics,
//! dead-letter what keeps failing, keep each key's order across lanes and retries, and
//! commit by watermark, so a restarted handler resumes after what it finished.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::deps::rdkafka::Message;
use kafka_orm::deps::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::message::Headers as _;
use kafka_orm::handler::{DLQ_ATTEMPTS, DLQ_ERROR};
use kafka_orm::{Delivery, Error, HandlerStats, KafkaOrm, RunningHandler, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

/// Retries in place, then the dead-letter topic.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "nodb.clicks",
    key = "user",
    partitions = 3,
    group = "nodb-clicks",
    retry(attempts = 3, backoff = "20ms", max_backoff = "100ms"),
    dlq
)]
struct Click {
    id: i64,
    user: String,
    /// Attempts that fail before one succeeds (`u32::MAX`: every one).
    fail_times: u32,
}

/// One attempt in place, then the retry topics, then the dead-letter topic.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "nodb.views",
    key = "user",
    partitions = 1,
    group = "nodb-views",
    retry(attempts = 1, backoff = "10ms", max_backoff = "10ms"),
    retry_topics,
    dlq
)]
struct View {
    id: i64,
    user: String,
    fail_times: u32,
}

/// With an inbox: only a handler in a transaction makes sense of it.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "nodb.deduped", inbox(dedup = "id"), group = "nodb-deduped")]
struct Deduped {
    id: i64,
}

/// A context on the real broker with no database.
async fn context(test: &str) -> Option<KafkaOrm> {
    let orm = real_kafka(test)?.build().await.unwrap();
    assert!(orm.database().is_none());
    Some(orm)
}

fn click(id: i64, user: &str, fail_times: u32) -> Click {
    Click {
        id,
        user: user.into(),
        fail_times,
    }
}

/// `(id, attempt)` of every call, in call order.
type Calls = Arc<Mutex<Vec<(i64, u32)>>>;

/// A handler of clicks that fails `fail_times` attempts, recording each call.
async fn clicks(orm: &KafkaOrm, calls: &Calls) -> RunningHandler {
    let calls = Arc::clone(calls);
    orm.topic::<Click>()
        .handler_without_database(async move |msg: &Delivery<Click>| {
            calls.lock().unwrap().push((msg.id, msg.attempt()));
            if msg.attempt() <= msg.fail_times {
                return Err(format!("click {} failed on attempt {}", msg.id, msg.attempt()).into());
            }
            Ok(())
        })
        .spawn()
        .await
        .unwrap()
}

async fn wait_stats(h: &RunningHandler, what: &str, ok: impl Fn(&HandlerStats) -> bool) {
    within(60, what, async {
        while !ok(&h.stats()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The committed records of `topic` with their headers, read from the start until quiet.
async fn records(orm: &KafkaOrm, topic: &str) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false");
    let reader: StreamConsumer = cfg.create().unwrap();
    reader.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
        let headers = m.headers().map_or_else(BTreeMap::new, |hs| {
            hs.iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_string(), value.into_owned())
                })
                .collect()
        });
        out.push((m.payload().unwrap_or_default().to_vec(), headers));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_retried_with_backoff_then_handled_without_a_database() {
    let Some(orm) = context("nodb_retry").await else {
        return;
    };
    let calls = Calls::default();
    let handler = clicks(&orm, &calls).await;
    orm.topic::<Click>()
        .produce(&click(1, "u1", 2))
        .await
        .unwrap();
    wait_stats(&handler, "the click handled on its third attempt", |s| {
        s.handled == 1
    })
    .await;
    let stats = handler.shutdown().await.unwrap();
    assert_eq!(*calls.lock().unwrap(), [(1, 1), (1, 2), (1, 3)]);
    assert_eq!((stats.retries, stats.dead_lettered), (2, 0));
    assert_eq!(stats.transactions, 0, "no database, no transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_is_dead_lettered_and_the_partition_moves_on() {
    let Some(orm) = context("nodb_dlq").await else {
        return;
    };
    let calls = Calls::default();
    let handler = clicks(&orm, &calls).await;
    let topic = orm.topic::<Click>();
    // One key, one partition: the good click after the poison one waits for it.
    topic.produce(&click(1, "u1", u32::MAX)).await.unwrap();
    topic.produce(&click(2, "u1", 0)).await.unwrap();
    wait_stats(
        &handler,
        "the poison dead-lettered, the next handled",
        |s| s.dead_lettered == 1 && s.handled == 1,
    )
    .await;
    let stats = handler.shutdown().await.unwrap();
    assert_eq!(stats.retries, 2);
    assert_eq!(*calls.lock().unwrap(), [(1, 1), (1, 2), (1, 3), (2, 1)]);
    let dead = records(&orm, &format!("{}.dlq", topic.name())).await;
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    let (payload, headers) = &dead[0];
    let original: Click = serde_json::from_slice(payload).unwrap();
    assert_eq!(original.id, 1, "the raw record, as it was");
    assert_eq!(headers[DLQ_ATTEMPTS], "3");
    assert!(
        headers[DLQ_ERROR].contains("click 1 failed on attempt 3"),
        "{headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_goes_through_the_retry_topics_without_a_database() {
    let Some(orm) = context("nodb_tiers").await else {
        return;
    };
    let calls = Calls::default();
    let seen = Arc::clone(&calls);
    let handler = orm
        .topic::<View>()
        .handler_without_database(async move |msg| {
            seen.lock().unwrap().push((msg.id, msg.attempt()));
            if msg.attempt() <= msg.fail_times {
                return Err("not yet".into());
            }
            Ok(())
        })
        .retry_topic_delays([Duration::from_millis(100); 3])
        .spawn()
        .await
        .unwrap();
    let topic = orm.topic::<View>();
    // Handled in tier 2; failing everywhere: tier 1, 2, 3, then the dead-letter topic.
    topic
        .produce(&View {
            id: 1,
            user: "a".into(),
            fail_times: 2,
        })
        .await
        .unwrap();
    topic
        .produce(&View {
            id: 2,
            user: "b".into(),
            fail_times: u32::MAX,
        })
        .await
        .unwrap();
    wait_stats(
        &handler,
        "one handled from a tier, one dead-lettered",
        |s| s.handled == 1 && s.dead_lettered == 1,
    )
    .await;
    let stats = handler.shutdown().await.unwrap();
    let calls = calls.lock().unwrap().clone();
    let of = |id| {
        calls
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| c.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(1), [1, 2, 3], "in place, then tier 1, then tier 2");
    assert_eq!(of(2), [1, 2, 3, 4], "in place and three tiers");
    assert_eq!(
        stats.retries, 5,
        "two tier hops for the first, three for the second: {stats:?}"
    );
    let dead = records(&orm, &format!("{}.dlq", topic.name())).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1[DLQ_ATTEMPTS], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_order_holds_across_key_lanes_and_retries() {
    let Some(orm) = context("nodb_order").await else {
        return;
    };
    let seen: Arc<Mutex<BTreeMap<String, Vec<i64>>>> = Arc::default();
    let record = Arc::clone(&seen);
    let handler = orm
        .topic::<Click>()
        .handler_without_database(async move |msg| {
            // Some messages fail once; a later one of the same key must wait for them.
            if msg.attempt() <= msg.fail_times {
                return Err("once".into());
            }
            tokio::time::sleep(Duration::from_millis(u64::from(msg.id as u32 % 3))).await;
            record
                .lock()
                .unwrap()
                .entry(msg.user.clone())
                .or_default()
                .push(msg.id);
            Ok(())
        })
        .key_concurrency(4)
        .concurrency(8)
        .spawn()
        .await
        .unwrap();
    let users = 12;
    let events: Vec<Click> = (0..240)
        .map(|id| click(id, &format!("user-{}", id % users), u32::from(id % 7 == 0)))
        .collect();
    orm.topic::<Click>().produce_all(&events).await.unwrap();
    wait_stats(&handler, "all 240 clicks handled", |s| s.handled == 240).await;
    let stats = handler.shutdown().await.unwrap();
    assert!(
        stats.retries >= 35,
        "the failing ones were retried: {stats:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), users as usize);
    for (user, ids) in seen.iter() {
        let expected: Vec<i64> = events
            .iter()
            .filter(|e| &e.user == user)
            .map(|e| e.id)
            .collect();
        assert_eq!(
            ids, &expected,
            "{user}'s clicks in the order they were produced"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_so_a_restarted_handler_resumes_after_what_it_handled() {
    let Some(orm) = context("nodb_restart").await else {
        return;
    };
    let topic = orm.topic::<Click>();
    let first: Vec<Click> = (0..30)
        .map(|id| click(id, &format!("u{}", id % 5), 0))
        .collect();
    topic.produce_all(&first).await.unwrap();
    let calls = Calls::default();
    let handler = clicks(&orm, &calls).await;
    wait_stats(&handler, "the first 30 handled", |s| s.handled == 30).await;
    // Committed while running (every second), not only on shutdown.
    within(30, "the group's committed lag reaching 0", async {
        loop {
            let lag = handler.committed_lag(Duration::from_secs(5)).await.unwrap();
            if !lag.is_empty() && lag.iter().all(|p| p.lag == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    handler.shutdown().await.unwrap();

    let second: Vec<Click> = (30..50)
        .map(|id| click(id, &format!("u{}", id % 5), 0))
        .collect();
    topic.produce_all(&second).await.unwrap();
    let again = Calls::default();
    let handler = clicks(&orm, &again).await;
    wait_stats(&handler, "the next 20 handled", |s| s.handled == 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = handler.shutdown().await.unwrap();
    assert_eq!(stats.handled, 20);
    let ids: HashSet<i64> = again.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(
        ids,
        (30..50).collect(),
        "the restart resumed after the committed offsets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_an_inbox_refuses_a_handler_without_a_database() {
    let Some(orm) = context("nodb_inbox").await else {
        return;
    };
    let refused = orm
        .topic::<Deduped>()
        .handler_without_database(async |_msg| Ok(()))
        .spawn()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Config(m) if m.contains("has an inbox")),
        "{refused}"
    );
    // And a handler in a transaction still needs the database.
    let no_db = orm
        .topic::<Click>()
        .handler(async |_txn, _msg| Ok(()))
        .spawn()
        .await;
    assert!(matches!(no_db, Err(Error::NoDatabase { .. })), "{no_db:?}");
}
