#![allow(dead_code)] // each of the three binaries uses its own part of it
//! The contract both services share: one events module (in a real system, one crate that
//! both depend on). It says what the messages are, not who sends or reads them: no
//! `produce_only`, no `consume_only`. Each service declares its own direction on its
//! builder (`.produces::<OrderEvent>()`, `.consumes::<OrderEvent>()`).

use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

/// An order was placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: i64,
    pub item: String,
}

/// An order was cancelled before it shipped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: i64,
    pub reason: String,
}

/// The `split.orders` topic: an outbox for the service that publishes, an inbox for the
/// one that applies.
#[derive(Debug, Clone, Topic)]
#[topic(
    name = "split.orders",
    key = "order_id",
    outbox(table = "split_orders_outbox"),
    inbox(dedup = "order_id", table = "split_orders_inbox"),
    group = "split-fulfilment"
)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    Cancelled(OrderCancelled),
}

/// How many events the producer publishes (and the consumer waits for): placed 1..=4,
/// then order 2 cancelled.
pub const EVENTS: u64 = 5;

/// The builder both services start from: the broker the launcher gives
/// (`KAFKA_BOOTSTRAP_SERVERS`), the run's namespace (`SPLIT_NAMESPACE`), and, on the
/// launcher's embedded broker, which has no admin API, no topic creation.
pub fn builder() -> Result<kafka_orm::KafkaOrmBuilder, Box<dyn std::error::Error>> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .map_err(|_| "KAFKA_BOOTSTRAP_SERVERS is not set: run the split_services launcher")?;
    let namespace = std::env::var("SPLIT_NAMESPACE").unwrap_or_default();
    let create_topics = std::env::var("SPLIT_CREATE_TOPICS").as_deref() != Ok("0");
    Ok(kafka_orm::KafkaOrm::builder()
        .bootstrap_servers(servers)
        .namespace(namespace)
        .create_topics(create_topics))
}

/// The service's own database, an SQLite file of its own (fresh on every run): a service
/// owns its database, and these two share only the topic.
pub async fn database(service: &str) -> Result<sea_orm::DatabaseConnection, sea_orm::DbErr> {
    let file = format!("target/kafka-orm-split-{service}.db");
    let _ = std::fs::remove_file(&file);
    sea_orm::Database::connect(format!("sqlite://{file}?mode=rwc")).await
}
