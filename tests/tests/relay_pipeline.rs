//! The pipelined relay on the real broker and PostgreSQL: the next batch is claimed while
//! the previous one awaits its acknowledgements, and still every key keeps its order and
//! nothing is lost when a row fails, whether librdkafka refuses it at once (larger than the
//! producer's `message.max.bytes`) or the broker rejects its batch in flight (larger than
//! the topic's `max.message.bytes`, which trips the gapless guarantee).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_orm::deps::sea_orm::ConnectionTrait;
use kafka_orm::{KafkaOrm, Topic, TopicConsumer};
use kafka_orm_tests::{fresh_postgres, kafka_bootstrap, unique_namespace, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "pipeline.orders", key = "customer_id", outbox, partitions = 3)]
struct Placed {
    customer_id: String,
    seq: i64,
    padding: String,
}

fn placed(key: &str, seq: i64, bytes: usize) -> Placed {
    Placed {
        customer_id: key.into(),
        seq,
        padding: "x".repeat(bytes),
    }
}

/// Counts the relay's claims made beside a producing batch that got rows (its
/// `relay batch claimed` debug events with `speculative` and `rows > 0`).
#[derive(Clone, Default)]
struct Speculative(Arc<AtomicU64>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Speculative {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "kafka_orm::relay" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            rows: u64,
            speculative: bool,
        }
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "rows" {
                    self.rows = value;
                }
            }
            fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
                if field.name() == "speculative" {
                    self.speculative = value;
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if f.speculative && f.rows > 0 {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads until `want` distinct seqs arrived; returns each key's first deliveries in order.
async fn first_deliveries(
    consumer: &mut TopicConsumer<Placed>,
    seen: &mut HashSet<i64>,
    want: usize,
) -> HashMap<String, Vec<i64>> {
    let mut first: HashMap<String, Vec<i64>> = HashMap::new();
    within(90, &format!("{want} distinct events"), async {
        while seen.len() < want {
            let d = consumer.next().await.unwrap().unwrap();
            if seen.insert(d.seq) {
                first.entry(d.customer_id.clone()).or_default().push(d.seq);
            }
        }
    })
    .await;
    first
}

fn assert_increasing(first: &HashMap<String, Vec<i64>>) {
    for (key, seqs) in first {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "key {key}: first deliveries out of order: {seqs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_keep_key_order_and_lose_nothing_around_failing_rows() {
    let speculative = Speculative::default();
    use tracing_subscriber::layer::SubscriberExt;
    // Global: the relay's tasks run on the runtime's threads (the only test of this binary).
    let subscriber = tracing_subscriber::registry().with(speculative.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let Some(db) = fresh_postgres("pipeline-failing").await else {
        return;
    };
    // The broker refuses batches over 20 kB on this topic; librdkafka refuses messages over
    // its default 1 MB.
    let namespace = unique_namespace("pipeline-failing");
    let name = format!("{namespace}{}", Placed::SPEC.name);
    kafka_orm_tests::create_topic(&bootstrap, &name, 3, &[("max.message.bytes", "20000")]).await;
    let orm = KafkaOrm::builder()
        .bootstrap_servers(bootstrap)
        .namespace(namespace)
        .database(db.clone())
        .build()
        .await
        .unwrap();
    // 2,000 rows of 40 keys; each poison row is followed by 10 rows of its own key, one
    // every 6 rows: some in its batch, some in the next ones (claimed while it is in flight).
    let mut rows: Vec<Placed> = (0..2_000)
        .map(|i| placed(&format!("c{}", i % 40), i, 10))
        .collect();
    for (at, key, seq, bytes) in [
        (700, "broker-poison", 10_000, 50_000),
        (1_300, "local-poison", 20_000, 2_000_000),
    ] {
        rows.insert(at, placed(key, seq, bytes));
        for i in 1..=10 {
            rows.insert(at + 6 * i as usize, placed(key, seq + i, 10));
        }
    }
    kafka_orm_tests::publish_committed(&orm, &db, &rows).await;

    // Small batches: many of them, each claimed while the one before awaits its acks.
    let relay = orm
        .outbox_relay()
        .batch(25)
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .spawn()
        .await
        .unwrap();
    let mut consumer = orm
        .topic::<Placed>()
        .group(unique_namespace("pipeline-reader"))
        .consume()
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let first = first_deliveries(&mut consumer, &mut seen, 2_000).await;
    assert_increasing(&first);
    assert!(
        !first.contains_key("broker-poison") && !first.contains_key("local-poison"),
        "a failing row blocks its key's later rows: {:?}",
        first
            .keys()
            .filter(|k| k.contains("poison"))
            .collect::<Vec<_>>()
    );
    assert!(
        (0..2_000).all(|s| seen.contains(&s)),
        "every other row was delivered"
    );
    assert!(
        speculative.0.load(Ordering::Relaxed) > 0,
        "batches were claimed beside producing ones"
    );

    // Once the poison rows are gone, their keys' later rows follow, in order.
    db.execute_unprepared(
        "DELETE FROM placed_outbox WHERE message_key LIKE '%poison' AND length(payload) > 20000",
    )
    .await
    .unwrap();
    let after = first_deliveries(&mut consumer, &mut seen, 2_020).await;
    assert_increasing(&after);
    assert_eq!(
        after["broker-poison"],
        (10_001..=10_010).collect::<Vec<_>>()
    );
    assert_eq!(after["local-poison"], (20_001..=20_010).collect::<Vec<_>>());
    consumer.shutdown().await.unwrap();
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.delivered, 2_020, "{stats:?}");
}
