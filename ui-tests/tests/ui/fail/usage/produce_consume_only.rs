// A `consume_only` topic has no `produce`; a `produce_only` topic has no `consume`.
use kafka_orm::{KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(consume_only)]
struct Incoming {
    id: i64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(produce_only)]
struct Outgoing {
    id: i64,
}

async fn wrong_way(orm: KafkaOrm) {
    let _ = orm.topic::<Incoming>().produce(&Incoming { id: 1 }).await;
    let _ = orm.topic::<Outgoing>().consume().await;
}

fn main() {}
