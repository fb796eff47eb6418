use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Topic)]
#[topic(name = "orders", type_name = "order.created")]
pub enum OrderEvent {
    Created(OrderCreated),
}

fn main() {}
