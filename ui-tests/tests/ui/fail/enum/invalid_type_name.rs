use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize, Topic)]
#[topic(type_name = "billing::OrderCreated")]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderPaid {
    pub order_id: i64,
}

#[derive(Topic)]
pub enum OrderEvent {
    #[topic(type_name = "")]
    Paid(OrderPaid),
}

fn main() {}
