//! Services that start at the same moment on one PostgreSQL database all get their tables:
//! `schema::migrate` (what `build()` runs) serializes table creation with an advisory lock,
//! where PostgreSQL's `CREATE TABLE IF NOT EXISTS` alone lets two sessions collide.

use kafka_orm::{Topic, schema};
use kafka_orm_tests::{fresh_postgres, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "startup.orders",
    key = "customer_id",
    outbox,
    inbox(dedup = "order_id")
)]
struct Order {
    customer_id: String,
    order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "startup.payments", key = "order_id", outbox, inbox)]
struct Payment {
    order_id: String,
}

/// Sixteen sessions run the whole migration at once, several rounds on fresh databases:
/// every one succeeds and the tables exist once. (Without the lock, most rounds end with
/// `duplicate key value violates unique constraint "pg_type_typname_nsp_index"`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_services_starting_at_once_all_migrate() {
    for round in 0..3 {
        let Some(db) = fresh_postgres(&format!("concurrent_startup_{round}")).await else {
            return;
        };
        let url = db_url(&db).await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                // A connection of its own per "service", as separate processes have.
                let mut opt = kafka_orm::deps::sea_orm::ConnectOptions::new(url);
                opt.max_connections(1).sqlx_logging(false);
                let db = kafka_orm::deps::sea_orm::Database::connect(opt).await?;
                schema::migrate(&db, &[Order::SPEC, Payment::SPEC]).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }));
        }
        for task in tasks {
            within(60, "a concurrent migrate", task)
                .await
                .expect("the task panicked")
                .unwrap_or_else(|e| panic!("round {round}: a concurrent migrate failed: {e}"));
        }
        schema::migrate(&db, &[Order::SPEC, Payment::SPEC])
            .await
            .expect("migrating again");
    }
}

/// The URL of `db`'s own database (fresh_postgres made it on `DATABASE_URL`'s server).
async fn db_url(db: &kafka_orm::deps::sea_orm::DatabaseConnection) -> String {
    use kafka_orm::deps::sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_database()",
        ))
        .await
        .expect("asking the database name")
        .expect("a row");
    let name: String = row.try_get_by_index(0).expect("the name");
    let base = kafka_orm_tests::postgres_url().expect("DATABASE_URL");
    let (server, _) = base.rsplit_once('/').expect("a database URL with a path");
    format!("{server}/{name}")
}
