use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

/// Bare `inbox`: deduplicates on the message-id header, so no dedup fields.
#[derive(Serialize, Deserialize, Topic)]
#[topic(inbox)]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {
    let inbox = OrderCreated::SPEC.inbox.unwrap();
    assert!(inbox.dedup_fields.is_empty());
    assert_eq!(inbox.retention_secs, 7 * 24 * 3600);
    assert!(OrderCreated { order_id: 1 }.dedup_key().is_empty());
}
