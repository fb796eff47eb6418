//! The SeaORM entities `#[derive(Topic)]` generates for the outbox and inbox tables read
//! what the runtime writes, on real PostgreSQL and SQLite (with real Kafka): typed key
//! columns in the outbox, typed dedup columns in the inbox.

use std::time::Duration;

use kafka_orm::deps::sea_orm::prelude::Uuid;
use kafka_orm::deps::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use kafka_orm::{ColumnKind, KafkaOrm, KafkaOrmBuilder, Topic};
use kafka_orm_tests::{fresh_postgres, fresh_sqlite, real_kafka, within};
use serde::{Deserialize, Serialize};

/// A composite key of a string and an integer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "entities.orders",
    key = ["tenant", "order_id"],
    outbox,
    partitions = 2,
    group = "entities-orders"
)]
struct OrderPlaced {
    tenant: String,
    order_id: i64,
    total_cents: i64,
}

/// Key columns of the other types: `UUID` (a BLOB on SQLite), `BOOLEAN`, and `TEXT` for
/// a `u64`, which does not fit a `BIGINT`; the table is renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "entities.devices",
    key = ["device", "active", "serial"],
    outbox(table = "device_events"),
    produce_only
)]
struct DeviceSeen {
    device: Uuid,
    active: bool,
    serial: u64,
}

/// A composite typed dedup key: text, integer and UUID columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "entities.payments",
    key = "account",
    inbox(dedup = ["tenant", "payment_no", "payment_id"]),
    partitions = 2,
    group = "entities-ledger"
)]
struct PaymentCaptured {
    tenant: String,
    payment_no: i64,
    payment_id: Uuid,
    account: String,
}

fn order(tenant: &str, order_id: i64) -> OrderPlaced {
    OrderPlaced {
        tenant: tenant.into(),
        order_id,
        total_cents: 100 * order_id,
    }
}

async fn start(builder: KafkaOrmBuilder, db: &DatabaseConnection) -> KafkaOrm {
    builder.database(db.clone()).build().await.unwrap()
}

async fn backlog(orm: &KafkaOrm) -> u64 {
    orm.outbox_status()
        .await
        .unwrap()
        .iter()
        .map(|s| s.backlog)
        .sum()
}

