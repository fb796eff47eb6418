//! The test kit (`kafka_orm::testing`, feature `testing`) on an orders service, as a user
//! writes its tests: the service's functions with a `Recorder`, a handler called with
//! `Delivery::for_test`, and the service's real handlers and the real relay in a
//! `TestHarness`, with one test per fault. No broker, no PostgreSQL: these run anywhere
//! (the harness uses the embedded broker and an SQLite file of its own).
//!
//! The chapter `kafka-orm/docs/testing.md` walks through this file.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::dlq::Payload;
use kafka_orm::handler::InTransaction;
use kafka_orm::testing::{Busy, Message, Recorder, Sent, TestHarness};
use kafka_orm::{Delivery, Error, HandlerBuilder, KafkaOrm, Produce, Routes};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

/// The service under test: what its `main` wires up, and what its tests reuse.
mod orders {
    use kafka_orm::handler::{Apply, HandlerError};
    use kafka_orm::{Delivery, HandlerBuilder, KafkaOrm, Publish, Topic};
    use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
    use serde::{Deserialize, Serialize};

    /// An order was placed: published in the transaction that stores the order, billed
    /// once per order by the `billing` group.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
    #[topic(
        name = "orders",
        key = "customer",
        partitions = 2,
        outbox,
        inbox(dedup = "order_id"),
        group = "billing",
        retry(attempts = 3, backoff = "10ms", max_backoff = "50ms"),
        dlq
    )]
    pub struct OrderPlaced {
        pub order_id: i64,
        pub customer: String,
        pub cents: i64,
    }

    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// Creates the service's own tables.
    pub async fn migrate(db: &DatabaseConnection) -> Result<(), BoxError> {
        db.execute_unprepared("CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, cents BIGINT NOT NULL)").await?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS invoices (order_id BIGINT NOT NULL, cents BIGINT NOT NULL)",
        )
        .await?;
        Ok(())
    }

    /// Places an order: the row and its event in one transaction. An order of a blocked
    /// customer is refused after the event was written, so nothing is published.
    pub async fn place_order(
        db: &DatabaseConnection,
        events: &impl Publish<OrderPlaced>,
        order: &OrderPlaced,
    ) -> Result<String, BoxError> {
        let txn = db.begin().await?;
        let insert = format!(
            "INSERT INTO orders (id, customer, cents) VALUES ({}, '{}', {})",
            order.order_id, order.customer, order.cents
        );
        txn.execute_unprepared(&insert).await?;
        let id = events.publish(&txn, order).await?;
        if order.customer == "blocked" {
            txn.rollback().await?;
            return Err("customer is blocked".into());
        }
        txn.commit().await?;
        Ok(id)
    }

    /// Bills an order, in the handler's transaction (with its inbox row). A negative
    /// total fails every attempt (then the order is dead-lettered); the tax service of
    /// customer `flaky` times out on the first attempt.
    pub async fn bill(
        txn: &DatabaseTransaction,
        order: &Delivery<OrderPlaced>,
    ) -> Result<(), HandlerError> {
        if order.cents < 0 {
            return Err(format!("order {} has a negative total", order.order_id).into());
        }
        if order.customer == "flaky" && order.attempt() == 1 {
            return Err("the tax service timed out".into());
        }
        let insert = format!(
            "INSERT INTO invoices (order_id, cents) VALUES ({}, {})",
            order.order_id, order.cents
        );
        txn.execute_unprepared(&insert).await?;
        Ok(())
    }

    /// The billing handler, as the service's `main` starts it (`use<>`: the handler's
    /// type does not borrow the context, so the harness can call this again).
    pub fn billing(orm: &KafkaOrm) -> HandlerBuilder<OrderPlaced, impl Apply<OrderPlaced> + use<>> {
        orm.topic::<OrderPlaced>().handler(bill).concurrency(4)
    }
}

use orders::OrderPlaced;

fn order(order_id: i64, customer: &str, cents: i64) -> OrderPlaced {
    OrderPlaced {
        order_id,
        customer: customer.into(),
        cents,
    }
}

