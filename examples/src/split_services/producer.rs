//! The ordering service: it only produces `OrderEvent`s, through the outbox, and says so
//! on its builder. Consuming them here is refused (`Error::NotConsumed`).
//!
//! Started by the `split_services` launcher (or with `KAFKA_BOOTSTRAP_SERVERS` set).

#[path = "events.rs"]
mod events;

use std::time::Duration;

use events::{EVENTS, OrderCancelled, OrderEvent, OrderPlaced};
use kafka_orm::Error;
use sea_orm::TransactionTrait;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = events::database("producer").await?;
    let orm = events::builder()?
        .database(db.clone())
        .produces::<OrderEvent>() // and nothing else: this service consumes nothing
        .build()
        .await?;
    let orders = orm.topic::<OrderEvent>();

    let mut published: Vec<OrderEvent> = (1..=4)
        .map(|order_id| {
            OrderPlaced {
                order_id,
                item: format!("book {order_id}"),
            }
            .into()
        })
        .collect();
    published.push(
        OrderCancelled {
            order_id: 2,
            reason: "changed my mind".into(),
        }
        .into(),
    );
    assert_eq!(published.len() as u64, EVENTS);
    for event in &published {
        let txn = db.begin().await?; // with the order's own rows, in a real service
        orders.publish(&txn, event).await?;
        txn.commit().await?;
    }
    let relay = orm.outbox_relay().spawn().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while orm.outbox_status().await?.iter().any(|s| s.backlog > 0) {
        if tokio::time::Instant::now() > deadline {
            return Err("the relay did not deliver the outbox within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.shutdown().await?;
    println!("producer: published and delivered {EVENTS} order events");

    match orders.consume().await {
        Err(e @ Error::NotConsumed { .. }) => println!("producer: consuming is refused: {e}"),
        other => return Err(format!("a producer-only service consumed: {other:?}").into()),
    }
    Ok(())
}
