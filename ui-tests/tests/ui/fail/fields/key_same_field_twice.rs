use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = ["tenant", "customer_id", "tenant"])]
pub struct OrderCreated {
    pub tenant: String,
    pub customer_id: String,
}

fn main() {}