/// Publishes through the outbox, reads the rows back through the generated entities,
/// relays them and checks the tables drain.
async fn outbox_rows_through_the_entity(orm: &KafkaOrm, db: &DatabaseConnection) {
    assert_eq!(
        OrderPlaced::SPEC.outbox.unwrap().key_columns,
        [ColumnKind::Text, ColumnKind::BigInt]
    );

    // A rolled-back publish leaves no row.
    let txn = db.begin().await.unwrap();
    orm.topic::<OrderPlaced>()
        .publish(&txn, &order("acme", 99))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(
        order_placed_outbox::Entity::find().count(db).await.unwrap(),
        0
    );

    let orders = [order("acme", 1), order("globex", 2), order("acme", 3)];
    let devices = [
        DeviceSeen {
            device: Uuid::now_v7(),
            active: true,
            serial: u64::MAX,
        },
        DeviceSeen {
            device: Uuid::nil(),
            active: false,
            serial: 7,
        },
    ];
    let txn = db.begin().await.unwrap();
    let ids = orm
        .topic::<OrderPlaced>()
        .publish_all(&txn, &orders)
        .await
        .unwrap();
    let device_ids = orm
        .topic::<DeviceSeen>()
        .publish_all(&txn, &devices)
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let rows = order_placed_outbox::Entity::find()
        .order_by_asc(order_placed_outbox::Column::Id)
        .all(db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for ((row, event), id) in rows.iter().zip(&orders).zip(&ids) {
        assert_eq!(row.key_tenant, event.tenant);
        assert_eq!(row.key_order_id, event.order_id);
        assert_eq!(&row.message_id, id);
        assert_eq!(
            row.message_key.as_deref(),
            Some(format!(r#"["{}",{}]"#, event.tenant, event.order_id).as_str())
        );
        assert!((0..64).contains(&row.bucket), "{row:?}");
        let payload: OrderPlaced = serde_json::from_slice(&row.payload).unwrap();
        assert_eq!(&payload, event);
        assert!(row.created_at > 1_600_000_000_000, "{row:?}");
        assert_eq!((row.attempts, row.next_attempt_at), (0, 0));
        assert_eq!(row.last_error, None);
    }
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    // The typed columns can be queried.
    let acme = order_placed_outbox::Entity::find()
        .filter(order_placed_outbox::Column::KeyTenant.eq("acme"))
        .filter(order_placed_outbox::Column::KeyOrderId.gte(2))
        .all(db)
        .await
        .unwrap();
    assert_eq!(acme.iter().map(|r| r.key_order_id).collect::<Vec<_>>(), [3]);

    let rows = device_events::Entity::find()
        .order_by_asc(device_events::Column::Id)
        .all(db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for ((row, event), id) in rows.iter().zip(&devices).zip(&device_ids) {
        assert_eq!(&row.message_id, id);
        assert_eq!(row.key_device, event.device);
        assert_eq!(row.key_active, event.active);
        assert_eq!(row.key_serial, event.serial.to_string());
    }
    let by_uuid = device_events::Entity::find()
        .filter(device_events::Column::KeyDevice.eq(devices[0].device))
        .filter(device_events::Column::KeyActive.eq(true))
        .one(db)
        .await
        .unwrap()
        .expect("the row of the first device");
    assert_eq!(by_uuid.key_serial, u64::MAX.to_string());
    assert_eq!(backlog(orm).await, 5);

    // The relay delivers and deletes the rows; the orders arrive with their keys.
    let relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(50))
        .spawn()
        .await
        .unwrap();
    let mut consumer = orm.topic::<OrderPlaced>().consume().await.unwrap();
    let mut got = Vec::new();
    while got.len() < orders.len() {
        let d = within(60, "the relayed orders", consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            d.key(),
            Some(format!(r#"["{}",{}]"#, d.tenant, d.order_id).as_bytes())
        );
        got.push((*d).clone());
    }
    consumer.shutdown().await.unwrap();
    got.sort_by_key(|o| o.order_id);
    assert_eq!(got, orders);
    within(30, "the outbox backlog to drain", async {
        while backlog(orm).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        order_placed_outbox::Entity::find().count(db).await.unwrap(),
        0
    );
    assert_eq!(device_events::Entity::find().count(db).await.unwrap(), 0);
    relay.shutdown().await.unwrap();
}

/// Runs a handler over a few payments (one sent twice) and reads the inbox rows back
/// through the generated entity.
async fn inbox_rows_through_the_entity(orm: &KafkaOrm, db: &DatabaseConnection) {
    let payments: Vec<PaymentCaptured> = (0..4)
        .map(|i| PaymentCaptured {
            tenant: if i % 2 == 0 { "acme" } else { "globex" }.into(),
            payment_no: 1000 + i,
            payment_id: Uuid::now_v7(),
            account: format!("acct-{i}"),
        })
        .collect();
    let topic = orm.topic::<PaymentCaptured>();
    topic.produce_all(&payments).await.unwrap();
    topic.produce(&payments[1]).await.unwrap(); // resent: a duplicate

    let h = topic
        .handler_boxed(|_txn, _msg| Box::pin(async move { Ok(()) }))
        .spawn()
        .await
        .unwrap();
    within(60, "all payments seen", async {
        loop {
            let s = h.stats();
            if s.handled + s.duplicates >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let stats = h.shutdown().await.unwrap();
    assert_eq!((stats.handled, stats.duplicates), (4, 1));

    let mut rows = payment_captured_inbox::Entity::find()
        .all(db)
        .await
        .unwrap();
    rows.sort_by_key(|r| r.dedup_payment_no);
    assert_eq!(rows.len(), payments.len(), "one row per payment: {rows:?}");
    for (row, payment) in rows.iter().zip(&payments) {
        assert_eq!(row.dedup_tenant, payment.tenant);
        assert_eq!(row.dedup_payment_no, payment.payment_no);
        assert_eq!(row.dedup_payment_id, payment.payment_id);
        assert!(row.consumer_group.ends_with("entities-ledger"), "{row:?}");
        assert!(row.topic.ends_with("entities.payments"), "{row:?}");
        assert!((0..2).contains(&row.kafka_partition), "{row:?}");
        assert!(row.kafka_offset >= 0, "{row:?}");
        assert!(row.processed_at > 1_600_000_000_000, "{row:?}");
    }
    // The typed dedup columns can be queried, the UUID one too.
    let found = payment_captured_inbox::Entity::find()
        .filter(payment_captured_inbox::Column::DedupPaymentId.eq(payments[2].payment_id))
        .filter(payment_captured_inbox::Column::DedupTenant.eq("acme"))
        .one(db)
        .await
        .unwrap()
        .expect("the inbox row of the third payment");
    assert_eq!(found.dedup_payment_no, 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_rows_through_the_generated_entities() {
    let Some(builder) = real_kafka("entities-outbox-pg") else {
        return;
    };
    let Some(db) = fresh_postgres("entities-outbox-pg").await else {
        return;
    };
    let orm = start(builder, &db).await;
    outbox_rows_through_the_entity(&orm, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox_rows_through_the_generated_entities() {
    let Some(builder) = real_kafka("entities-outbox-sqlite") else {
        return;
    };
    let db = fresh_sqlite("entities-outbox-sqlite").await;
    let orm = start(builder, &db).await;
    outbox_rows_through_the_entity(&orm, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_rows_through_the_generated_entity() {
    let Some(builder) = real_kafka("entities-inbox-pg") else {
        return;
    };
    let Some(db) = fresh_postgres("entities-inbox-pg").await else {
        return;
    };
    let orm = start(builder, &db).await;
    inbox_rows_through_the_entity(&orm, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox_rows_through_the_generated_entity() {
    let Some(builder) = real_kafka("entities-inbox-sqlite") else {
        return;
    };
    let db = fresh_sqlite("entities-inbox-sqlite").await;
    let orm = start(builder, &db).await;
    inbox_rows_through_the_entity(&orm, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_table_without_the_typed_key_columns_fails_at_build() {
    let Some(builder) = real_kafka("entities-old-table") else {
        return;
    };
    let db = fresh_sqlite("entities-old-table").await;
    // The table as kafka-orm created it before the typed key columns.
    db.execute_unprepared(
        "CREATE TABLE order_placed_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         message_id TEXT NOT NULL, message_key TEXT NULL, bucket INTEGER NOT NULL, \
         payload BLOB NOT NULL, headers BLOB NOT NULL, created_at BIGINT NOT NULL, \
         attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL DEFAULT 0, \
         last_error TEXT NULL)",
    )
    .await
    .unwrap();
    let Err(err) = builder.database(db).build().await else {
        panic!("build succeeds over an outbox table without the typed key columns");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("order_placed_outbox") && msg.contains("key_tenant, key_order_id"),
        "{msg}"
    );
}