/// A harness running the billing handler, with the service's tables.
async fn billing_harness() -> TestHarness {
    let harness = TestHarness::builder()
        .handler(orders::billing)
        .spawn()
        .await
        .expect("starting the harness");
    orders::migrate(harness.database()).await.unwrap();
    harness
}

async fn invoices(db: &DatabaseConnection) -> Vec<(i64, i64)> {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT order_id, cents FROM invoices ORDER BY order_id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

fn values<T: Clone>(messages: &[Message<T>]) -> Vec<T> {
    messages.iter().filter_map(|m| m.value().cloned()).collect()
}

// ---------------------------------------------------------------------------------------
// Unit tests: no broker, no harness.

/// A single-connection SQLite database in memory with the service's tables.
async fn memory_db() -> DatabaseConnection {
    let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
    opts.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(opts).await.unwrap();
    orders::migrate(&db).await.unwrap();
    db
}

#[tokio::test]
async fn place_order_publishes_through_whatever_it_is_given() {
    let db = memory_db().await;
    let events = Recorder::new();
    let id = orders::place_order(&db, &events, &order(1, "ada", 1999))
        .await
        .unwrap();
    let recorded = events.records();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].value, order(1, "ada", 1999));
    assert_eq!(recorded[0].sent, Sent::Published);
    assert_eq!(recorded[0].message_id, id);
    assert_eq!(recorded[0].key.as_deref(), Some(&b"ada"[..]));
    assert_eq!(events.values_sent(Sent::Produced), vec![]);

    // The service's error path: the outbox write fails, the order is not stored.
    events.fail_next(1);
    let err = orders::place_order(&db, &events, &order(2, "bob", 5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fail_next"), "{err}");
    assert_eq!(events.records().len(), 1, "a failed call records nothing");
    let stored = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM orders",
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the failed publish rolled the order back");

    // A recorder is a `Produce` too, with the delivery error a broker would give.
    events.fail_next(1);
    assert!(matches!(
        events.produce(&order(3, "cy", 1)).await,
        Err(Error::Delivery { .. })
    ));
    let report = events.produce(&order(3, "cy", 1)).await.unwrap();
    assert_eq!((report.partition, report.offset), (0, 1));
}

/// A service function that takes `impl Publish<T>` runs in `tokio::spawn`: the futures
/// are `Send` (this does not compile otherwise).
#[tokio::test]
async fn services_taking_the_traits_can_be_spawned() {
    let db = memory_db().await;
    let events = Recorder::new();
    let spawned = tokio::spawn({
        let events = events.clone();
        async move {
            orders::place_order(&db, &events, &order(1, "ada", 10))
                .await
                .map_err(|e| e.to_string())
        }
    });
    spawned.await.unwrap().unwrap();
    assert_eq!(events.values(), vec![order(1, "ada", 10)]);
}

#[tokio::test]
async fn a_handler_is_called_directly_with_a_test_delivery() {
    let db = memory_db().await;
    let txn = db.begin().await.unwrap();
    orders::bill(&txn, &Delivery::for_test(order(1, "ada", 1999)))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(invoices(&db).await, vec![(1, 1999)]);

    // The retry path: the first attempt of `flaky` fails, the second bills.
    let flaky = Delivery::for_test(order(2, "flaky", 5))
        .with_partition(1)
        .with_offset(41);
    let txn = db.begin().await.unwrap();
    assert!(orders::bill(&txn, &flaky).await.is_err());
    orders::bill(&txn, &flaky.clone().with_attempt(2))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(invoices(&db).await, vec![(1, 1999), (2, 5)]);
    assert_eq!(
        (flaky.partition(), flaky.offset(), flaky.attempt()),
        (1, 41, 1)
    );
    assert_eq!(flaky.key(), Some(&b"flaky"[..]));
    assert!(flaky.message_id().is_some());
}

// ---------------------------------------------------------------------------------------
// The harness: the real handler and the real relay.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_service_end_to_end() {
    let harness = billing_harness().await;
    let (db, events) = (harness.database(), harness.orm().topic::<OrderPlaced>());
    for o in [
        order(1, "ada", 1999),
        order(2, "flaky", 500),
        order(3, "grace", -1),
    ] {
        orders::place_order(db, &events, &o).await.unwrap();
    }
    // Rolled back after the publish: never reaches the topic.
    assert!(
        orders::place_order(db, &events, &order(4, "blocked", 1))
            .await
            .is_err()
    );
    harness.wait_idle().await.unwrap();

    let mut published = harness.published_values::<OrderPlaced>().await.unwrap();
    published.sort_by_key(|o| o.order_id);
    assert_eq!(
        published,
        vec![
            order(1, "ada", 1999),
            order(2, "flaky", 500),
            order(3, "grace", -1)
        ]
    );

    // Billed: 1 at once, 2 on its second attempt; 3 failed all three and was dead-lettered.
    let consumed = harness.consumed::<OrderPlaced>().await.unwrap();
    let mut billed: Vec<i64> = values(&consumed).iter().map(|o| o.order_id).collect();
    billed.sort();
    assert_eq!(billed, vec![1, 2]);
    assert!(
        consumed
            .iter()
            .all(|m| m.group.as_deref().is_some_and(|g| g.ends_with("billing")))
    );
    assert_eq!(invoices(db).await, vec![(1, 1999), (2, 500)]);
    let dead = harness.dead_lettered::<OrderPlaced>().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, Payload::Decoded(order(3, "grace", -1)));
    assert_eq!(dead[0].record.info.attempts, Some(3));
    let error = dead[0].record.info.error.as_deref().unwrap_or_default();
    assert!(error.contains("negative total"), "{error}");
    let stats = &harness.handler_stats::<OrderPlaced>().await[0];
    assert_eq!(
        (stats.handled, stats.retries, stats.dead_lettered),
        (2, 3, 1)
    );
    harness.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// One test per fault.

