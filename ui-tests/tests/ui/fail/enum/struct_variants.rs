use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
pub enum OrderEvent {
    Created { order_id: i64 },
    Cancelled { order_id: i64 },
}

fn main() {}
