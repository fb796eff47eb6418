use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(outbox(table = "self"))]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {}
