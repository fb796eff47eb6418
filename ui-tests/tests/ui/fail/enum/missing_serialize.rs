use kafka_orm::Topic;

pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Topic)]
pub enum OrderEvent {
    Created(OrderCreated),
}

fn main() {}
