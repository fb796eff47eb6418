use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(inbox(dedup = "sequence"))]
pub struct OrderCreated {
    pub sequence: u64,
}

fn main() {}
