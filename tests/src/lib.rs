//! Shared helpers for the integration tests: where the real broker and database are,
//! and a unique namespace per test so tests run in parallel and can be re-run.
//!
//! `./scripts/test` starts real Kafka and PostgreSQL and exports `KAFKA_BOOTSTRAP_SERVERS`,
//! `DATABASE_URL` and `KAFKA_ORM_REQUIRE_INFRA=1`. Under plain `cargo test` without them,
//! tests that need the real services say so and return early; with
//! `KAFKA_ORM_REQUIRE_INFRA=1` a missing service fails the test instead.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kafka_orm::{KafkaOrm, KafkaOrmBuilder};

/// The real broker's address, or `None` (after saying why) when it is not configured.
pub fn kafka_bootstrap() -> Option<String> {
    service("KAFKA_BOOTSTRAP_SERVERS")
}

/// The real PostgreSQL server's URL, or `None` (after saying why) when it is not configured.
pub fn postgres_url() -> Option<String> {
    service("DATABASE_URL").filter(|u| u.starts_with("postgres"))
}

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if std::env::var("KAFKA_ORM_REQUIRE_INFRA").as_deref() == Ok("1") => {
            panic!(
                "`{var}` is not set but KAFKA_ORM_REQUIRE_INFRA=1: run the tests with ./scripts/test"
            )
        }
        _ => {
            eprintln!("skipped: `{var}` is not set (run ./scripts/test to start real services)");
            None
        }
    }
}

/// A namespace (topic and group prefix) unique to this process and call.
pub fn unique_namespace(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t.{test}.{}-{nanos:x}-{n}.", std::process::id())
}

/// A builder pointed at the real broker under a unique namespace.
pub fn real_kafka(test: &str) -> Option<KafkaOrmBuilder> {
    let bootstrap = kafka_bootstrap()?;
    Some(
        KafkaOrm::builder()
            .bootstrap_servers(bootstrap)
            .namespace(unique_namespace(test))
            .connect_timeout(Duration::from_secs(30)),
    )
}

/// Awaits `fut` for at most `secs` seconds, panicking with `what` on timeout, so a broken
/// test fails instead of hanging the suite.
pub async fn within<F: std::future::Future>(secs: u64, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s: {what}"))
}

/// A fresh PostgreSQL database of its own (created on the server of `DATABASE_URL`), so
/// tests never see each other's tables; `None` when PostgreSQL is not configured.
pub async fn fresh_postgres(test: &str) -> Option<sea_orm::DatabaseConnection> {
    use sea_orm::ConnectionTrait;
    let url = postgres_url()?;
    let admin = sea_orm::Database::connect(&url)
        .await
        .expect("connecting to PostgreSQL");
    let name = unique_namespace(test)
        .trim_end_matches('.')
        .replace(['.', '-'], "_")
        .to_lowercase();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("creating the test database");
    admin.close().await.ok();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
    let mut opts = sea_orm::ConnectOptions::new(format!("{base}/{name}"));
    opts.max_connections(16).sqlx_logging(false);
    Some(
        sea_orm::Database::connect(opts)
            .await
            .expect("connecting to the test database"),
    )
}

/// A fresh SQLite database in a file of its own under the target directory.
pub async fn fresh_sqlite(test: &str) -> sea_orm::DatabaseConnection {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-sqlite");
    std::fs::create_dir_all(&dir).expect("creating target/test-sqlite");
    let file = dir.join(format!("{}db", unique_namespace(test)));
    let mut opts = sea_orm::ConnectOptions::new(format!("sqlite://{}?mode=rwc", file.display()));
    opts.sqlx_logging(false);
    sea_orm::Database::connect(opts)
        .await
        .expect("opening the SQLite file")
}
