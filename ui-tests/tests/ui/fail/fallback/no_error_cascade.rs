use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

// One mistake (the typo in `key`); the code below uses the type as a topic with an
// outbox and an inbox and must not add errors of its own.
#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "custmer_id", outbox, inbox)]
pub struct OrderCreated {
    pub customer_id: String,
}

fn publish<T: kafka_orm::OutboxTopic>(event: &T) -> Option<Vec<u8>> {
    event.key()
}

fn handle<T: kafka_orm::InboxTopic>() -> &'static str {
    T::SPEC.name
}

fn main() {
    let _ = publish(&OrderCreated {
        customer_id: "c".into(),
    });
    let _ = handle::<OrderCreated>();
    // The entities exist too, with their fixed columns.
    let _ = order_created_outbox::Entity;
    let _ = |m: order_created_inbox::Model| (m.consumer_group, m.message_id);
}
