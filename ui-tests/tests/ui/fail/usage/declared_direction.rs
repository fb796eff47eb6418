//! A service's declared direction cannot contradict the type's own.
use kafka_orm::{KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(consume_only)]
pub struct PaymentReceived {
    pub payment_id: i64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(produce_only)]
pub struct AuditLogged {
    pub entry: String,
}

fn main() {
    let _ = KafkaOrm::builder()
        .produces::<PaymentReceived>()
        .consumes::<AuditLogged>();
}
