//! Every way to write a handler applies messages in its transaction, on the real broker and
//! PostgreSQL, all run by one host: an `async fn` item, an async closure using what it
//! captured (no clone written), a struct implementing `Handler` with `async fn` (called by
//! reference: its state need not be `Clone`), a batch handler as an async closure, and the
//! boxed closure of earlier versions.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_orm::deps::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
};
use kafka_orm::{Delivery, Handler, HandlerError, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "forms.orders",
    key = "customer",
    inbox(dedup = "id"),
    partitions = 2,
    group = "forms"
)]
struct Order {
    id: i64,
    customer: String,
}

/// Records that `form` applied order `id`, in the handler's transaction.
async fn applied(txn: &DatabaseTransaction, form: &str, id: i64) -> Result<(), HandlerError> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO applied (form, id) VALUES ($1, $2)",
        [form.into(), id.into()],
    ))
    .await?;
    Ok(())
}

/// An `async fn` item as the handler.
async fn bill(txn: &DatabaseTransaction, order: &Delivery<Order>) -> Result<(), HandlerError> {
    applied(txn, "async fn", order.id).await
}

/// State that is not `Clone`: a struct handler is called by reference.
struct Ledger {
    seen: Mutex<Vec<i64>>,
}

impl Handler<Order> for Ledger {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        order: &Delivery<Order>,
    ) -> Result<(), HandlerError> {
        applied(txn, "impl Handler", order.id).await?;
        self.seen.lock().unwrap().push(order.id);
        Ok(())
    }
}

async fn count(db: &DatabaseConnection, form: &str) -> i64 {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(DISTINCT id) FROM applied WHERE form = $1",
        [form.into()],
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index(0)
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handler_form_applies_in_its_transaction() {
    let (Some(builder), Some(db)) = (real_kafka("forms"), fresh_postgres("forms").await) else {
        return;
    };
    db.execute_unprepared("CREATE TABLE applied (form TEXT NOT NULL, id BIGINT NOT NULL)")
        .await
        .unwrap();
    let orm = builder.database(db.clone()).build().await.unwrap();
    let closure_calls = Arc::new(AtomicU64::new(0));
    let calls = Arc::clone(&closure_calls);
    let orders = || orm.topic::<Order>();
    let host = orm
        .host()
        .handler(orders().group("forms-fn").handler(bill))
        .handler(
            orders()
                .group("forms-closure")
                .handler(async move |txn, order| {
                    calls.fetch_add(1, Ordering::SeqCst); // captured, used as it is
                    applied(txn, "async closure", order.id).await
                }),
        )
        .handler(orders().group("forms-impl").handler_with(Ledger {
            seen: Mutex::default(),
        }))
        .handler(orders().group("forms-batch").batch_handler(
            50,
            Duration::from_millis(20),
            async |txn, batch| {
                for order in batch {
                    applied(txn, "batch closure", order.id).await?;
                }
                Ok(())
            },
        ))
        .handler(
            orders()
                .group("forms-boxed")
                .handler_boxed(|txn, order| Box::pin(applied(txn, "boxed", order.id))),
        )
        .spawn()
        .await
        .unwrap();
    let all: Vec<Order> = (1..=20)
        .map(|id| Order {
            id,
            customer: format!("c{}", id % 3),
        })
        .collect();
    orm.topic::<Order>().produce_all(&all).await.unwrap();
    let forms = [
        "async fn",
        "async closure",
        "impl Handler",
        "batch closure",
        "boxed",
    ];
    within(90, "every form applying all 20 orders", async {
        for form in forms {
            while count(&db, form).await < 20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    let stats = host.shutdown().await.unwrap();
    assert!(stats.iter().all(|s| s.handled == 20), "{stats:?}");
    assert_eq!(closure_calls.load(Ordering::SeqCst), 20);
}
