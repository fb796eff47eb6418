use kafka_orm::Topic;

mod billing {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct OrderCreated {
        pub order_id: i64,
    }
}

mod shipping {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct OrderCreated {
        pub order_id: i64,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderPaid {
    pub order_id: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderRefunded {
    pub order_id: i64,
}

#[derive(Topic)]
pub enum OrderEvent {
    Billed(billing::OrderCreated),
    Shipped(shipping::OrderCreated),
    #[topic(type_name = "order.paid")]
    Paid(OrderPaid),
    #[topic(type_name = "order.paid")]
    Refunded(OrderRefunded),
}

fn main() {}
