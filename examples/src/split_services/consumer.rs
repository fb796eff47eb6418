//! The fulfilment service: it only consumes `OrderEvent`s, with typed handlers in a
//! transaction with its inbox, and says so on its builder. Producing them here is refused
//! (`Error::NotProduced`).
//!
//! Started by the `split_services` launcher (or with `KAFKA_BOOTSTRAP_SERVERS` set).

#[path = "events.rs"]
mod events;

use std::time::Duration;

use events::{EVENTS, OrderCancelled, OrderEvent, OrderPlaced};
use kafka_orm::{Error, Routes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = events::database("consumer").await?;
    let orm = events::builder()?
        .database(db) // the inbox's
        .consumes::<OrderEvent>() // and nothing else: this service produces nothing
        .build()
        .await?;
    let orders = orm.topic::<OrderEvent>();

    let routes = Routes::new()
        .on::<OrderPlaced>(async |_txn, placed| {
            println!("consumer: pick order {} ({})", placed.order_id, placed.item);
            Ok(())
        })
        .on::<OrderCancelled>(async |_txn, cancelled| {
            println!(
                "consumer: stop order {}: {}",
                cancelled.order_id, cancelled.reason
            );
            Ok(())
        });
    let fulfilment = orders.handler_with(routes).spawn().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while fulfilment.stats().handled < EVENTS {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("consumer: stalled at {:?}", fulfilment.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = fulfilment.shutdown().await?;
    println!("consumer: applied {} order events", stats.handled);

    let placed: OrderEvent = OrderPlaced {
        order_id: 9,
        item: "pen".into(),
    }
    .into();
    match orders.produce(&placed).await {
        Err(e @ Error::NotProduced { .. }) => println!("consumer: producing is refused: {e}"),
        other => return Err(format!("a consumer-only service produced: {other:?}").into()),
    }
    Ok(())
}
