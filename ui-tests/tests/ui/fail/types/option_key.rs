use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "customer_id")]
pub struct OrderCreated {
    pub customer_id: Option<String>,
}

fn main() {}
