//! `Routes::on::<T>` only for a type the enum holds.
use kafka_orm::{Routes, Topic};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct OrderRefunded {
    pub order_id: i64,
}

#[derive(Topic)]
#[topic(key = "order_id")]
pub enum OrderEvent {
    Created(OrderCreated),
}

fn main() {
    let _routes = Routes::<OrderEvent>::new()
        .on::<OrderCreated>(async |_txn, _created| Ok(()))
        .on::<OrderRefunded>(async |_txn, _refunded| Ok(()));
}
