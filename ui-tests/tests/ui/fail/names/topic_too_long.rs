use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(
    name = "order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-order-events-xxx"
)]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {}
