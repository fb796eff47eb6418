use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
pub struct OrderCreated<'a> {
    pub customer_id: &'a str,
}

fn main() {}
