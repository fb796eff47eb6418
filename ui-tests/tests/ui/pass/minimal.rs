use kafka_orm::{Topic, TopicSpec};
use serde::{Deserialize, Serialize};

/// No `#[topic]` at all: every default.
#[derive(Serialize, Deserialize, Topic)]
pub struct OrderCreated {
    pub order_id: i64,
    pub customer_id: String,
}

fn main() {
    let spec: &TopicSpec = OrderCreated::SPEC;
    assert_eq!(spec.name, "order-created");
    assert!(
        spec.type_name.ends_with("::OrderCreated"),
        "{}",
        spec.type_name
    );
    assert!(spec.key_fields.is_empty());
    assert_eq!(spec.format, "json");
    assert_eq!(spec.direction, kafka_orm::Direction::Both);
    assert!(spec.outbox.is_none() && spec.inbox.is_none() && spec.retry.is_none());
    let event = OrderCreated {
        order_id: 1,
        customer_id: "c".into(),
    };
    assert_eq!(event.key(), None);
    assert!(event.dedup_key().is_empty());
    let registered = kafka_orm::registry::registered_topics();
    assert!(
        registered.iter().any(|s| s.name == "order-created"),
        "{registered:?}"
    );
}
