//! Typed handlers per message type of a topic enum on the real broker: `Routes` (in a
//! transaction with the inbox) and `RoutesWithoutDatabase`, one consumer for every type.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::{
    Delivery, HandlerError, HandlerWithoutDatabase, Routes, RoutesWithoutDatabase, Topic,
};
use kafka_orm_tests::{fresh_postgres, publish_committed, real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParcelPacked {
    pub parcel: i64,
    pub weight_g: i64,
}

/// Every field of it is a field of `ParcelPacked` too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParcelSent {
    pub parcel: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParcelLost {
    pub parcel: i64,
}

/// With an outbox and an inbox: routes in a transaction.
#[derive(Debug, Clone, PartialEq, Topic)]
#[topic(
    name = "routes.parcels",
    key = "parcel",
    outbox,
    inbox(dedup = "parcel"),
    group = "routes"
)]
pub enum ParcelEvent {
    Packed(ParcelPacked),
    Sent(ParcelSent),
    Lost(ParcelLost),
}

/// Without a database: routes without one.
#[derive(Debug, Clone, PartialEq, Topic)]
#[topic(name = "routes.tracking", key = "parcel", group = "routes-tracking")]
pub enum TrackingEvent {
    Packed(ParcelPacked),
    Sent(ParcelSent),
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A struct route: counts what it is given.
struct Weigher(Seen);

impl HandlerWithoutDatabase<ParcelPacked> for Weigher {
    async fn handle(&self, msg: &Delivery<ParcelPacked>) -> Result<(), HandlerError> {
        let line = format!("weighed {} at {} g", msg.parcel, msg.weight_g);
        self.0.lock().unwrap().push(line);
        Ok(())
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    within(90, what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_each_type_to_its_own_handler_in_a_transaction() {
    let (Some(builder), Some(db)) = (real_kafka("routes-db"), fresh_postgres("routes-db").await)
    else {
        return;
    };
    let orm = builder.database(db.clone()).build().await.unwrap();
    let events: Vec<ParcelEvent> = vec![
        ParcelPacked {
            parcel: 1,
            weight_g: 500,
        }
        .into(),
        ParcelSent { parcel: 1 }.into(),
        ParcelPacked {
            parcel: 2,
            weight_g: 900,
        }
        .into(),
        ParcelLost { parcel: 1 }.into(),
        ParcelSent { parcel: 1 }.into(), // a duplicate of the same type: the inbox skips it
    ];
    publish_committed(&orm, &db, &events).await;
    let relay = orm.outbox_relay().spawn().await.unwrap();

    let seen: Seen = Arc::default();
    let (packed, sent) = (seen.clone(), seen.clone());
    let routes = Routes::new()
        .on::<ParcelPacked>(async move |_txn, p| {
            packed
                .lock()
                .unwrap()
                .push(format!("packed {} ({} g)", p.parcel, p.weight_g));
            Ok(())
        })
        .on::<ParcelSent>(async move |_txn, s| {
            sent.lock().unwrap().push(format!("sent {}", s.parcel));
            Ok(())
        });
    // `ParcelLost` has no route: acknowledged without a handler.
    let handler = orm
        .topic::<ParcelEvent>()
        .handler_with(routes)
        .spawn()
        .await
        .unwrap();
    until("four applied and one duplicate", || {
        let s = handler.stats();
        s.handled == 4 && s.duplicates == 1
    })
    .await;
    handler.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let parcel_1: Vec<&String> = seen.iter().filter(|l| l.contains(" 1")).collect();
    assert_eq!(parcel_1, ["packed 1 (500 g)", "sent 1"], "{seen:?}");
    assert!(seen.contains(&"packed 2 (900 g)".to_string()), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_without_a_database_take_closures_and_structs() {
    let Some(builder) = real_kafka("routes-nodb") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let tracking = orm.topic::<TrackingEvent>();
    let events: Vec<TrackingEvent> = vec![
        ParcelPacked {
            parcel: 7,
            weight_g: 250,
        }
        .into(),
        ParcelSent { parcel: 7 }.into(),
    ];
    tracking.produce_all(&events).await.unwrap();

    let seen: Seen = Arc::default();
    let sent = seen.clone();
    let routes = RoutesWithoutDatabase::new()
        .on_with::<ParcelPacked>(Weigher(seen.clone()))
        .on::<ParcelSent>(async move |s| {
            sent.lock().unwrap().push(format!("sent {}", s.parcel));
            Ok(())
        });
    let handler = tracking.handler_with(routes).spawn().await.unwrap();
    until("both handled", || handler.stats().handled == 2).await;
    handler.shutdown().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["weighed 7 at 250 g", "sent 7"]);
}
