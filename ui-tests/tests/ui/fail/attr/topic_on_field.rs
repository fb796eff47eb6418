use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
pub struct OrderCreated {
    #[topic(key)]
    pub order_id: i64,
}

fn main() {}
