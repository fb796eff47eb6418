use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct OrderNumber(String);

#[derive(Serialize, Deserialize, Topic)]
#[topic(inbox(dedup = ["order_id", "number"]))]
pub struct OrderCreated {
    pub order_id: i64,
    pub number: OrderNumber,
}

fn main() {}
