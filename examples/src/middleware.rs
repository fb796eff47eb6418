//! Middleware: layers around `produce`, `publish` and handlers (KafkaFlow's
//! `AddMiddlewares`, MassTransit's filters, Spring Kafka's interceptors).
//!
//! - a produce layer stamps every outgoing message with the tenant (`x-tenant`), on
//!   `produce` and on `publish`, where the header is stored in the outbox row and the relay
//!   sends it as stored; it refuses a message without a customer;
//! - a consume layer on the context times every handler invocation and counts outcomes;
//! - a consume layer on one handler drops test traffic (`x-test: 1`) unhandled and fails
//!   `fraud` orders without calling the handler: they go through the retries to the
//!   dead-letter topic like a handler's error.
//!
//! Zero setup by default: the embedded broker and an SQLite file under `target/`;
//! `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` point it at real services.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin middleware
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::middleware::{
    ConsumeContext, ConsumeLayer, Consumed, Next, Outcome, ProduceContext, ProduceLayer,
    ProduceNext,
};
use kafka_orm::{Delivery, HandlerError, Headers, KafkaOrm, Topic};
use sea_orm::{Database, TransactionTrait};
use serde::{Deserialize, Serialize};

/// An order; published through the outbox, handled without a database.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "middleware.orders",
    key = "customer",
    outbox,
    group = "middleware-billing",
    retry(attempts = 2, backoff = "20ms", max_backoff = "50ms"),
    dlq
)]
pub struct OrderPlaced {
    /// Unique per order.
    pub order_id: i64,
    /// The customer (the key).
    pub customer: String,
}

/// Stamps the tenant on everything this service sends; refuses a message without a key.
struct Tenant(&'static str);

impl ProduceLayer for Tenant {
    async fn produce(
        &self,
        ctx: &mut ProduceContext,
        next: ProduceNext<'_>,
    ) -> kafka_orm::Result<()> {
        if ctx.key().is_none_or(<[u8]>::is_empty) {
            return Err(ctx.reject("an order needs a customer"));
        }
        ctx.headers_mut().insert("x-tenant", self.0);
        next.run(ctx).await
    }
}

/// Times each handler invocation (outermost of the registered layers).
#[derive(Default)]
struct Timed {
    handled: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    slowest: Mutex<Duration>,
}

impl ConsumeLayer for Timed {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let started = Instant::now();
        let consumed = next.run().await;
        let took = started.elapsed();
        let counter = match &consumed {
            Ok(Outcome::Skipped) => &self.skipped,
            Ok(_) => &self.handled,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut slowest = self.slowest.lock().unwrap();
        *slowest = (*slowest).max(took);
        let msg = ctx.message();
        println!(
            "  {}@{} attempt {}: {} in {took:?}",
            msg.message_type(),
            msg.offset(),
            msg.attempt(),
            match &consumed {
                Ok(outcome) => format!("{outcome:?}"),
                Err(e) => format!("failed: {e}"),
            }
        );
        consumed
    }
}

/// Drops test traffic unhandled; fails fraud without calling the handler.
struct Screen;

impl ConsumeLayer for Screen {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let msg = ctx.message();
        if msg.headers().get_str("x-test") == Some("1") {
            return Ok(Outcome::Skipped);
        }
        if msg
            .value::<OrderPlaced>()
            .is_some_and(|o| o.customer == "fraud")
        {
            return Err("screened out: known fraudulent customer".into());
        }
        next.run().await
    }
}

async fn bill(order: &Delivery<OrderPlaced>) -> Result<(), HandlerError> {
    let tenant = order.headers().get_str("x-tenant").unwrap_or("none");
    println!(
        "  billed order {} of {} (tenant {tenant})",
        order.order_id, order.customer
    );
    Ok(())
}

fn order(order_id: i64, customer: &str) -> OrderPlaced {
    OrderPlaced {
        order_id,
        customer: customer.into(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let timed = Arc::new(Timed::default());
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://target/kafka-orm-middleware.db?mode=rwc".to_string());
    let db = Database::connect(&db_url).await?;
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => KafkaOrm::builder().bootstrap_servers(servers),
        _ => KafkaOrm::builder().embedded(),
    };
    let orm = builder
        .namespace(format!("example-{}.", std::process::id())) // rerunnable
        .database(db.clone())
        .produce_layer(Tenant("acme"))
        .consume_layer(Arc::clone(&timed)) // keep a clone to read it
        .build()
        .await?;
    let orders = orm.topic::<OrderPlaced>();

    // Direct produce and outbox publish both go through the produce layer.
    orders.produce(&order(1, "alice")).await?;
    let test = Headers::new().with("x-test", "1");
    orders.produce_with_headers(&order(2, "bob"), test).await?;
    let txn = db.begin().await?;
    orders.publish(&txn, &order(3, "carol")).await?; // x-tenant stored in the row
    orders.publish(&txn, &order(4, "fraud")).await?;
    txn.commit().await?;
    let refused = orders.produce(&order(5, "")).await.unwrap_err();
    println!("refused: {refused}");

    let relay = orm.outbox_relay().spawn().await?;
    let billing = orders
        .handler_without_database(async |order| bill(order).await)
        .layer(Screen)
        .spawn()
        .await?;
    tokio::time::timeout(Duration::from_secs(60), async {
        while billing.stats().handled < 2 || billing.stats().dead_lettered < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|_| format!("orders not handled in time: {:?}", billing.stats()))?;
    let stats = billing.shutdown().await?;
    relay.shutdown().await?;

    let (handled, skipped, failed) = (
        timed.handled.load(Ordering::Relaxed),
        timed.skipped.load(Ordering::Relaxed),
        timed.failed.load(Ordering::Relaxed),
    );
    println!(
        "layer saw: {handled} handled, {skipped} skipped, {failed} failed attempts (slowest {:?}); handler: {} handled, {} dead-lettered",
        timed.slowest.lock().unwrap(),
        stats.handled,
        stats.dead_lettered
    );
    // What the program shows, checked: scripts/examples runs it.
    if (handled, skipped, failed) != (2, 1, 2)
        || stats.handled != 2
        || stats.dead_lettered != 1
        || !matches!(refused, kafka_orm::Error::Rejected { .. })
    {
        return Err("the layers did not see what they should have".into());
    }
    Ok(())
}
