use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "price")]
pub struct PriceChanged {
    pub price: f64,
}

fn main() {}
