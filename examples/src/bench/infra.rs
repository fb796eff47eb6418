//! The real Kafka and PostgreSQL a scenario runs on: a unique namespace and a database of
//! its own per scenario (both removed afterwards), the bench event type, payloads, and
//! small timing helpers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_orm::deps::rdkafka::ClientConfig;
use kafka_orm::deps::rdkafka::admin::{AdminClient, AdminOptions};
use kafka_orm::deps::rdkafka::client::DefaultClientContext;
use kafka_orm::deps::rdkafka::producer::FutureProducer;
use kafka_orm::{KafkaOrm, Topic};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Partitions of the bench topics.
pub const PARTITIONS: i32 = 6;

pub use crate::events::BenchEvent;

/// Microseconds since the Unix epoch (one clock for the whole process).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Where the services are, from `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL`.
#[derive(Debug, Clone)]
pub struct Infra {
    pub bootstrap: String,
    pub database_url: String,
    pub run_id: String,
}

impl Infra {
    pub fn from_env() -> std::result::Result<Self, String> {
        let var = |name: &str| match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(format!(
                "`{name}` is not set: run ./scripts/bench, which starts Kafka and PostgreSQL"
            )),
        };
        let bootstrap = var("KAFKA_BOOTSTRAP_SERVERS")?;
        let database_url = var("DATABASE_URL")?;
        if !database_url.starts_with("postgres") {
            return Err(format!(
                "`DATABASE_URL` must point to PostgreSQL, got `{database_url}`"
            ));
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Infra {
            bootstrap,
            database_url,
            run_id: format!("{:x}{:x}", secs & 0xff_ffff, std::process::id()),
        })
    }

    /// librdkafka settings for a raw client of the same broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap);
        cfg
    }

    /// A raw producer configured as kafka-orm's own (idempotent, acks=all, linger 1 ms),
    /// so that raw baselines and kafka-orm paths differ only in what kafka-orm adds.
    pub fn raw_producer(&self) -> Result<FutureProducer> {
        Ok(self
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "60000")
            .create()?)
    }

    /// A fresh namespace and PostgreSQL database for one scenario, and a context on both.
    pub async fn scenario(&self, scenario: &str) -> Result<Scenario> {
        self.scenario_with(scenario, false).await
    }

    /// [`Infra::scenario`], with sqlx logging every statement (for [`crate::breakdown`]).
    pub async fn scenario_with(&self, scenario: &str, log_statements: bool) -> Result<Scenario> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("bench.{}.{n}.{scenario}.", self.run_id);
        let db_name = format!("bench_{}_{n}_{scenario}", self.run_id)
            .replace(['.', '-'], "_")
            .to_lowercase();
        let admin = Database::connect(&self.database_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{db_name}\""))
            .await?;
        admin.close().await.ok();
        let base = self
            .database_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&self.database_url);
        let mut opts = ConnectOptions::new(format!("{base}/{db_name}"));
        opts.max_connections(16)
            .min_connections(2)
            .sqlx_logging(log_statements);
        let built = async {
            let db = Database::connect(opts).await?;
            let orm = KafkaOrm::builder()
                .bootstrap_servers(&self.bootstrap)
                .namespace(&namespace)
                .connect_timeout(Duration::from_secs(30))
                .database(db.clone())
                .build()
                .await?;
            Result::Ok((db, orm))
        }
        .await;
        let (db, orm) = match built {
            Ok(b) => b,
            Err(e) => {
                // Leave nothing behind: the database was created above.
                self.drop_database(&db_name).await;
                return Err(e);
            }
        };
        Ok(Scenario {
            infra: self.clone(),
            orm,
            db,
            db_name,
            namespace,
        })
    }
}

impl Infra {
    /// Drops a scenario's database (connections forced out). Best effort: a failure is
    /// only printed.
    async fn drop_database(&self, db_name: &str) {
        match Database::connect(&self.database_url).await {
            Ok(admin) => {
                if let Err(e) = admin
                    .execute_unprepared(&format!(
                        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
                    ))
                    .await
                {
                    eprintln!("bench: could not drop database {db_name}: {e}");
                }
                admin.close().await.ok();
            }
            Err(e) => eprintln!("bench: could not drop database {db_name}: {e}"),
        }
    }
}

/// One scenario's context, database and namespace.
pub struct Scenario {
    pub infra: Infra,
    pub orm: KafkaOrm,
    pub db: DatabaseConnection,
    pub db_name: String,
    pub namespace: String,
}

impl Scenario {
    /// The Kafka topic of the bench events in this scenario.
    pub fn topic(&self) -> String {
        self.orm.topic_name(BenchEvent::SPEC)
    }

    /// Drops the scenario's database and deletes its topics, so that runs accumulate
    /// nothing on the shared services. Best effort: a failure is only printed.
    pub async fn cleanup(self) {
        let Scenario {
            infra,
            orm,
            db,
            db_name,
            namespace,
        } = self;
        let topics: Vec<String> = orm.topics().iter().map(|s| orm.topic_name(s)).collect();
        drop(orm);
        db.close().await.ok();
        infra.drop_database(&db_name).await;
        let admin: std::result::Result<AdminClient<DefaultClientContext>, _> =
            infra.client_config().create();
        match admin {
            Ok(admin) => {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                if let Err(e) = admin.delete_topics(&names, &opts).await {
                    eprintln!("bench: could not delete the topics of {namespace}: {e}");
                }
            }
            Err(e) => eprintln!("bench: could not delete the topics of {namespace}: {e}"),
        }
    }
}

/// Percentile `p` (0..=100) of sorted `values`, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p99 and max of `values` (sorted in place).
pub fn summary(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        percentile(values, 50.0),
        percentile(values, 99.0),
        values.last().copied().unwrap_or(f64::NAN),
    )
}
