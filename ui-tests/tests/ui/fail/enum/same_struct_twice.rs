use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Topic)]
pub enum OrderEvent {
    Created(OrderCreated),
    #[topic(type_name = "order.created.v2")]
    CreatedAgain(OrderCreated),
}

fn main() {}
