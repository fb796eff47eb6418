use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
pub struct Envelope<T> {
    pub payload: T,
}

fn main() {}
