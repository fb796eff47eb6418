use std::time::Duration;

use kafka_orm::{Direction, Topic};
use serde::{Deserialize, Serialize};

mod reexport {
    pub use kafka_orm;
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(
    name = "payments.v1",
    key = ["tenant", "account_id"],
    inbox(dedup = ["tenant", "payment_id"], retention = "1d", table = "payment_inbox"),
    group = "ledger",
    format = "json",
    partitions = 12,
    replication = 3,
    retry(attempts = 5, backoff = "250ms", max_backoff = "1m"),
    retry_topics,
    dlq = "payments.v1.dead",
    consume_only,
    crate = "reexport::kafka_orm",
)]
pub struct PaymentReceived {
    pub tenant: String,
    pub account_id: u64,
    pub payment_id: i64,
    pub amount: f64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(
    name = "payments.requested",
    key = "account_id",
    outbox(table = "payment_outbox"),
    produce_only
)]
pub struct PaymentRequested {
    pub account_id: u64,
}

fn main() {
    let spec = PaymentReceived::SPEC;
    assert_eq!(spec.name, "payments.v1");
    assert_eq!(spec.group, Some("ledger"));
    assert_eq!(spec.partitions, Some(12));
    assert_eq!(spec.replication, Some(3));
    assert_eq!(spec.direction, Direction::ConsumeOnly);
    let retry = spec.retry.unwrap();
    assert_eq!(
        (retry.attempts, retry.backoff, retry.max_backoff),
        (5, Duration::from_millis(250), Duration::from_secs(60))
    );
    assert!(spec.retry_topics);
    assert_eq!(spec.dlq.unwrap().topic, "payments.v1.dead");
    assert_eq!(spec.inbox.unwrap().table, "payment_inbox");

    let spec = PaymentRequested::SPEC;
    assert_eq!(spec.direction, Direction::ProduceOnly);
    assert_eq!(spec.outbox.unwrap().table, "payment_outbox");
    fn needs_outbox<T: kafka_orm::OutboxTopic>() {}
    needs_outbox::<PaymentRequested>();
}
