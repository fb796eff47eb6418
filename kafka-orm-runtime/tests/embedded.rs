//! The runtime on its own, without the derive: a hand-written `Topic` impl round-trips
//! through the embedded broker. (The derive's own tests live in the workspace's `tests/`.)

use std::time::Duration;

use kafka_orm_runtime::key::{self, DedupValue, KeyBytes};
use kafka_orm_runtime::topic::{Consumable, Producible, Topic, TopicSpec};
use kafka_orm_runtime::{Error, Json, KafkaOrm, TopicRegistration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping {
    id: u32,
    who: String,
}

impl Topic for Ping {
    const SPEC: &'static TopicSpec = &TopicSpec::new("embedded::Ping", "ping")
        .key_fields(&["who"])
        .partitions(2)
        .group("pingers");
    type Codec = Json;
    fn key(&self) -> Option<KeyBytes> {
        Some(key::single(&self.who))
    }
    fn dedup_key(&self) -> Vec<DedupValue> {
        Vec::new()
    }
}
impl Producible for Ping {}
impl Consumable for Ping {}
inventory::submit! { TopicRegistration::new(<Ping as Topic>::SPEC) }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_round_trip() {
    let orm = KafkaOrm::builder().embedded().build().await.unwrap();
    assert_eq!(orm.topics().len(), 1);
    let topic = orm.topic::<Ping>();
    let pings: Vec<Ping> = (0..20)
        .map(|id| Ping {
            id,
            who: format!("w{}", id % 4),
        })
        .collect();
    let reports = topic.produce_all(&pings).await.unwrap();
    assert_eq!(reports.len(), 20);

    let mut consumer = topic.consume().await.unwrap();
    let mut got = Vec::new();
    while got.len() < pings.len() {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("timed out")
            .unwrap()
            .unwrap();
        assert_eq!(d.key(), Some(d.who.as_bytes()));
        assert!(d.message_id().is_some());
        consumer.commit(&d).await.unwrap();
        got.push(d.into_value());
    }
    got.sort_by_key(|p| p.id);
    assert_eq!(got, pings);
    consumer.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_broker_choice_is_a_config_error() {
    let err = KafkaOrm::builder().build().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}
