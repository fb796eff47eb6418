use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "orders")]
#[topic(key = "order_id", name = "order-events")]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {}
