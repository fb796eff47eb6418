use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderPaid {
    pub order_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderShipped {
    pub order_id: i64,
}

#[derive(Topic)]
pub enum OrderEvent {
    #[topic(key = "order_id")]
    Created(OrderCreated),
    #[topic(type_nme = "order.paid")]
    Paid(OrderPaid),
    #[topic]
    Shipped(OrderShipped),
}

fn main() {}
