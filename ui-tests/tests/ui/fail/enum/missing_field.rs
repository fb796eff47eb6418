use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderPaid {
    pub id: i64,
}

#[derive(Topic)]
#[topic(key = "order_id", outbox, inbox(dedup = "order_id"))]
pub enum OrderEvent {
    Created(OrderCreated),
    Paid(OrderPaid),
}

fn main() {}