/// Waits until `done` holds, at most 20 s.
async fn eventually<F: AsyncFn() -> bool>(what: &str, done: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next produce requests fail: a direct produce returns the delivery error, and the
/// relay backs its row off and delivers it later, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_fail_next_produces() {
    let harness = billing_harness().await;
    let events = harness.orm().topic::<OrderPlaced>();
    harness.faults().fail_next_produces(1).unwrap();
    let err = events.produce(&order(1, "ada", 10)).await.unwrap_err();
    assert!(matches!(err, Error::Delivery { .. }), "{err}");

    harness.faults().fail_next_produces(2).unwrap();
    for o in [order(2, "ada", 20), order(3, "ada", 30)] {
        orders::place_order(harness.database(), &events, &o)
            .await
            .unwrap();
    }
    harness.wait_idle().await.unwrap();
    let relay = harness.relay_stats().unwrap();
    assert!(relay.failed >= 1, "the relay saw the failures: {relay:?}");
    let published: Vec<i64> = harness
        .published_values::<OrderPlaced>()
        .await
        .unwrap()
        .iter()
        .map(|o| o.order_id)
        .collect();
    assert_eq!(
        published,
        vec![2, 3],
        "once each, in order, the failed produce absent"
    );
    assert_eq!(invoices(harness.database()).await, vec![(2, 20), (3, 30)]);
}

/// A record on the topic twice (same message id): the inbox applies it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_deliver_twice() {
    let harness = billing_harness().await;
    let events = harness.orm().topic::<OrderPlaced>();
    orders::place_order(harness.database(), &events, &order(1, "ada", 10))
        .await
        .unwrap();
    harness.wait_idle().await.unwrap();
    let first = harness.published::<OrderPlaced>().await.unwrap().remove(0);
    harness.faults().deliver_again(&first).await.unwrap();
    harness.wait_idle().await.unwrap();

    let published = harness.published::<OrderPlaced>().await.unwrap();
    assert_eq!(published.len(), 2, "the topic holds it twice");
    assert_eq!(published[0].message_id(), published[1].message_id());
    assert_eq!(
        values(&harness.consumed::<OrderPlaced>().await.unwrap()),
        vec![order(1, "ada", 10)]
    );
    assert_eq!(
        invoices(harness.database()).await,
        vec![(1, 10)],
        "billed once"
    );
    assert_eq!(
        harness.handler_stats::<OrderPlaced>().await[0].duplicates,
        1
    );
}

