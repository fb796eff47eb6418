//! One owner per bucket, whatever stalls: relay lease fencing and fast failover, against
//! real PostgreSQL (and librdkafka's mock cluster where a broker outage is injected: the
//! real broker is shared by the whole suite and cannot be stopped under other tests).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::mocking::MockCluster;
use kafka_orm::deps::sea_orm::{ConnectionTrait, DatabaseConnection};
use kafka_orm::{Delivery, KafkaOrm, OutboxRelay, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, unique_namespace, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "fencing.orders",
    key = "customer_id",
    outbox,
    partitions = 4,
    group = "fencing-tests"
)]
struct Ordered {
    customer_id: String,
    seq: i64,
}

async fn publish(orm: &KafkaOrm, db: &DatabaseConnection, events: &[Ordered]) {
    kafka_orm_tests::publish_committed(orm, db, events).await;
}

fn events(n: i64, keys: i64) -> Vec<Ordered> {
    (0..n)
        .map(|i| Ordered {
            customer_id: format!("c{}", i % keys),
            seq: i,
        })
        .collect()
}

async fn relay(orm: &KafkaOrm, name: &str, ttl: Duration) -> OutboxRelay {
    orm.outbox_relay()
        .instance_id(name)
        .poll_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(100), Duration::from_millis(300))
        .leases(ttl, Duration::from_millis(100))
        .spawn()
        .await
        .unwrap()
}

/// Rows waiting in `T`'s outbox.
async fn backlog<T: Topic>(orm: &KafkaOrm) -> u64 {
    let status = orm.outbox_status().await.unwrap();
    status
        .iter()
        .find(|s| s.type_name == T::SPEC.type_name)
        .map(|s| s.backlog)
        .unwrap()
}

/// Buckets of every outbox table of this test binary (two outbox types, 64 each).
const FULL: usize = 128;

