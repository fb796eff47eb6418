use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "custmer_id")]
pub struct OrderCreated {
    pub order_id: i64,
    pub customer_id: String,
}

fn main() {}
