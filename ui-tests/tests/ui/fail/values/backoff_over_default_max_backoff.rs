use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

// The default `max_backoff` is the runtime's (`kafka_orm::defaults`), so the
// expansion checks this one.
#[derive(Serialize, Deserialize, Topic)]
#[topic(retry(backoff = "1h"))]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(retry(attempts = 2, max_backoff = "10ms"))]
pub struct OrderShipped {
    pub order_id: i64,
}

fn main() {}
