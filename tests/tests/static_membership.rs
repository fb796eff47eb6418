//! A handler given `.instance_id(..)` is a static group member: killed and restarted under
//! the same name within the session timeout, it gets its partitions back without a
//! rebalance, so the other member of its group sees no revocation and no new assignment
//! and keeps its own partitions all along (README, "What holds"). On the real broker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::{Delivery, HandlerStats, KafkaOrm, RunningHandler, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "static.ticks",
    key = "user",
    partitions = 4,
    group = "static-ticks"
)]
struct Tick {
    id: i64,
    user: String,
}

type Seen = Arc<Mutex<HashSet<i64>>>;

/// One member of the group, recording the ids it handled.
async fn member(orm: &KafkaOrm, instance_id: &str, seen: &Seen) -> RunningHandler {
    let seen = Arc::clone(seen);
    orm.topic::<Tick>()
        .handler_without_database(async move |msg: &Delivery<Tick>| {
            seen.lock().unwrap().insert(msg.id);
            Ok(())
        })
        .instance_id(instance_id)
        .spawn()
        .await
        .unwrap()
}

/// Waits until `ok` holds for the handler's stats.
async fn until(h: &RunningHandler, what: &str, ok: impl Fn(&HandlerStats) -> bool) {
    within(60, what, async {
        while !ok(&h.stats()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Produces ticks `ids` over 16 keys (every partition) and waits until `seen` has them all.
async fn produce_and_see(orm: &KafkaOrm, ids: std::ops::Range<i64>, seen: &Seen, what: &str) {
    let ticks: Vec<Tick> = ids
        .clone()
        .map(|id| Tick {
            id,
            user: format!("u{}", id % 16),
        })
        .collect();
    orm.topic::<Tick>().produce_all(&ticks).await.unwrap();
    within(60, what, async {
        while !ids.clone().all(|id| seen.lock().unwrap().contains(&id)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_under_its_name_gets_its_partitions_back_without_a_rebalance() {
    let Some(builder) = real_kafka("static_membership") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let seen: Seen = Arc::default();

    let first = member(&orm, "pod-a", &seen).await;
    until(&first, "pod-a assigned", |s| s.assignments > 0).await;
    let other = member(&orm, "pod-b", &seen).await;
    until(&other, "pod-b assigned", |s| s.assignments > 0).await;
    // Both members hold partitions: every partition's messages are handled.
    produce_and_see(&orm, 0..200, &seen, "the first 200 ticks handled").await;
    let settled = other.stats();

    // A crash of pod-a (no LeaveGroup from a static member), and a restart under its name
    // well within the session timeout.
    first.abort();
    let restarted = member(&orm, "pod-a", &seen).await;
    until(&restarted, "pod-a assigned again", |s| s.assignments > 0).await;
    produce_and_see(&orm, 200..400, &seen, "the next 200 ticks handled").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a late rebalance would show by now

    let after = other.stats();
    assert_eq!(
        (after.revocations, after.assignments),
        (settled.revocations, settled.assignments),
        "pod-b saw a rebalance while pod-a restarted under its instance id"
    );
    restarted.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}
