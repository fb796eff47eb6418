use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Topic)]
pub enum OrderEvent {
    Created(Box<OrderCreated>),
}

fn main() {}
