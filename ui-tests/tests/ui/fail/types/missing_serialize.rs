use kafka_orm::Topic;

#[derive(Topic)]
#[topic(name = "order-events")]
pub struct OrderCreated {
    pub order_id: i64,
}

fn main() {}
