//! Two types claiming one topic: the context refuses to start, whatever their settings,
//! because each would decode the other's messages. (Its own test binary: the conflict
//! would break every other context in the binary.) `wrong_type_registry.rs` shows what
//! that looked like before, on the real broker.

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
async fn two_types_on_one_topic_are_a_startup_error() {
    // Validation runs before any connection, so no broker is needed.
    let err = KafkaOrm::builder()
        .bootstrap_servers("127.0.0.1:1")
        .build()
        .await
        .unwrap_err();
    let Error::SharedTopic { topic, types } = &err else {
        panic!("expected SharedTopic, got {err}");
    };
    assert_eq!(topic, "conflict.orders");
    assert_eq!(
        types,
        &[
            "registry_conflict::billing::OrderCreated",
            "registry_conflict::shipping::OrderCreated"
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("`registry_conflict::billing::OrderCreated` and `registry_conflict::shipping::OrderCreated`")
            && text.contains("enum"),
        "{text}"
    );
}
