use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
pub struct OrderCreated(i64, String);

fn main() {}
