//! Three message types on one `orders` topic, with typed handlers (KafkaFlow's
//! `AddTypedHandlers`): `OrderCreated`, `OrderPaid` and `OrderShipped` are plain structs;
//! `#[derive(Topic)]` on the enum that holds them maps them to one topic, one outbox, one
//! inbox and one consumer group, and every message carries its type's stable name in the
//! `kafka-orm-type` header, by which it is decoded: `OrderPaid` has a subset of
//! `OrderCreated`'s fields, and is still never taken for one.
//!
//! 1. an order's three events are published in the business transactions that cause them;
//! 2. one handler routes each type to its own closure (`Routes::on::<OrderPaid>(..)`), in a
//!    transaction with the inbox;
//! 3. a message of a type this service does not know goes to the dead-letter topic.
//!
//! Zero setup by default: the embedded broker and an SQLite file under `target/`;
//! `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` point it at real ones.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin orders_topic
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::deps::rdkafka::message::{Header, OwnedHeaders};
use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka_orm::{KafkaOrm, Routes, TYPE_HEADER, Topic};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use serde::{Deserialize, Serialize};

/// An order was placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
    pub customer: String,
    pub total_cents: i64,
}

/// An order was paid: every field of it is a field of `OrderCreated` too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: i64,
}

/// An order left the warehouse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: i64,
    pub carrier: String,
}

/// The `orders` topic and its three message types. The key and the dedup field are fields
/// of every variant's struct; the compiler checks that they are.
#[derive(Debug, Clone, Topic)]
#[topic(
    name = "orders",
    key = "order_id",                    // one order's events stay in order
    outbox(table = "orders_topic_outbox"),
    inbox(dedup = "order_id", table = "orders_topic_inbox"), // per type: created, paid, shipped once each
    group = "order-tracking",
    dlq,                                 // unknown types go to orders.dlq
)]
pub enum OrderEvent {
    Created(OrderCreated), // header `OrderCreated`
    #[topic(type_name = "order.paid")] // a name of its own; the default is the struct's
    Paid(OrderPaid),
    Shipped(OrderShipped),
}

/// What the handlers saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

#[tokio::main]
async fn main() -> Result<()> {
    let (orm, db) = connect().await?;
    let orders = orm.topic::<OrderEvent>();
    println!(
        "topic `{}` carries {:?}",
        orders.name(),
        OrderEvent::SPEC.message_types
    );

    // 1. Each event in the transaction of the change it records (the changes are left out).
    for (order_id, customer) in [(1, "ada"), (2, "grace")] {
        let events: [OrderEvent; 3] = [
            OrderCreated {
                order_id,
                customer: customer.into(),
                total_cents: 1999 * order_id,
            }
            .into(),
            OrderPaid { order_id }.into(),
            OrderShipped {
                order_id,
                carrier: "dhl".into(),
            }
            .into(),
        ];
        for event in &events {
            let txn = db.begin().await?;
            orders.publish(&txn, event).await?;
            txn.commit().await?;
        }
    }
    let relay = orm.outbox_relay().spawn().await?;

    // 3 (sent now, read in turn). Another service's producer adds a type we do not know.
    send_foreign(&orm, &orders.name()).await?;

    // 2. One handler, one consumer in one group: each type to its own route.
    let log: Log = Arc::default();
    let tracking = orders.handler_with(routes(&log)).spawn().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tracking.stats().handled < 6 || tracking.stats().dead_lettered < 1 {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the handler stalled: {:?}", tracking.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = tracking.shutdown().await?;
    relay.shutdown().await?;
    for line in log.lock().unwrap().iter() {
        println!("{line}");
    }
    println!(
        "{} applied, {} of an unknown type dead-lettered to `{}.dlq`",
        stats.handled,
        stats.unknown_types,
        orders.name()
    );
    if stats.handled != 6 || stats.unknown_types != 1 {
        return Err(format!("expected 6 applied and 1 unknown: {stats:?}").into());
    }
    Ok(())
}

/// The context and its database: the embedded broker and an SQLite file, or the real ones.
async fn connect() -> Result<(KafkaOrm, DatabaseConnection)> {
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://target/kafka-orm-orders-topic.db?mode=rwc".to_string());
    let db = Database::connect(&db_url).await?;
    for table in ["orders_topic_outbox", "orders_topic_inbox"] {
        db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
            .await?;
    }
    let builder = KafkaOrm::builder().database(db.clone());
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => builder
            .bootstrap_servers(servers)
            .namespace(format!("orders-topic-{}.", std::process::id())),
        _ => builder.embedded(),
    };
    Ok((builder.build().await?, db))
}

/// The typed handlers: one route per message type, each given a `Delivery` of its struct.
fn routes(log: &Log) -> Routes<OrderEvent> {
    let (created, paid, shipped) = (log.clone(), log.clone(), log.clone());
    Routes::new()
        .on::<OrderCreated>(async move |_txn, order| {
            // Database writes go on `_txn`, in the transaction of the inbox row.
            let line = format!(
                "order {} created for {} ({} cents)",
                order.order_id, order.customer, order.total_cents
            );
            created.lock().unwrap().push(line);
            Ok(())
        })
        .on::<OrderPaid>(async move |_txn, payment| {
            let line = format!("order {} paid", payment.order_id);
            paid.lock().unwrap().push(line);
            Ok(())
        })
        .on::<OrderShipped>(async move |_txn, shipment| {
            let line = format!(
                "order {} shipped by {}",
                shipment.order_id, shipment.carrier
            );
            shipped.lock().unwrap().push(line);
            Ok(())
        })
}

/// A message of type `OrderRefunded`, which `OrderEvent` does not carry, as a newer
/// producer elsewhere would send it (a raw client: kafka-orm names only its own types).
async fn send_foreign(orm: &KafkaOrm, topic: &str) -> Result<()> {
    let producer: FutureProducer = orm.client_config().create()?;
    let headers = OwnedHeaders::new().insert(Header {
        key: TYPE_HEADER,
        value: Some("OrderRefunded"),
    });
    let record = FutureRecord::to(topic)
        .key("1")
        .payload(r#"{"order_id":1}"#)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}