async fn owns(relay: &OutboxRelay, buckets: usize, secs: u64, what: &str) -> Duration {
    let t0 = Instant::now();
    within(secs, what, async {
        while relay.stats().owned_buckets != buckets {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    t0.elapsed()
}

/// Reads the topic from the start until nothing new arrives for `quiet`.
async fn read_all(orm: &KafkaOrm, at_least: usize, quiet: Duration) -> Vec<Delivery<Ordered>> {
    let group = unique_namespace("fencing-reader");
    let mut consumer = orm.topic::<Ordered>().group(group).consume().await.unwrap();
    let mut got = Vec::new();
    loop {
        let wait = if got.len() < at_least {
            Duration::from_secs(60)
        } else {
            quiet
        };
        match tokio::time::timeout(wait, consumer.next()).await {
            Ok(Some(d)) => got.push(d.unwrap()),
            Ok(None) => break,
            Err(_) if got.len() >= at_least => break,
            Err(_) => panic!("only {} of {at_least} records arrived", got.len()),
        }
    }
    consumer.shutdown().await.unwrap();
    got
}

/// Per partition, a bucket's relay epoch never goes backwards: no earlier tenure wrote
/// after a later one began.
fn assert_epochs_never_go_backwards(got: &[Delivery<Ordered>]) {
    let mut latest: HashMap<(i32, String), i64> = HashMap::new();
    for d in got {
        let header = d
            .headers()
            .get_str(kafka_orm::RELAY_EPOCH_HEADER)
            .expect("leased relays stamp their epoch");
        let (bucket, epoch) = header.split_once(':').unwrap();
        let epoch: i64 = epoch.parse().unwrap();
        let prev = latest
            .entry((d.partition(), bucket.to_string()))
            .or_insert(epoch);
        assert!(
            epoch >= *prev,
            "bucket {bucket} in partition {}: epoch {epoch} written after epoch {prev}",
            d.partition()
        );
        *prev = epoch;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stalled_past_its_lease_never_delivers_alongside_its_successor() {
    let Some(db) = fresh_postgres("fencing-stall").await else {
        return;
    };
    let mock = MockCluster::new(1).unwrap();
    let namespace = unique_namespace("fencing-stall");
    let builder = KafkaOrm::builder()
        .bootstrap_servers(mock.bootstrap_servers())
        .namespace(namespace.clone())
        .create_topics(false)
        // The user's long producer timeout must not let the relay outlive its lease.
        .producer_set("message.timeout.ms", "60000");
    mock.create_topic(&format!("{namespace}{}", Ordered::SPEC.name), 4, 1)
        .unwrap();
    let orm = builder.database(db.clone()).build().await.unwrap();
    let ttl = Duration::from_secs(3);
    let a = relay(&orm, "stalled", ttl).await;
    owns(&a, FULL, 20, "the first relay to own every bucket").await;

    // The broker goes away while a batch is in flight: the first relay waits for acks.
    mock.broker_down(1).unwrap();
    let sent = events(400, 20);
    publish(&orm, &db, &sent).await;
    // Long enough for the first relay to claim the rows and hand them to its producer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A second instance arrives while the first is (or was) stuck, and stays past the TTL.
    let b = relay(&orm, "newcomer", ttl).await;
    tokio::time::sleep(ttl * 2).await;
    assert!(
        a.stats().owned_buckets > 0,
        "the stalled relay kept renewing its leases: {:?}",
        a.stats()
    );
    mock.broker_up(1).unwrap();

    let got = read_all(&orm, sent.len(), Duration::from_secs(5)).await;
    let mut ids = HashSet::new();
    let duplicates: Vec<i64> = got
        .iter()
        .filter(|d| !ids.insert(d.message_id().unwrap().to_string()))
        .map(|d| d.seq)
        .collect();
    assert!(
        duplicates.is_empty(),
        "rows delivered twice (two relays at once): {duplicates:?}"
    );
    assert_eq!(ids.len(), sent.len(), "nothing lost");
    let mut last: HashMap<String, i64> = HashMap::new();
    for d in &got {
        if let Some(prev) = last.insert(d.customer_id.clone(), d.seq) {
            assert!(
                d.seq > prev,
                "key {} went from {prev} to {}",
                d.customer_id,
                d.seq
            );
        }
    }
    assert_epochs_never_go_backwards(&got);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

async fn real_setup(test: &str) -> Option<(KafkaOrm, DatabaseConnection)> {
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    Some((builder.database(db.clone()).build().await.unwrap(), db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_with_a_stable_name_takes_its_buckets_back_at_once() {
    let Some((orm, db)) = real_setup("fencing-restart").await else {
        return;
    };
    // A TTL far longer than the test: only the reclaim can explain a fast take-over.
    let ttl = Duration::from_secs(60);
    let first = relay(&orm, "relay-0", ttl).await;
    owns(&first, FULL, 20, "relay-0 to own every bucket").await;
    first.abort(); // a crash: leases are not released

    // A stranger cannot take unexpired leases...
    let stranger = relay(&orm, "relay-1", ttl).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stranger.stats().owned_buckets,
        0,
        "leases of a crashed relay are not free before their TTL"
    );
    stranger.shutdown().await.unwrap();

    // ...but the crashed instance, restarted under its name, reclaims them at once.
    let restarted = relay(&orm, "relay-0", ttl).await;
    let took = owns(
        &restarted,
        FULL,
        10,
        "the restarted relay-0 to reclaim its buckets",
    )
    .await;
    assert!(took < Duration::from_secs(2), "reclaimed in {took:?}");
    publish(&orm, &db, &events(50, 5)).await;
    let got = read_all(&orm, 50, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 50);
    restarted.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_process_with_the_same_name_does_not_steal_leases() {
    let Some((orm, _db)) = real_setup("fencing-same-name").await else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let first = relay(&orm, "twin", ttl).await;
    owns(&first, FULL, 20, "the first twin to own every bucket").await;
    let twin = relay(&orm, "twin", ttl).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        twin.stats().owned_buckets,
        0,
        "the live holder of the name keeps its leases"
    );
    assert_eq!(first.stats().owned_buckets, FULL);
    twin.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_lease_passed_on_claims_nothing_more() {
    let Some((orm, db)) = real_setup("fencing-epoch").await else {
        return;
    };
    let a = relay(&orm, "fenced", Duration::from_secs(60)).await;
    owns(&a, FULL, 20, "the relay to own every bucket").await;
    // Another tenure begins behind its back (as when its lease passed on while it was
    // frozen): a new owner, a new epoch, a long lease.
    db.execute_unprepared(
        "UPDATE kafka_orm_relay_leases SET owner = 'intruder', epoch = epoch + 1, \
         expires_at = (extract(epoch from clock_timestamp()) * 1000)::bigint + 60000",
    )
    .await
    .unwrap();
    owns(&a, 0, 5, "the fenced relay to notice").await;
    publish(&orm, &db, &events(20, 4)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.stats().delivered, 0, "{:?}", a.stats());
    let backlog = backlog::<Ordered>(&orm).await;
    assert_eq!(
        backlog, 20,
        "no row claimed, delivered or deleted under a stale epoch"
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_within_seconds_after_a_long_broker_outage() {
    let Some(db) = fresh_postgres("fencing-outage").await else {
        return;
    };
    let mock = MockCluster::new(1).unwrap();
    let namespace = unique_namespace("fencing-outage");
    mock.create_topic(&format!("{namespace}{}", Ordered::SPEC.name), 4, 1)
        .unwrap();
    let orm = KafkaOrm::builder()
        .bootstrap_servers(mock.bootstrap_servers())
        .namespace(namespace)
        .create_topics(false)
        .database(db.clone())
        .build()
        .await
        .unwrap();
    // A long row backoff (4 s doubling up to 60 s): only the transient cap keeps the
    // rows' retries close together during an outage.
    let relay = orm
        .outbox_relay()
        .instance_id("outage")
        .backoff(Duration::from_secs(4), Duration::from_secs(60))
        .spawn()
        .await
        .unwrap();
    owns(&relay, FULL, 20, "the relay to own every bucket").await;
    mock.broker_down(1).unwrap();
    publish(&orm, &db, &events(100, 10)).await;
    // (Without the cap the rows' third attempt would come 15 s in: 3 s after the broker.)
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(relay.stats().failed > 0, "rows failed: {:?}", relay.stats());
    mock.broker_up(1).unwrap();
    let back = Instant::now();
    within(30, "the backlog to drain after the outage", async {
        while backlog::<Ordered>(&orm).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "delivery resumed {took:?} after the broker came back"
    );
    relay.shutdown().await.unwrap();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "fencing.one-partition",
    key = "customer_id",
    outbox,
    partitions = 1
)]
struct InOnePartition {
    customer_id: String,
    seq: i64,
    padding: String,
}

/// Reads until `n` distinct events arrived; asserts each key's first deliveries in order.
async fn first_deliveries_in_key_order(
    consumer: &mut kafka_orm::TopicConsumer<InOnePartition>,
    n: usize,
    secs: u64,
) {
    let mut first: Vec<(String, i64)> = Vec::new();
    let mut seen = HashSet::new();
    within(secs, &format!("{n} distinct events"), async {
        while seen.len() < n {
            let d = consumer.next().await.unwrap().unwrap();
            if seen.insert(d.seq) {
                first.push((d.customer_id.clone(), d.seq));
            }
        }
    })
    .await;
    let mut last: HashMap<String, i64> = HashMap::new();
    for (key, seq) in &first {
        if let Some(prev) = last.insert(key.clone(), *seq) {
            assert!(
                *seq > prev,
                "key {key}: #{seq} first delivered after #{prev}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_row_never_lets_later_rows_of_its_partition_overtake_its_batch_mates() {
    let Some(bootstrap) = kafka_orm_tests::kafka_bootstrap() else {
        return;
    };
    let Some(db) = fresh_postgres("fencing-oversize").await else {
        return;
    };
    // One partition whose broker-side limit is far below the client's: the broker rejects
    // the whole batch holding the oversized row.
    let namespace = unique_namespace("fencing-oversize");
    let name = format!("{namespace}{}", InOnePartition::SPEC.name);
    kafka_orm_tests::create_topic(&bootstrap, &name, 1, &[("max.message.bytes", "20000")]).await;
    let orm = KafkaOrm::builder()
        .bootstrap_servers(bootstrap)
        .namespace(namespace)
        .database(db.clone())
        .build()
        .await
        .unwrap();
    let event = |key: &str, seq: i64, bytes: usize| InOnePartition {
        customer_id: key.into(),
        seq,
        padding: "x".repeat(bytes),
    };
    let mut rows: Vec<InOnePartition> = (0..300)
        .map(|i| event(&format!("c{}", i % 10), i, 10))
        .collect();
    rows.insert(150, event("poison", -1, 50_000));
    kafka_orm_tests::publish_committed(&orm, &db, &rows).await;
    let relay = orm
        .outbox_relay()
        .batch(500)
        .backoff(Duration::from_secs(30), Duration::from_secs(60))
        .spawn()
        .await
        .unwrap();
    let mut consumer = orm
        .topic::<InOnePartition>()
        .group(unique_namespace("oversize-reader"))
        .consume()
        .await
        .unwrap();
    first_deliveries_in_key_order(&mut consumer, 300, 60).await;
    within(30, "only the oversized row to be left", async {
        while backlog::<InOnePartition>(&orm).await > 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let status = orm.outbox_status().await.unwrap();
    let status = status
        .iter()
        .find(|s| s.type_name == InOnePartition::SPEC.type_name)
        .unwrap();
    assert_eq!(status.failing[0].key.as_deref(), Some("poison"));
    consumer.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_broker_batch_never_lets_later_batches_of_its_partition_through() {
    use kafka_orm::deps::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let Some(db) = fresh_postgres("fencing-gapless").await else {
        return;
    };
    let mock = MockCluster::new(1).unwrap();
    let namespace = unique_namespace("fencing-gapless");
    mock.create_topic(&format!("{namespace}{}", InOnePartition::SPEC.name), 1, 1)
        .unwrap();
    // Small broker batches, several in flight at once.
    mock.broker_round_trip_time(1, Duration::from_millis(30))
        .unwrap();
    let orm = KafkaOrm::builder()
        .bootstrap_servers(mock.bootstrap_servers())
        .namespace(namespace)
        .create_topics(false)
        .producer_set("batch.size", "2000")
        .database(db.clone())
        .build()
        .await
        .unwrap();
    let relay = orm.outbox_relay().spawn().await.unwrap();
    let rows: Vec<InOnePartition> = (0..300)
        .map(|i| InOnePartition {
            customer_id: format!("c{}", i % 10),
            seq: i,
            padding: "x".repeat(50),
        })
        .collect();
    // The first broker batch is rejected for good; the ones after it are in flight.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );
    kafka_orm_tests::publish_committed(&orm, &db, &rows).await;
    let mut consumer = orm
        .topic::<InOnePartition>()
        .group(unique_namespace("gapless-reader"))
        .consume()
        .await
        .unwrap();
    first_deliveries_in_key_order(&mut consumer, 300, 90).await;
    assert!(
        relay.stats().failed > 0,
        "the rejection happened: {:?}",
        relay.stats()
    );
    consumer.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_its_buckets_over_at_once() {
    let Some((orm, db)) = real_setup("fencing-handover").await else {
        return;
    };
    // A TTL far longer than the test: only the release on shutdown explains a fast move.
    let ttl = Duration::from_secs(60);
    let leaving = relay(&orm, "leaving", ttl).await;
    owns(&leaving, FULL, 20, "the first relay to own every bucket").await;
    let staying = relay(&orm, "staying", ttl).await;
    owns(
        &staying,
        FULL / 2,
        20,
        "the second relay to get its fair share",
    )
    .await;
    leaving.shutdown().await.unwrap();
    let took = owns(&staying, FULL, 10, "the survivor to own every bucket").await;
    assert!(took < Duration::from_secs(3), "handed over in {took:?}");
    publish(&orm, &db, &events(40, 8)).await;
    assert_eq!(read_all(&orm, 40, Duration::from_secs(1)).await.len(), 40);
    staying.shutdown().await.unwrap();
}
