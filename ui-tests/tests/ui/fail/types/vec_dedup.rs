use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(inbox(dedup = "line_ids"))]
pub struct OrderCreated {
    pub line_ids: Vec<i64>,
}

fn main() {}
