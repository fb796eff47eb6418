use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "customer_id")]
pub struct OrderCreated {
    pub customer_id: String,
}

fn main() {
    let event = OrderCreated {
        customer_id: "c-7".into(),
    };
    assert_eq!(event.key().unwrap(), b"c-7");
}