/// Partition 0 of the orders topic is held: an order published later on partition 1 is
/// billed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_reorder_across_partitions() {
    let harness = billing_harness().await;
    let events = harness.orm().topic::<OrderPlaced>();
    // Which customer goes to which partition (the producer's partitioner decides).
    for (i, c) in ["c0", "c1", "c2", "c3", "c4", "c5"].iter().enumerate() {
        orders::place_order(harness.database(), &events, &order(i as i64, c, 1))
            .await
            .unwrap();
    }
    harness.wait_idle().await.unwrap();
    let seen = harness.published::<OrderPlaced>().await.unwrap();
    let on = |p: i32| {
        seen.iter()
            .find(|m| m.partition == p)
            .and_then(Message::key_str)
            .unwrap()
            .to_string()
    };
    let (early, late) = (on(0), on(1));

    harness.faults().hold_partition::<OrderPlaced>(0);
    orders::place_order(harness.database(), &events, &order(10, &early, 1))
        .await
        .unwrap();
    orders::place_order(harness.database(), &events, &order(11, &late, 1))
        .await
        .unwrap();
    let billed = async || {
        let consumed = harness.consumed::<OrderPlaced>().await.unwrap();
        values(&consumed)
            .iter()
            .map(|o| o.order_id)
            .filter(|id| *id >= 10)
            .collect::<Vec<_>>()
    };
    eventually("order 11", async || billed().await.contains(&11)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        billed().await,
        vec![11],
        "order 10 is held back with its partition"
    );
    harness.faults().release_partition::<OrderPlaced>(0);
    harness.wait_idle().await.unwrap();
    assert_eq!(
        billed().await,
        vec![11, 10],
        "published 10 then 11, billed 11 then 10"
    );
}

/// Every broker request is slower: the messages still arrive, later; a `wait_idle` bound
/// shorter than the delay fails and says what is still busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay() {
    let harness = billing_harness().await;
    harness.wait_idle().await.unwrap();
    let events = harness.orm().topic::<OrderPlaced>();
    harness.faults().delay(Duration::from_millis(700)).unwrap();
    let started = Instant::now();
    orders::place_order(harness.database(), &events, &order(1, "ada", 10))
        .await
        .unwrap();
    let not_idle = harness
        .wait_idle_for(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        not_idle
            .busy
            .iter()
            .any(|b| matches!(b, Busy::Outbox { .. } | Busy::Behind { .. })),
        "{not_idle}"
    );
    let billed = async || !harness.consumed::<OrderPlaced>().await.unwrap().is_empty();
    eventually("the order billed", billed).await;
    let took = started.elapsed();
    // Measured: 2 s without the delay (most of it the 300 ms wait above and the
    // consumer's fetch wait), 9.7 s with it (every request of produce, fetch and commit).
    assert!(
        took >= Duration::from_secs(5),
        "every broker request took 700 ms longer: {took:?}"
    );
    harness.wait_idle().await.unwrap();
    harness.faults().delay(Duration::ZERO).unwrap();
    assert_eq!(invoices(harness.database()).await, vec![(1, 10)]);
}

