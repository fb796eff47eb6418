//! Direction per service (issue 11, part 3): one events module, a producer-only and a
//! consumer-only service, each declaring what it produces and consumes on the builder.
//! Before, direction was only the type's (`produce_only` / `consume_only`), so the same
//! type could not be produce-only in one service and consume-only in another.

use std::time::Duration;

use kafka_orm::{Error, KafkaOrm, OutboxRelay, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, unique_namespace, within};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde::{Deserialize, Serialize};

/// The shared contract: the type says neither `produce_only` nor `consume_only`.
mod events {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderPlaced {
        pub order_id: i64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderCancelled {
        pub order_id: i64,
    }

    #[derive(Debug, Clone, PartialEq, Topic)]
    #[topic(
        name = "directions.orders",
        key = "order_id",
        outbox,
        group = "directions"
    )]
    pub enum OrderEvent {
        Placed(OrderPlaced),
        Cancelled(OrderCancelled),
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
    #[topic(
        name = "directions.payments",
        key = "order_id",
        inbox,
        group = "directions"
    )]
    pub struct PaymentReceived {
        pub order_id: i64,
    }
}
use events::{OrderCancelled, OrderEvent, OrderPlaced, PaymentReceived};

/// The producing service: sends both types (directly and through the outbox), and is
/// refused consuming them, or producing a type it did not declare.
async fn producing_service(orm: &KafkaOrm, db: &DatabaseConnection) -> OutboxRelay {
    let orders = orm.topic::<OrderEvent>();
    orders
        .produce(&OrderPlaced { order_id: 1 }.into())
        .await
        .unwrap();
    let txn = db.begin().await.unwrap();
    orders
        .publish(&txn, &OrderCancelled { order_id: 1 }.into())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let relay = orm.outbox_relay().spawn().await.unwrap();

    let err = orders.consume().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotConsumed {
                topic: "directions.orders",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(".consumes::<OrderEvent>()"), "{text}");
    let err = orm
        .topic::<PaymentReceived>()
        .produce(&PaymentReceived { order_id: 1 })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotProduced { .. }), "{err:?}");
    relay
}

/// The consuming service: reads both types, and is refused producing or publishing them.
async fn consuming_service(orm: &KafkaOrm, db: &DatabaseConnection) {
    let mut stream = orm.topic::<OrderEvent>().consume().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = within(60, "the orders", stream.next())
            .await
            .unwrap()
            .unwrap();
        got.push(d.into_value());
    }
    stream.shutdown().await.unwrap();
    assert!(got.contains(&OrderPlaced { order_id: 1 }.into()), "{got:?}");
    assert!(
        got.contains(&OrderCancelled { order_id: 1 }.into()),
        "{got:?}"
    );

    let placed: OrderEvent = OrderPlaced { order_id: 2 }.into();
    let err = orm
        .topic::<OrderEvent>()
        .produce(&placed)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotProduced {
                topic: "directions.orders",
                ..
            }
        ),
        "{err:?}"
    );
    let txn = db.begin().await.unwrap();
    let err = orm
        .topic::<OrderEvent>()
        .publish(&txn, &placed)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotProduced { .. }), "{err:?}");
    txn.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_uses_the_shared_types_only_the_way_it_declares() {
    let namespace = unique_namespace("directions");
    let (Some(producing), Some(consuming), Some(db)) = (
        real_kafka("directions"),
        real_kafka("directions"),
        fresh_postgres("directions").await,
    ) else {
        return;
    };
    // One namespace for both, as two deployments on one cluster.
    let producer = producing
        .namespace(namespace.clone())
        .database(db.clone())
        .produces::<OrderEvent>()
        .build()
        .await
        .unwrap();
    let consumer = consuming
        .namespace(namespace)
        .consumes::<OrderEvent>()
        .build()
        .await
        .unwrap();
    let relay = producing_service(&producer, &db).await;
    consuming_service(&consumer, &db).await;
    within(30, "the relay", relay.shutdown()).await.unwrap();
}

#[tokio::test]
async fn consuming_an_inbox_topic_without_a_database_fails_at_build() {
    // Checked before any connection, so no broker is needed.
    let err = kafka_orm::KafkaOrm::builder()
        .bootstrap_servers("127.0.0.1:1")
        .connect_timeout(Duration::from_secs(1))
        .consumes::<PaymentReceived>()
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoDatabase {
                operation: "consumes",
                topic: "directions.payments"
            }
        ),
        "{err:?}"
    );
}
