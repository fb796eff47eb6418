//! Observability: kafka-orm's metrics at `/metrics` (Prometheus text, through
//! `metrics-exporter-prometheus`) and its health at `/healthz` (live) and `/readyz`
//! (ready), served by a small axum server while a relay and a handler work.
//!
//! Zero setup by default, like the demo: the embedded broker and an SQLite file under
//! `target/`. `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` point it at real services,
//! `OBSERVABILITY_ADDR` (default `127.0.0.1:9464`) is where it listens, and
//! `OBSERVABILITY_SECONDS` stops it after that long, after asking its own endpoints once:
//! it exits with an error unless `/healthz` and `/readyz` answered 200 and `/metrics` counted
//! relayed messages (`scripts/examples` runs it so; the default runs until Ctrl-C).
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin observability
//! curl -s localhost:9464/metrics | grep kafka_orm_relay_delivered
//! curl -si localhost:9464/readyz    # 200 "ready", or 503 with the reasons
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kafka_orm::{Health, KafkaOrm, OutboxRelay, RunningHandler, Topic};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{Database, TransactionTrait};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The event: published through the outbox, billed once through the inbox.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "observability.payments",
    key = "account",
    outbox(table = "observability_payments_outbox"),
    inbox(dedup = "payment_id", table = "observability_payments_inbox"),
    partitions = 3,
    group = "observability-ledger",
    dlq
)]
pub struct PaymentMade {
    /// Unique per payment.
    pub payment_id: i64,
    /// Payments of one account stay in order.
    pub account: String,
    /// The amount.
    pub cents: i64,
}

/// What the endpoints read.
struct App {
    orm: KafkaOrm,
    relay: OutboxRelay,
    handler: RunningHandler,
    prometheus: PrometheusHandle,
}

impl App {
    /// The context's, the relay's and the handler's health together.
    async fn health(&self) -> Health {
        let (orm, relay, handler) = tokio::join!(
            self.orm.health(),
            self.relay.health(),
            self.handler.health()
        );
        orm.merge(relay).merge(handler)
    }
}

/// 200 with the state when `up`, 503 with the state and reasons otherwise.
fn answer(up: bool, health: &Health) -> (StatusCode, String) {
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{health}\n"))
}

async fn metrics(State(app): State<Arc<App>>) -> String {
    app.prometheus.render()
}

async fn healthz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    let health = app.health().await;
    answer(health.is_live(), &health)
}

async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    let health = app.health().await;
    answer(health.is_ready(), &health)
}

/// The Prometheus recorder, installed before anything of kafka-orm starts, with the
/// duration buckets OpenTelemetry recommends (seconds).
fn install_prometheus() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    const SECONDS: [f64; 14] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &SECONDS)?
        .install_recorder()?;
    // Histograms are drained into their buckets by upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn start(prometheus: PrometheusHandle) -> Result<App, Box<dyn std::error::Error>> {
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://target/kafka-orm-observability.db?mode=rwc".to_string());
    let db = Database::connect(&db_url).await?;
    let builder = KafkaOrm::builder()
        .database(db)
        .metrics_interval(Duration::from_secs(1));
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => builder.bootstrap_servers(servers),
        _ => builder.embedded(),
    };
    let orm = builder.build().await?;
    let relay = orm.outbox_relay().spawn().await?;
    let handler = orm
        .topic::<PaymentMade>()
        .handler(async |_txn, payment| {
            tracing::debug!(payment = payment.payment_id, "booked");
            Ok(())
        })
        .lag_threshold(1_000)
        .spawn()
        .await?;
    Ok(App {
        orm,
        relay,
        handler,
        prometheus,
    })
}

/// Publishes a payment every 100 ms, each in its own transaction.
async fn publish_forever(orm: KafkaOrm) {
    let Some(db) = orm.database().cloned() else {
        return;
    };
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for n in 0.. {
        let payment = PaymentMade {
            payment_id: first + n,
            account: format!("acct-{}", n % 7),
            cents: 100 + n % 900,
        };
        let published = async {
            let txn = db.begin().await?;
            orm.topic::<PaymentMade>().publish(&txn, &payment).await?;
            txn.commit().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        if let Err(e) = published.await {
            eprintln!("observability: publishing failed: {e}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET path` on our own server: the status line and the body's first lines.
async fn ask(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(format!("{status}\n{body}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = install_prometheus()?;
    let app = Arc::new(start(prometheus).await?);
    let publisher = tokio::spawn(publish_forever(app.orm.clone()));

    let addr = std::env::var("OBSERVABILITY_ADDR").unwrap_or_else(|_| "127.0.0.1:9464".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&app));
    println!("observability: http://{addr}/metrics, /healthz and /readyz");
    let seconds = std::env::var("OBSERVABILITY_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let problems = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let found = Arc::clone(&problems);
    let stop = async move {
        match seconds {
            Some(s) => {
                tokio::time::sleep(Duration::from_secs(s)).await;
                let checked = self_check(addr).await;
                found.lock().unwrap().extend(checked);
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    axum::serve(listener, routes)
        .with_graceful_shutdown(stop)
        .await?;

    publisher.abort();
    let _ = publisher.await;
    let Ok(app) = Arc::try_unwrap(app) else {
        return Err("the server still holds the app".into());
    };
    let stats = app.handler.shutdown().await?;
    app.relay.shutdown().await?;
    println!(
        "observability: stopped; the handler applied {} payments",
        stats.handled
    );
    let problems = std::mem::take(&mut *problems.lock().unwrap());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "observability: its own endpoints said: {}",
            problems.join("; ")
        )
        .into())
    }
}

/// Once the metrics count a relayed message (or after 30 s), asks `/healthz`, `/readyz` and
/// `/metrics`, prints what they said, and returns what was wrong: a probe not answering 200, or no relayed message counted in the metrics.
async fn self_check(addr: std::net::SocketAddr) -> Vec<String> {
    // The first relayed message may take a few seconds on a cold start: wait up to 30 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match ask(addr, "/metrics").await {
            Ok(text) if relayed_some(&text) => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let mut problems = Vec::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let text = match ask(addr, path).await {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("GET {path}: {e}"));
                continue;
            }
        };
        let wanted = |l: &&str| path != "/metrics" || l.contains("kafka_orm_relay_delivered");
        let shown: Vec<&str> = text.lines().filter(wanted).take(4).collect();
        println!("GET {path}: {}", shown.join("\n  "));
        if !text
            .lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "))
        {
            problems.push(format!("GET {path}: {}", shown.join(" ")));
        }
        if path == "/metrics" && !relayed_some(&text) {
            problems.push("GET /metrics: kafka_orm_relay_delivered is missing or 0".into());
        }
    }
    problems
}

/// Whether a `kafka_orm_relay_delivered...` sample in Prometheus text is above zero.
fn relayed_some(metrics: &str) -> bool {
    metrics
        .lines()
        .filter(|l| l.starts_with("kafka_orm_relay_delivered"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .any(|v| v > 0.0)
}