/// The handler crashes after its transaction committed and before its offset was
/// stored: restarted, it gets the message again, and the inbox skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_crash_between_commit_and_offset_commit() {
    let harness = billing_harness().await;
    let events = harness.orm().topic::<OrderPlaced>();
    harness.faults().crash_after_commit::<OrderPlaced>();
    orders::place_order(harness.database(), &events, &order(1, "ada", 10))
        .await
        .unwrap();
    harness.wait_idle().await.unwrap();
    assert_eq!(harness.restarts::<OrderPlaced>().await, 1);
    let stats = &harness.handler_stats::<OrderPlaced>().await[0];
    assert_eq!(
        (stats.handled, stats.duplicates),
        (0, 1),
        "the restarted handler skipped it: {stats:?}"
    );
    assert_eq!(
        values(&harness.consumed::<OrderPlaced>().await.unwrap()),
        vec![order(1, "ada", 10)]
    );
    assert_eq!(
        invoices(harness.database()).await,
        vec![(1, 10)],
        "billed once"
    );
}

/// Bytes that do not decode: dead-lettered at once, raw; the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_poison_payload() {
    let harness = billing_harness().await;
    harness
        .faults()
        .poison::<OrderPlaced>(Some(b"ada"), b"{not json")
        .await
        .unwrap();
    let events = harness.orm().topic::<OrderPlaced>();
    orders::place_order(harness.database(), &events, &order(1, "ada", 10))
        .await
        .unwrap();
    harness.wait_idle().await.unwrap();

    let dead = harness.dead_lettered::<OrderPlaced>().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(matches!(&dead[0].payload, Payload::Raw { bytes, .. } if bytes == b"{not json"));
    assert_eq!(dead[0].record.info.attempts, Some(0), "never handled");
    let published = harness.published::<OrderPlaced>().await.unwrap();
    assert!(
        published[0].value().is_none(),
        "the poison is on the topic, raw"
    );
    assert_eq!(invoices(harness.database()).await, vec![(1, 10)]);
}

// ---------------------------------------------------------------------------------------
// A topic of several message types with typed routes, and a handler without a database.

mod tracking {
    use kafka_orm::Topic;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Created {
        pub order_id: i64,
        pub customer: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Paid {
        pub order_id: i64,
    }

    /// Two types on one topic, one inbox (per type: each applied once per order).
    #[derive(Debug, Clone, PartialEq, Topic)]
    #[topic(
        name = "order-events",
        key = "order_id",
        outbox(table = "kit_order_events_outbox"),
        inbox(dedup = "order_id", table = "kit_order_events_inbox"),
        group = "tracking",
        dlq
    )]
    pub enum OrderEvent {
        Created(Created),
        Paid(Paid),
    }

    /// A page view: no outbox, no inbox, handled without a database.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
    #[topic(name = "page-views", key = "page", group = "stats")]
    pub struct PageViewed {
        pub page: String,
    }
}

use tracking::{Created, OrderEvent, PageViewed, Paid};

type Seen = Arc<Mutex<Vec<String>>>;

