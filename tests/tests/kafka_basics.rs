//! Produce and consume against the real broker started by `./scripts/test`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kafka_orm::deps::rdkafka::producer::Producer as _;
use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka_orm::{Error, Headers, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "basics.orders",
    key = "customer_id",
    partitions = 6,
    group = "basics"
)]
struct OrderCreated {
    order_id: i64,
    customer_id: String,
    total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "basics.tenant-events", key = ["tenant", "seq"], partitions = 3, group = "basics")]
struct TenantEvent {
    tenant: String,
    seq: u32,
}

fn order(i: i64) -> OrderCreated {
    OrderCreated {
        order_id: i,
        customer_id: format!("customer-{}", i % 17),
        total_cents: i * 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_round_trip() {
    let Some(builder) = real_kafka("round-trip") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let topic = orm.topic::<OrderCreated>();
    let sent: Vec<OrderCreated> = (0..50).map(order).collect();
    let reports = topic.produce_all(&sent).await.unwrap();
    assert_eq!(reports.len(), sent.len());
    assert!(reports.iter().all(|r| r.topic == topic.name()));

    let mut consumer = topic.consume().await.unwrap();
    let mut got = BTreeMap::new();
    while got.len() < sent.len() {
        let d = within(60, "consuming the round trip", consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            d.key(),
            Some(d.customer_id.as_bytes()),
            "key is the key field's text"
        );
        let report = &reports[d.order_id as usize];
        assert_eq!(
            (d.partition(), d.offset()),
            (report.partition, report.offset)
        );
        assert_eq!(d.message_id(), Some(report.message_id.as_str()));
        got.insert(d.order_id, d.into_value());
    }
    assert_eq!(got.into_values().collect::<Vec<_>>(), sent);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_same_partition_and_composite_keys() {
    let Some(builder) = real_kafka("same-key") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let reports = orm
        .topic::<OrderCreated>()
        .produce_all(&(0..300).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut partitions_of: HashMap<String, BTreeSet<i32>> = HashMap::new();
    for (i, r) in reports.iter().enumerate() {
        partitions_of
            .entry(order(i as i64).customer_id)
            .or_default()
            .insert(r.partition);
    }
    assert_eq!(partitions_of.len(), 17);
    assert!(
        partitions_of.values().all(|p| p.len() == 1),
        "{partitions_of:?}"
    );
    let used: BTreeSet<i32> = partitions_of.values().flatten().copied().collect();
    assert!(
        used.len() > 1,
        "17 keys over 6 partitions should use several: {used:?}"
    );

    let events: Vec<TenantEvent> = (0..3)
        .map(|seq| TenantEvent {
            tenant: "acme".into(),
            seq,
        })
        .collect();
    let topic = orm.topic::<TenantEvent>();
    topic.produce_all(&events).await.unwrap();
    let mut consumer = topic.consume().await.unwrap();
    let mut keys = BTreeSet::new();
    while keys.len() < 3 {
        let d = within(60, "consuming composite keys", consumer.next())
            .await
            .unwrap()
            .unwrap();
        keys.insert(String::from_utf8(d.key().unwrap().to_vec()).unwrap());
    }
    let expected: BTreeSet<String> = (0..3).map(|s| format!(r#"["acme",{s}]"#)).collect();
    assert_eq!(keys, expected);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip() {
    let Some(builder) = real_kafka("headers") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let topic = orm.topic::<OrderCreated>();
    let headers = Headers::new()
        .with(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .with("binary", vec![0u8, 1, 254, 255])
        .with("tenant", "acme");
    let report = topic
        .produce_with_headers(&order(1), headers.clone())
        .await
        .unwrap();
    let mut consumer = topic.consume().await.unwrap();
    let d = within(60, "consuming with headers", consumer.next())
        .await
        .unwrap()
        .unwrap();
    for (name, value) in headers.iter() {
        assert_eq!(d.headers().get(name), Some(value), "header {name}");
    }
    assert_eq!(d.message_id(), Some(report.message_id.as_str()));
    // The stable message type name, not the Rust path.
    assert_eq!(
        d.headers().get_str(kafka_orm::TYPE_HEADER),
        Some("OrderCreated")
    );
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_declared_partitions() {
    let Some(builder) = real_kafka("created") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let producer: FutureProducer = orm.client_config().create().unwrap();
    for (name, expected) in [
        (orm.topic_name(OrderCreated::SPEC), 6),
        (orm.topic_name(TenantEvent::SPEC), 3),
    ] {
        let client = producer.clone();
        let n = name.clone();
        let meta = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&n), Duration::from_secs(10))
                .unwrap()
        })
        .await
        .unwrap();
        let topic = &meta.topics()[0];
        assert!(topic.error().is_none(), "{name}: {:?}", topic.error());
        assert_eq!(topic.partitions().len(), expected, "{name}");
    }
    // A second context on the same namespace finds them there and builds fine.
    assert!(orm.topics().iter().any(|t| t.name == "basics.orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_consumer_resumes_after_last_commit() {
    let Some(builder) = real_kafka("resume") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let topic = orm.topic::<OrderCreated>();
    let total = 6_000;
    for chunk in (0..total).collect::<Vec<i64>>().chunks(1_500) {
        let batch: Vec<OrderCreated> = chunk.iter().copied().map(order).collect();
        topic.produce_all(&batch).await.unwrap();
    }

    // First session: consume 2,500, committing every 100, then close.
    let first_batch = 2_500;
    let mut first = Vec::new();
    let mut consumer = topic.consume().await.unwrap();
    let mut pending = Vec::new();
    while first.len() < first_batch {
        let d = within(60, "first session", consumer.next())
            .await
            .unwrap()
            .unwrap();
        pending.push((d.partition(), d.offset()));
        first.push(d.order_id);
        if pending.len() == 100 {
            consumer.commit_all(&pending).await.unwrap();
            pending.clear();
        }
    }
    assert!(pending.is_empty());
    let committed: HashMap<i32, Option<i64>> = consumer
        .committed(Duration::from_secs(10))
        .await
        .unwrap()
        .into_iter()
        .collect();
    consumer.shutdown().await.unwrap();

    // Second session, same group: starts exactly at each partition's committed offset.
    let mut consumer = topic.consume().await.unwrap();
    let mut second = Vec::new();
    let mut first_offset_seen: HashMap<i32, i64> = HashMap::new();
    while first.len() + second.len() < total as usize {
        let d = within(60, "second session", consumer.next())
            .await
            .unwrap()
            .unwrap();
        first_offset_seen.entry(d.partition()).or_insert(d.offset());
        second.push(d.order_id);
    }
    for (partition, offset) in &first_offset_seen {
        let expected = committed.get(partition).copied().flatten().unwrap_or(0);
        assert_eq!(
            *offset, expected,
            "partition {partition} resumed at its committed offset"
        );
    }
    let mut all: Vec<i64> = first.iter().chain(&second).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..total).collect::<Vec<_>>(), "no loss, no duplicate");
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payload_is_a_typed_error_and_the_stream_goes_on() {
    let Some(builder) = real_kafka("undecodable") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let topic = orm.topic::<OrderCreated>();
    let name = topic.name();
    let raw: FutureProducer = orm.client_config().create().unwrap();
    let (partition, bad_offset) = raw
        .send(
            FutureRecord::to(&name)
                .key("customer-1")
                .payload("{not json"),
            Duration::from_secs(10),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .unwrap();
    raw.flush(Duration::from_secs(10)).unwrap();
    // Same key, so the good event follows the bad one in the same partition.
    let good = OrderCreated {
        order_id: 7,
        customer_id: "customer-1".into(),
        total_cents: 1,
    };
    topic.produce(&good).await.unwrap();

    let mut consumer = topic.consume().await.unwrap();
    let err = within(60, "the bad message", consumer.next())
        .await
        .unwrap()
        .unwrap_err();
    match &err {
        Error::Decode {
            topic,
            partition: p,
            offset,
            payload,
            ..
        } => {
            assert_eq!(
                (topic.as_str(), *p, *offset),
                (name.as_str(), partition, bad_offset)
            );
            assert_eq!(payload.as_deref(), Some(&b"{not json"[..]));
        }
        other => panic!("expected a decode error, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains(&format!("@{bad_offset}")),
        "{text}"
    );
    consumer.commit_at(partition, bad_offset).await.unwrap();
    let d = within(60, "the good message", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.value(), &good);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_fails_clearly_in_bounded_time() {
    let started = std::time::Instant::now();
    let err = kafka_orm::KafkaOrm::builder()
        .bootstrap_servers("127.0.0.1:1")
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
