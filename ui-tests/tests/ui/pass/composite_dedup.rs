use kafka_orm::{DedupValue, Topic};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(inbox(dedup = ["tenant", "order_id"], retention = "1d"))]
pub struct OrderCreated {
    pub tenant: String,
    pub order_id: i64,
}

fn main() {
    let inbox = OrderCreated::SPEC.inbox.unwrap();
    assert_eq!(inbox.table, "order_created_inbox");
    assert_eq!(inbox.dedup_fields, ["tenant", "order_id"]);
    assert_eq!(inbox.retention_secs, 86_400);
    let event = OrderCreated {
        tenant: "acme".into(),
        order_id: 7,
    };
    assert_eq!(
        event.dedup_key(),
        [DedupValue::Text("acme".into()), DedupValue::Int(7)]
    );
    fn needs_inbox<T: kafka_orm::InboxTopic>() {}
    needs_inbox::<OrderCreated>();
}
