use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "order_id")]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "order_id")]
pub struct OrderCancelled {
    pub order_id: i64,
}

fn main() {
    let names: Vec<&str> = kafka_orm::registry::registered_topics()
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["order-cancelled", "order-created"]);
    kafka_orm::registry::validate(&kafka_orm::registry::registered_topics()).unwrap();
}
