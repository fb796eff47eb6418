use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderPaid {
    pub order_id: String,
}

#[derive(Topic)]
#[topic(key = "order_id", outbox)]
pub enum OrderEvent {
    Created(OrderCreated),
    Paid(OrderPaid),
}

fn main() {}
