//! The kafka-orm demo: one derive, then the whole path of an event:
//!
//! 1. an order and its `OrderPlaced` event are written in **one database transaction**
//!    (the transactional outbox); a rolled-back transaction sends nothing;
//! 2. the **outbox relay** delivers committed events to Kafka, in order per customer;
//! 3. a **handler** applies each event in a transaction with the **inbox**, so a duplicate
//!    (here: the same order sent again by hand) is skipped, not applied twice;
//! 4. the plain typed **consumer stream** reads the topic too, with manual commit.
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
use sea_orm::{ActiveValue::Set, Database, Schema, TransactionTrait};
use serde::{Deserialize, Serialize};

/// The event. One derive maps it to a topic keyed by customer (one customer's events stay
/// in order), with an outbox on the producing side and an inbox on the consuming side that
/// applies each `order_id` once.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "demo.order-placed",
    key = "customer_id",
    outbox(table = "demo_order_placed_outbox"),
    inbox(dedup = "order_id", table = "demo_order_placed_inbox"),
    partitions = 3,
    group = "demo-billing",
    dlq
)]
pub struct OrderPlaced {
    pub order_id: i64,
    pub customer_id: String,
    pub total_cents: i64,
}

/// The producing service's business table.
mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "demo_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub customer_id: String,
        pub total_cents: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The consuming service's table: one row per billed order.
mod invoice {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "demo_invoices")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        pub customer_id: String,
        pub total_cents: i64,
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
    // A fresh start on every run: the demo owns these tables (kafka-orm creates its two
    // again at `build()`).
    for table in [
        "demo_orders",
        "demo_invoices",
        "demo_order_placed_outbox",
        "demo_order_placed_inbox",
    ] {
        db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
            .await?;
    }
    let schema = Schema::new(db.get_database_backend());
    for mut table in [
        schema.create_table_from_entity(order::Entity),
        schema.create_table_from_entity(invoice::Entity),
    ] {
        db.execute(table.if_not_exists()).await?;
    }

    let builder = KafkaOrm::builder().database(db.clone()).group("demo");
    let (builder, broker) = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => {
            // A fresh namespace per run, so re-runs against one cluster start clean.
            let run = format!("run-{}.", uuid_ish());
            (builder.bootstrap_servers(&servers).namespace(run), servers)
        }
        _ => (builder.embedded(), "the embedded broker".to_string()),
    };
    let orm = builder.build().await?; // checks the registry, creates topics and tables
    println!("kafka-orm demo: Kafka at {broker}, database {db_url}");
    for spec in orm.topics() {
        println!("  topic `{}` <- `{}`", orm.topic_name(spec), spec.type_name);
    }

    // 1. Business change and event in one transaction.
    let orders = orm.topic::<OrderPlaced>();
    for i in 1..=6 {
        let evt = OrderPlaced {
            order_id: i,
            customer_id: format!("customer-{}", i % 3),
            total_cents: 1_000 * i,
        };
        let txn = db.begin().await?;
        order::ActiveModel {
            id: Set(evt.order_id),
            customer_id: Set(evt.customer_id.clone()),
            total_cents: Set(evt.total_cents),
        }
        .insert(&txn)
        .await?;
        let message_id = orders.publish(&txn, &evt).await?;
        txn.commit().await?;
        println!("committed order {i} with its event {message_id} in one transaction");
    }
    let txn = db.begin().await?;
    let ghost = OrderPlaced {
        order_id: 99,
        customer_id: "ghost".into(),
        total_cents: 1,
    };
    orders.publish(&txn, &ghost).await?;
    txn.rollback().await?;
    println!("rolled back order 99: its event is gone with the transaction");
    let status = &orm.outbox_status().await?[0];
    println!("outbox backlog: {} events", status.backlog);

    // 2. The relay delivers committed events.
    let relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(50))
        .spawn()
        .await?;

    // 3. The handler applies each event once, in a transaction with the inbox row.
    let billing = orders
        .handler(async |txn, msg| {
            invoice::ActiveModel {
                order_id: Set(msg.order_id),
                customer_id: Set(msg.customer_id.clone()),
                total_cents: Set(msg.total_cents),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            println!(
                "billed     order {} of {} from partition {} offset {}",
                msg.order_id,
                msg.customer_id,
                msg.partition(),
                msg.offset()
            );
            Ok(())
        })
        .spawn()
        .await?;

    while orm.outbox_status().await?[0].backlog > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "relay delivered the outbox ({} events)",
        relay.stats().delivered
    );

    // A duplicate: order 3 sent again, straight to Kafka.
    let again = OrderPlaced {
        order_id: 3,
        customer_id: "customer-0".into(),
        total_cents: 3_000,
    };
    orders.produce(&again).await?;
    println!("sent order 3 again by hand (a duplicate)");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while billing.stats().handled + billing.stats().duplicates < 7 {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("handler stalled: {:?}", billing.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = billing.shutdown().await?;
    relay.shutdown().await?;
    println!(
        "handler: {} applied, {} duplicate skipped",
        stats.handled, stats.duplicates
    );

    // 4. The plain stream: read the topic from the start in another group.
    let mut stream = orders.clone().group("demo-audit").consume().await?;
    let mut seen = 0;
    while seen < 7 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .map_err(|_| "no message within 30 s")?
            .ok_or("consumer closed")??;
        stream.commit(&delivery).await?;
        seen += 1;
    }
    stream.shutdown().await?;
    println!("audit stream read {seen} messages and committed them");

    let invoices = invoice::Entity::find().count(&db).await?;
    println!("{invoices} invoices in the database for 6 orders: each applied exactly once");
    if invoices != 6 {
        return Err(format!("expected 6 invoices, found {invoices}").into());
    }
    Ok(())
}

/// A short unique-enough run id without another dependency.
fn uuid_ish() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos ^ u128::from(std::process::id()))
}
