use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "order_id", dedup = "order_id")]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {}
