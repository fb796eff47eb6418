use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct CustomerId {
    pub region: String,
    pub number: u32,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "customer_id")]
pub struct OrderCreated {
    pub customer_id: CustomerId,
}

fn main() {}
