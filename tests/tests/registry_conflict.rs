//! Two types claiming one topic with different settings: the context refuses to start.
//! (Its own test binary: the conflict would break every other context in the binary.)

use kafka_orm::{Error, KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

mod billing {
    use super::*;
    #[derive(Serialize, Deserialize, Topic)]
    #[topic(name = "conflict.orders", key = "order_id", partitions = 3)]
    pub struct OrderCreated {
        pub order_id: i64,
    }
}

mod shipping {
    use super::*;
    #[derive(Serialize, Deserialize, Topic)]
    #[topic(name = "conflict.orders", key = "order_id", partitions = 6)]
    pub struct OrderCreated {
        pub order_id: i64,
    }
}

#[tokio::test]
async fn duplicate_topic_registration_is_a_startup_error() {
    // Validation runs before any connection, so no broker is needed.
    let err = KafkaOrm::builder()
        .bootstrap_servers("127.0.0.1:1")
        .build()
        .await
        .unwrap_err();
    let Error::DuplicateTopic {
        topic,
        first,
        second,
        difference,
    } = &err
    else {
        panic!("expected DuplicateTopic, got {err}");
    };
    assert_eq!(topic, "conflict.orders");
    let mut types = [first.as_str(), second.as_str()];
    types.sort();
    assert_eq!(
        types,
        [
            "registry_conflict::billing::OrderCreated",
            "registry_conflict::shipping::OrderCreated"
        ]
    );
    assert!(difference.contains("partitions"), "{difference}");
    let text = err.to_string();
    assert!(
        text.contains("billing::OrderCreated") && text.contains("shipping::OrderCreated"),
        "{text}"
    );
}