/// The tracking handler: one route per type, each writing what it saw.
fn tracking_handler(
    seen: Seen,
) -> impl Fn(&KafkaOrm) -> HandlerBuilder<OrderEvent, InTransaction<Routes<OrderEvent>>> {
    move |orm| {
        let (created, paid) = (seen.clone(), seen.clone());
        let routes = Routes::new()
            .on::<Created>(async move |_txn, c| {
                created
                    .lock()
                    .unwrap()
                    .push(format!("created {}", c.order_id));
                Ok(())
            })
            .on::<Paid>(async move |_txn, p| {
                paid.lock().unwrap().push(format!("paid {}", p.order_id));
                Ok(())
            });
        orm.topic::<OrderEvent>().handler_with(routes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_routes_on_a_topic_of_several_types() {
    let seen = Seen::default();
    let harness = TestHarness::builder()
        .handler(tracking_handler(seen.clone()))
        .spawn()
        .await
        .unwrap();
    let events = harness.orm().topic::<OrderEvent>();
    let txn = harness.database().begin().await.unwrap();
    let created = OrderEvent::Created(Created {
        order_id: 1,
        customer: "ada".into(),
    });
    events
        .publish_all(&txn, [&created, &OrderEvent::Paid(Paid { order_id: 1 })])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    harness.wait_idle().await.unwrap();

    // The paid event again, and bytes of no type at all: skipped, and dead-lettered.
    let paid = harness.published::<OrderEvent>().await.unwrap().remove(1);
    assert!(matches!(paid.value(), Some(OrderEvent::Paid(_))));
    harness.faults().deliver_again(&paid).await.unwrap();
    harness
        .faults()
        .poison::<OrderEvent>(Some(b"1"), b"\xff")
        .await
        .unwrap();
    harness.wait_idle().await.unwrap();

    assert_eq!(*seen.lock().unwrap(), vec!["created 1", "paid 1"]);
    let consumed = harness.consumed::<OrderEvent>().await.unwrap();
    assert_eq!(
        values(&consumed),
        vec![created, OrderEvent::Paid(Paid { order_id: 1 })]
    );
    assert_eq!(harness.handler_stats::<OrderEvent>().await[0].duplicates, 1);
    assert_eq!(
        harness.dead_lettered::<OrderEvent>().await.unwrap().len(),
        1
    );
}

/// Without a database the handler is at least once: after a crash past its return and
/// before its offset commit, it handles the message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_without_a_database_handles_again_after_a_crash() {
    let seen = Seen::default();
    let factory = {
        let seen = seen.clone();
        move |orm: &KafkaOrm| {
            let seen = seen.clone();
            orm.topic::<PageViewed>()
                .handler_without_database(async move |view| {
                    seen.lock().unwrap().push(view.page.clone());
                    Ok(())
                })
        }
    };
    let harness = TestHarness::builder()
        .handler(factory)
        .spawn()
        .await
        .unwrap();
    harness.faults().crash_after_commit::<PageViewed>();
    let views = harness.orm().topic::<PageViewed>();
    views
        .produce(&PageViewed {
            page: "/cart".into(),
        })
        .await
        .unwrap();
    harness.wait_idle().await.unwrap();

    assert_eq!(harness.restarts::<PageViewed>().await, 1);
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["/cart", "/cart"],
        "handled again"
    );
    let consumed = harness.consumed::<PageViewed>().await.unwrap();
    assert_eq!(consumed.len(), 2);
    assert_eq!(
        (consumed[0].partition, consumed[0].offset),
        (consumed[1].partition, consumed[1].offset)
    );
}

/// A handler that stops (its message failed every attempt, no `dlq`) ends `wait_idle` at
/// once, with the handler's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_reports_a_stopped_handler_at_once() {
    let failing = |orm: &KafkaOrm| {
        orm.topic::<PageViewed>()
            .handler_without_database(async |_view| Err("the stats service is down".into()))
            .attempts(1)
    };
    let harness = TestHarness::builder()
        .handler(failing)
        .spawn()
        .await
        .unwrap();
    let views = harness.orm().topic::<PageViewed>();
    views
        .produce(&PageViewed { page: "/".into() })
        .await
        .unwrap();
    let started = Instant::now();
    let not_idle = harness.wait_idle().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20), "{not_idle}");
    let stopped = not_idle.busy.iter().find_map(|b| match b {
        Busy::Stopped { error, .. } => Some(error.clone()),
        _ => None,
    });
    let error = stopped.unwrap_or_else(|| panic!("no stopped handler in {not_idle}"));
    assert!(error.contains("the stats service is down"), "{error}");
}

/// Context settings of the service apply; the broker, namespace and database stay the
/// harness's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_keeps_its_broker_whatever_the_context_says() {
    let harness = TestHarness::builder()
        .context(|b| b.bootstrap_servers("127.0.0.1:1").produces::<PageViewed>())
        .spawn()
        .await
        .unwrap();
    let views = harness.orm().topic::<PageViewed>();
    views
        .produce(&PageViewed { page: "/".into() })
        .await
        .unwrap();
    let err = harness
        .orm()
        .topic::<OrderPlaced>()
        .produce(&order(1, "ada", 1))
        .await;
    assert!(
        matches!(err, Err(Error::NotProduced { .. })),
        "the declared directions apply"
    );
    assert_eq!(
        harness
            .published_values::<PageViewed>()
            .await
            .unwrap()
            .len(),
        1
    );
}
