use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
    pub message_type: String,
}

#[derive(Topic)]
#[topic(key = "order id", inbox(dedup = "message_type"))]
pub enum OrderEvent {
    Created(OrderCreated),
}

fn main() {}
