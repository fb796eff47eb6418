use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "order-events", key = ["tenant", "customer_id"])]
pub struct OrderCreated {
    pub tenant: String,
    pub customer_id: u64,
    pub total_cents: i64,
}

fn main() {
    assert_eq!(OrderCreated::SPEC.key_fields, ["tenant", "customer_id"]);
    let event = OrderCreated {
        tenant: "acme".into(),
        customer_id: 42,
        total_cents: 100,
    };
    assert_eq!(event.key().unwrap(), br#"["acme",42]"#);
}
