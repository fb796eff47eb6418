//! What the CLI tests share: the service they run the binary against (its topics, its
//! database, its topics file) and running the binary.
#![allow(dead_code)] // each test file uses its part

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kafka_orm::deps::sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use kafka_orm::{HandlerError, KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "cli.orders",
    key = "customer",
    outbox,
    group = "cli-orders",
    retry(attempts = 1, backoff = "10ms", max_backoff = "10ms"),
    dlq,
    partitions = 2
)]
pub struct Order {
    pub id: i64,
    pub customer: String,
    pub fail: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "cli.pings", key = "id", group = "cli-pings", dlq)]
pub struct Ping {
    pub id: i64,
}

/// The real broker and PostgreSQL (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`): missing,
/// the test fails, or with `KAFKA_ORM_SKIP_INFRA=1` skips loudly (the suite's rule, see
/// `kafka_orm_tests`).
pub fn services() -> Option<(String, String)> {
    Some((
        kafka_orm_tests::kafka_bootstrap()?,
        kafka_orm_tests::postgres_url()?,
    ))
}

pub fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{test}_{}_{nanos:x}", std::process::id())
}

/// A fresh PostgreSQL database: its URL and a connection.
pub async fn fresh_database(url: &str, test: &str) -> (String, DatabaseConnection) {
    let name = unique(test);
    let admin = Database::connect(url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.ok();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    let url = format!("{base}/{name}");
    let db = Database::connect(&url).await.unwrap();
    (url, db)
}

/// A file under the target directory.
pub fn temp_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(unique(name))
}

/// Runs the binary with the service's connection settings and `args`.
pub fn kafka_orm(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-orm"));
    cmd.env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_ORM_TOPICS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("running kafka-orm")
}

pub fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn failed(out: &Output, code: i32, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(says),
        "wanted {says:?} in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// The service: orders 1..=4 through the outbox (2 and 4 fail in the handler), pings,
/// its topics file; the outbox then holds two more orders, one of them failing.
pub struct Service {
    pub orm: KafkaOrm,
    pub db: DatabaseConnection,
    pub env: Vec<(&'static str, String)>,
    pub namespace: String,
}

pub async fn service_with_dead_letters(test: &str) -> Option<Service> {
    let (bootstrap, url) = services()?;
    let (url, db) = fresh_database(&url, test).await;
    let namespace = format!("{}.", unique(test));
    let orm = KafkaOrm::builder()
        .bootstrap_servers(bootstrap.clone())
        .namespace(namespace.clone())
        .database(db.clone())
        .build()
        .await
        .unwrap();
    let orders: Vec<Order> = (1..=4)
        .map(|id| Order {
            id,
            customer: format!("c-{id}"),
            fail: id % 2 == 0,
        })
        .collect();
    publish(&orm, &db, &orders).await;
    let relay = orm.outbox_relay().spawn().await.unwrap();
    let handler = orm
        .topic::<Order>()
        .handler_boxed(|_txn, m| {
            Box::pin(async move {
                match m.fail {
                    true => Err(HandlerError::from(format!("refused: order {}", m.id))),
                    false => Ok(()),
                }
            })
        })
        .spawn()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handler.stats().dead_lettered < 2 || handler.stats().handled < 2 {
        assert!(Instant::now() < deadline, "the handler dead-letters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handler.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
    let topics = temp_file("topics.json");
    std::fs::write(&topics, orm.registry_json()).unwrap();
    let env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("DATABASE_URL", url),
        ("KAFKA_ORM_TOPICS", topics.display().to_string()),
    ];
    Some(Service {
        orm,
        db,
        env,
        namespace,
    })
}

pub async fn publish(orm: &KafkaOrm, db: &DatabaseConnection, orders: &[Order]) {
    let txn = db.begin().await.unwrap();
    orm.topic::<Order>()
        .publish_all(&txn, orders)
        .await
        .unwrap();
    txn.commit().await.unwrap();
}

impl Service {
    pub fn run(&self, args: &[&str]) -> Output {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        kafka_orm(&env, args)
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(kafka_orm::deps::sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.to_string(),
            ));
        row.await.unwrap().unwrap().try_get_by_index(0).unwrap()
    }
}
