//! Health of the context, a relay and a handler while the broker and the database go away
//! and come back: a real Kafka broker and a real PostgreSQL server of this test's own
//! ([`PrivateService`]: `scripts/kafka` and `scripts/postgres` on free ports of their own,
//! stopped and started by the test); the suite's shared broker and database are never stopped.

use std::future::Future;
use std::time::Duration;

use kafka_orm::deps::sea_orm::{self, DatabaseConnection};
use kafka_orm::{Health, HealthState, KafkaOrm, Reason, Topic};
use kafka_orm_tests::{
    Gate, PrivateService, kafka_bootstrap, postgres_url, publish_committed, unique_namespace,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "health.orders",
    key = "customer",
    outbox,
    inbox(dedup = "id"),
    partitions = 2,
    group = "health-billing",
    retry(attempts = 1, backoff = "10ms", max_backoff = "10ms")
)]
struct Order {
    id: i64,
    customer: String,
    poison: bool,
}

fn order(id: i64, poison: bool) -> Order {
    Order {
        id,
        customer: format!("c{}", id % 4),
        poison,
    }
}

/// Calls `check` until its health satisfies `ok`, at most `secs`; returns that health.
async fn wait_for<F, Fut>(
    secs: u64,
    what: &str,
    mut check: F,
    ok: impl Fn(&Health) -> bool,
) -> Health
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Health>,
{
    let mut last = None;
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let health = check().await;
            if ok(&health) {
                return health;
            }
            last = Some(health);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out after {secs}s: {what}; last: {last:?}"))
}

/// Waits until `check` names every reason of `wanted`; then it must be live, not ready.
async fn unready<F, Fut>(what: &str, check: F, wanted: &[&dyn Fn(&Reason) -> bool]) -> Health
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Health>,
{
    let all = |h: &Health| wanted.iter().all(|w| has(h, w));
    let health = wait_for(20, what, check, all).await;
    assert_eq!(health.state, HealthState::Live, "{what}: {health}");
    assert!(health.is_live() && !health.is_ready(), "{what}: {health}");
    health
}

fn has(health: &Health, what: impl Fn(&Reason) -> bool) -> bool {
    health.reasons.iter().any(what)
}

fn broker_down(r: &Reason) -> bool {
    matches!(r, Reason::BrokerUnreachable { .. })
}

fn database_down(r: &Reason) -> bool {
    matches!(r, Reason::DatabaseUnreachable { .. })
}

fn ready(h: &Health) -> bool {
    h.state == HealthState::Ready
}

/// Handlers wait while this is shut.
static GATE: Gate = Gate::open();

async fn connect(url: &str) -> DatabaseConnection {
    let mut opts = sea_orm::ConnectOptions::new(url);
    opts.max_connections(16)
        .acquire_timeout(Duration::from_secs(2))
        .sqlx_logging(false);
    sea_orm::Database::connect(opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_broker_and_the_database_going_away_and_coming_back() {
    // The shared services are not used, but the test needs the Kafka and PostgreSQL installs
    // that ./scripts/test provides; without them, it skips (or fails) like every such test.
    if kafka_bootstrap().is_none() || postgres_url().is_none() {
        return;
    }
    let (kafka, pg) = tokio::join!(PrivateService::kafka(), PrivateService::postgres());
    let db = connect(&pg.url()).await;
    let orm = KafkaOrm::builder()
        .bootstrap_servers(kafka.bootstrap())
        .namespace(unique_namespace("health"))
        .connect_timeout(Duration::from_secs(30))
        .metrics_interval(Duration::from_millis(200))
        .database(db.clone())
        .build()
        .await
        .unwrap();
    let relay = orm
        .outbox_relay()
        .leases(Duration::from_secs(3), Duration::from_millis(200))
        .poll_interval(Duration::from_millis(100))
        .health_max_age(Duration::from_secs(1))
        .spawn()
        .await
        .unwrap();
    let handler = orm
        .topic::<Order>()
        .handler_boxed(|_txn, msg| {
            Box::pin(async move {
                GATE.pass().await;
                if msg.poison {
                    return Err("poison".into());
                }
                Ok(())
            })
        })
        .lag_threshold(5)
        .spawn()
        .await
        .unwrap();
    let all_ready = || async {
        orm.health()
            .await
            .merge(relay.health().await)
            .merge(handler.health().await)
    };
    wait_for(30, "everything ready", all_ready, ready).await;

    // Lag above the threshold: degraded, still ready.
    GATE.set_open(false);
    let orders: Vec<Order> = (0..20).map(|i| order(i, false)).collect();
    orm.topic::<Order>().produce_all(&orders).await.unwrap();
    let lagging = wait_for(
        20,
        "degraded by lag",
        || handler.health(),
        |h| h.state == HealthState::Degraded,
    )
    .await;
    assert!(lagging.is_ready() && lagging.is_live(), "{lagging}");
    assert!(
        has(
            &lagging,
            |r| matches!(r, Reason::LagAboveThreshold { lag, threshold: 5, .. } if *lag > 5)
        ),
        "{lagging}"
    );
    GATE.set_open(true);
    wait_for(30, "the lag drained", || handler.health(), ready).await;

    // The broker goes away: live, not ready, with the reason; the outbox falls behind.
    kafka.stop().await;
    publish_committed(&orm, &db, &[order(100, false)]).await;
    let behind = |r: &Reason| matches!(r, Reason::OutboxBehind { .. });
    unready("no broker", || orm.health(), &[&broker_down]).await;
    unready(
        "relay: no broker",
        || relay.health(),
        &[&broker_down, &behind],
    )
    .await;
    unready("handler: no broker", || handler.health(), &[&broker_down]).await;
    kafka.start().await;
    wait_for(60, "ready once the broker is back", all_ready, ready).await;

    // The database goes away: live, not ready; the relay's leases stop renewing.
    pg.stop().await;
    let no_lease = |r: &Reason| matches!(r, Reason::LeaseNotRenewed { .. });
    unready("no database", || orm.health(), &[&database_down]).await;
    unready(
        "relay: no database",
        || relay.health(),
        &[&database_down, &no_lease],
    )
    .await;
    unready(
        "handler: no database",
        || handler.health(),
        &[&database_down],
    )
    .await;
    pg.start().await;
    let back = wait_for(60, "ready once the database is back", all_ready, ready).await;
    assert!(back.reasons.is_empty(), "{back}");

    // A handler stopped by a message it cannot handle (no dlq): down, with the error.
    orm.topic::<Order>()
        .produce(&order(200, true))
        .await
        .unwrap();
    let failed = wait_for(
        30,
        "the handler failed",
        || handler.health(),
        |h| h.state == HealthState::Down,
    )
    .await;
    assert!(!failed.is_live() && !failed.is_ready(), "{failed}");
    assert!(
        has(
            &failed,
            |r| matches!(r, Reason::HandlerFailed { error, .. } if error.contains("poison"))
        ),
        "{failed}"
    );
    assert!(ready(&orm.health().await), "the context itself is fine");
    assert!(
        handler.shutdown().await.is_err(),
        "it stopped on the poison message"
    );
    relay.shutdown().await.unwrap();
}
