//! The kafka-orm demo: declare a topic with one derive, produce typed events, consume them
//! as a stream and store what was consumed with SeaORM.
//!
//! Zero setup by default: an in-process broker (librdkafka's mock cluster) and an SQLite
//! file under `target/`. Point it at real infrastructure with
//! `KAFKA_BOOTSTRAP_SERVERS=host:port` and `DATABASE_URL=postgres://..`.
//!
//! ```text
//! ./scripts/demo            # or: cargo run -p kafka-orm-examples --bin demo
//! ```

use std::time::Duration;

use kafka_orm::{KafkaOrm, Topic};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, Database, Schema};
use serde::{Deserialize, Serialize};

/// The event: one derive maps it to the `demo.order-created` topic, keyed by customer, so
/// all of one customer's orders land on one partition, in order.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "demo.order-created",
    key = "customer_id",
    partitions = 3,
    group = "demo-billing"
)]
pub struct OrderCreated {
    pub order_id: i64,
    pub customer_id: String,
    pub total_cents: i64,
}

/// What the consuming side stores: a plain SeaORM entity.
mod billed {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "demo_billed_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: i64,
        pub customer_id: String,
        pub total_cents: i64,
        pub partition: i32,
        pub kafka_offset: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://target/kafka-orm-demo.db?mode=rwc".to_string());
    let db = Database::connect(&db_url).await?;
    let backend = db.get_database_backend();
    db.execute(
        Schema::new(backend)
            .create_table_from_entity(billed::Entity)
            .if_not_exists(),
    )
    .await?;
    billed::Entity::delete_many().exec(&db).await?;

    let builder = KafkaOrm::builder().database(db.clone());
    let (builder, where_) = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => {
            // A fresh namespace per run, so re-runs against one cluster start clean.
            let run = format!("run-{}.", std::process::id());
            (builder.bootstrap_servers(&servers).namespace(run), servers)
        }
        _ => (builder.embedded(), "embedded broker".to_string()),
    };
    let orm = builder.build().await?;
    println!("kafka-orm demo: Kafka at {where_}, database {db_url}");
    for spec in orm.topics() {
        println!(
            "  registered topic `{}` for `{}` (key {:?})",
            spec.name, spec.type_name, spec.key_fields
        );
    }

    let orders = orm.topic::<OrderCreated>();
    let events: Vec<OrderCreated> = (1..=6)
        .map(|i| OrderCreated {
            order_id: i,
            customer_id: format!("customer-{}", i % 3),
            total_cents: 1_000 * i,
        })
        .collect();
    for report in orders.produce_all(&events).await? {
        println!(
            "produced  {} -> {}[{}]@{}",
            report.message_id, report.topic, report.partition, report.offset
        );
    }

    let mut stream = orders.consume().await?;
    let mut seen = 0;
    while seen < events.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .map_err(|_| "no message within 30 s")?
            .ok_or("consumer closed")??;
        billed::ActiveModel {
            order_id: Set(delivery.order_id),
            customer_id: Set(delivery.customer_id.clone()),
            total_cents: Set(delivery.total_cents),
            partition: Set(delivery.partition()),
            kafka_offset: Set(delivery.offset()),
        }
        .insert(&db)
        .await?;
        stream.commit(&delivery).await?;
        println!(
            "consumed  order {} of {} ({} cents) from partition {} offset {}",
            delivery.order_id,
            delivery.customer_id,
            delivery.total_cents,
            delivery.partition(),
            delivery.offset()
        );
        seen += 1;
    }
    stream.close(Duration::from_secs(5)).await?;

    let stored = billed::Entity::find().count(&db).await?;
    println!("stored {stored} billed orders in the database; round trip complete");
    Ok(())
}
