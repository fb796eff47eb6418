//! A relay's health for the two reasons only a relay gives: [`Reason::NoBuckets`] (a leased
//! relay holds no bucket of an outbox table: live, not ready) and [`Reason::NotListening`]
//! (its PostgreSQL `LISTEN` connection is down), against the suite's real Kafka broker and a
//! private PostgreSQL database of each test (only that database is ever made unreachable).
//!
//! A `LISTEN` session ended alone never shows: sqlx's listener reconnects it through the
//! relay's pool at once. `NotListening` shows while that reconnection fails, which here is
//! while the database refuses connections (so the relay's database is unreachable too).

use std::time::{Duration, Instant};

use kafka_orm::deps::sea_orm::{self, ConnectionTrait, DatabaseConnection};
use kafka_orm::{Health, HealthState, KafkaOrm, OutboxRelay, Reason, Topic};
use kafka_orm_tests::{fresh_postgres, postgres_url, real_kafka};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "relayhealth.orders",
    key = "customer",
    outbox,
    partitions = 2,
    group = "relay-health"
)]
struct Order {
    id: i64,
    customer: String,
}

/// The lease table's clock, as the relay's own statements read it.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Calls `relay.health()` until it satisfies `ok`, for at most about `secs`; returns that
/// health, or panics with the last one.
async fn wait_for(
    secs: u64,
    what: &str,
    relay: &OutboxRelay,
    ok: impl Fn(&Health) -> bool,
) -> Health {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let health = relay.health().await;
        if ok(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s: {what}; last: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(health: &Health, what: impl Fn(&Reason) -> bool) -> bool {
    health.reasons.iter().any(what)
}

fn pg(sql: &str) -> sea_orm::Statement {
    sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql)
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn orm_on(test: &str, db: &DatabaseConnection) -> Option<KafkaOrm> {
    let builder = real_kafka(test)?;
    Some(builder.database(db.clone()).build().await.unwrap())
}

/// The outbox table of the lease rows (this file registers one outbox type).
async fn outbox_table(db: &DatabaseConnection) -> String {
    let sql = "SELECT DISTINCT outbox FROM kafka_orm_relay_leases";
    let rows = db.query_all_raw(pg(sql)).await.unwrap();
    assert_eq!(rows.len(), 1, "one outbox table");
    rows[0].try_get_by_index::<String>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_buckets_is_live_not_ready_until_the_buckets_come_free() {
    let Some(db) = fresh_postgres("relay-health-buckets").await else {
        return;
    };
    let Some(orm) = orm_on("relay-health-buckets", &db).await else {
        return;
    };
    let table = outbox_table(&db).await;
    // Another instance holds every bucket for ten minutes and heartbeats as a member.
    exec(
        &db,
        &format!(
            "UPDATE kafka_orm_relay_leases SET owner = 'elsewhere', epoch = epoch + 1, \
             expires_at = {NOW_MS} + 600000"
        ),
    )
    .await;
    exec(
        &db,
        &format!(
            "INSERT INTO kafka_orm_relay_members (outbox, owner, expires_at) \
             VALUES ('{table}', 'elsewhere', {NOW_MS} + 600000)"
        ),
    )
    .await;
    let relay = orm
        .outbox_relay()
        .instance_id("newcomer")
        .poll_interval(Duration::from_millis(100))
        .leases(Duration::from_secs(3), Duration::from_millis(100))
        .spawn()
        .await
        .unwrap();
    // Many renewal rounds: none can take a bucket.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = relay.health().await;
    assert_eq!(health.state, HealthState::Live, "{health}");
    assert!(health.is_live() && !health.is_ready(), "{health}");
    assert!(
        has(
            &health,
            |r| matches!(r, Reason::NoBuckets { table: t } if *t == table)
        ),
        "NoBuckets names `{table}`: {health}"
    );
    assert_eq!(relay.stats().owned_buckets, 0);

    // The other instance goes away, releasing its buckets: the relay takes them.
    exec(
        &db,
        "UPDATE kafka_orm_relay_leases SET owner = NULL, expires_at = 0",
    )
    .await;
    exec(
        &db,
        "DELETE FROM kafka_orm_relay_members WHERE owner = 'elsewhere'",
    )
    .await;
    let health = wait_for(20, "ready once the buckets are free", &relay, |h| {
        h.state == HealthState::Ready
    })
    .await;
    assert!(health.reasons.is_empty(), "{health}");
    assert_eq!(relay.stats().owned_buckets, 64);
    relay.shutdown().await.unwrap();
}

/// The private database's name and a connection of its own that gives up acquiring after
/// two seconds (the relay's `LISTEN` reconnects through this pool).
async fn private_pool(db: &DatabaseConnection) -> (String, DatabaseConnection) {
    let row = db.query_one_raw(pg("SELECT current_database()")).await;
    let row = row.unwrap();
    let name: String = row.unwrap().try_get_by_index(0).unwrap();
    let url = postgres_url().unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
    let mut opts = sea_orm::ConnectOptions::new(format!("{base}/{name}"));
    opts.max_connections(16)
        .acquire_timeout(Duration::from_secs(2))
        .sqlx_logging(false);
    (name, sea_orm::Database::connect(opts).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_listen_connection_is_down_says_not_listening_until_it_is_back() {
    let Some(fresh) = fresh_postgres("relay-health-listen").await else {
        return;
    };
    let (name, db) = private_pool(&fresh).await;
    fresh.close().await.ok();
    let Some(orm) = orm_on("relay-health-listen", &db).await else {
        return;
    };
    let relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(100), Duration::from_millis(300))
        .leases(Duration::from_secs(3), Duration::from_millis(200))
        .spawn()
        .await
        .unwrap();
    wait_for(20, "ready and listening", &relay, |h| {
        h.state == HealthState::Ready
    })
    .await;

    // The server side of this database only: refuse new connections, end every session
    // (the `LISTEN` one too): the listener cannot reconnect, so the relay only polls.
    let admin = sea_orm::Database::connect(postgres_url().unwrap())
        .await
        .unwrap();
    exec(
        &admin,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
    )
    .await;
    exec(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    )
    .await;
    let not_listening = |r: &Reason| matches!(r, Reason::NotListening);
    let health = wait_for(20, "NotListening", &relay, |h| has(h, not_listening)).await;
    // The relay's pool is the one that cannot reconnect: the database is unreachable too.
    assert_eq!(health.state, HealthState::Live, "live, not ready: {health}");
    assert!(
        has(&health, |r| matches!(r, Reason::DatabaseUnreachable { .. })),
        "{health}"
    );
    assert!(
        !has(&health, |r| matches!(r, Reason::RelayStopped)),
        "{health}"
    );

    exec(
        &admin,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
    )
    .await;
    let health = wait_for(20, "listening again", &relay, |h| {
        h.state == HealthState::Ready
    })
    .await;
    assert!(!has(&health, not_listening), "{health}");
    relay.shutdown().await.unwrap();
    admin.close().await.ok();
}
