//! Consume → process → produce in Kafka transactions, no database: every order becomes an
//! invoice exactly once for `read_committed` readers, together with the order's offset.
//!
//! Zero setup by default (an in-process broker); point it at real Kafka with
//! `KAFKA_BOOTSTRAP_SERVERS=host:port`.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin pipeline
//! ```

use std::time::Duration;

use kafka_orm::transactional::Outputs;
use kafka_orm::{Delivery, Headers, KafkaOrm, TRACEPARENT_HEADER, Topic};
use serde::{Deserialize, Serialize};

/// The input: orders, keyed by customer. Payloads that do not decode go to
/// `pipeline.order-created.dlq`, inside the transaction that moves past them.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "pipeline.order-created",
    key = "customer_id",
    partitions = 3,
    group = "pipeline-billing",
    dlq
)]
pub struct OrderCreated {
    pub order_id: i64,
    pub customer_id: String,
    pub total_cents: i64,
}

/// The output: one invoice per order, keyed by customer too.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "pipeline.invoices",
    key = "customer_id",
    partitions = 3,
    group = "pipeline-invoice-printer"
)]
pub struct Invoice {
    pub order_id: i64,
    pub customer_id: String,
    pub amount_cents: i64,
    pub vat_cents: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let builder = KafkaOrm::builder();
    let (builder, where_) = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => {
            // A fresh namespace per run, so re-runs against one cluster start clean.
            let run = format!("run-{}.", std::process::id());
            (builder.bootstrap_servers(&servers).namespace(run), servers)
        }
        _ => (builder.embedded(), "embedded broker".to_string()),
    };
    let orm = builder.build().await?;
    println!("kafka-orm pipeline: Kafka at {where_}");

    let orders: Vec<OrderCreated> = (1..=6)
        .map(|i| OrderCreated {
            order_id: i,
            customer_id: format!("customer-{}", i % 3),
            total_cents: 1_000 * i,
        })
        .collect();
    orm.topic::<OrderCreated>().produce_all(&orders).await?;
    println!("produced {} orders", orders.len());

    // The pipeline: each batch of orders and its invoices commit in one transaction.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline = orm
        .topic::<OrderCreated>()
        .transactional(
            async |batch: &[Delivery<OrderCreated>], out: &mut Outputs| {
                for order in batch {
                    // Carry the trace context of the order over to its invoice, if it has one.
                    let mut headers = Headers::new();
                    if let Some(tp) = order.headers().get(TRACEPARENT_HEADER) {
                        headers.insert(TRACEPARENT_HEADER, tp);
                    }
                    out.send_with_headers(
                        &Invoice {
                            order_id: order.order_id,
                            customer_id: order.customer_id.clone(),
                            amount_cents: order.total_cents,
                            vat_cents: order.total_cents / 5,
                        },
                        headers,
                    )?;
                }
                println!(
                    "transaction: {} orders -> {} invoices (attempt {})",
                    batch.len(),
                    out.len(),
                    out.attempt()
                );
                Ok(())
            },
        )
        .transactional_id("billing-0") // stable per instance: a restart fences its predecessor
        .batch(100, Duration::from_millis(50));
    let stats = pipeline.stats();
    let running = tokio::spawn(pipeline.run_until(async {
        let _ = stopped.await;
    }));

    // A reader of the invoices: kafka-orm's consumers read `read_committed`, so they see
    // an invoice only once its transaction (and the order's offset) committed.
    let mut invoices = orm.topic::<Invoice>().consume().await?;
    for _ in 0..orders.len() {
        let invoice = tokio::time::timeout(Duration::from_secs(60), invoices.next())
            .await
            .map_err(|_| "no invoice within 60 s")?
            .ok_or("consumer closed")??;
        println!(
            "invoice for order {} of {}: {} + {} VAT cents",
            invoice.order_id, invoice.customer_id, invoice.amount_cents, invoice.vat_cents
        );
        invoices.commit(&invoice).await?;
    }
    invoices.shutdown().await?;

    // Wait until the last batch's offsets are committed too, then stop gracefully.
    while stats.snapshot().consumed < orders.len() as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    let stats = running.await??;
    println!(
        "pipeline stopped: {} transactions committed, {} aborted, {} orders in, {} invoices out",
        stats.committed, stats.aborted, stats.consumed, stats.produced
    );
    Ok(())
}
