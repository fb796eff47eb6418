// `publish` writes to the transactional outbox, so it exists only for `outbox` topics.
use kafka_orm::{KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "id")]
struct Shipped {
    id: i64,
}

async fn ship(orm: KafkaOrm, txn: &kafka_orm::deps::sea_orm::DatabaseTransaction) {
    let _ = orm.topic::<Shipped>().publish(txn, &Shipped { id: 1 }).await;
}

fn main() {}
