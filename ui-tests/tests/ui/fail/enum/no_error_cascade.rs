//! An enum with a mistake in its attribute: only that mistake is reported, not errors of
//! the code that uses the enum and its variants' structs.
use kafka_orm::{KafkaOrm, Topic};

#[derive(serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
}

#[derive(Topic)]
#[topic(nmae = "orders", outbox)]
pub enum OrderEvent {
    Created(OrderCreated),
}

#[allow(dead_code)]
async fn publish(orm: KafkaOrm, txn: &kafka_orm::deps::sea_orm::DatabaseTransaction) {
    let event = OrderEvent::from(OrderCreated { order_id: 1 });
    let _ = orm.topic::<OrderEvent>().publish(txn, &event).await;
    let _ = OrderEvent::SPEC.name;
}

fn main() {}
