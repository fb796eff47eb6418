//! What every chaos process shares: where the services are, the run's namespace, the
//! database tables, a seeded random generator, logging, signals.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_orm::{KafkaOrm, Topic};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement, Value};

use crate::events::ChaosEvent;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Header the relay stamps on each record: `"<bucket>:<epoch>"` of the lease it held.
pub const RELAY_EPOCH_HEADER: &str = "kafka-orm-relay-epoch";

/// Key prefixes of the poison messages (never business keys).
pub const POISON_UNDECODABLE: &str = "poison-undecodable-";
pub const POISON_REJECTED: &str = "poison-rejected-";
pub const POISON_OVERSIZE_OUTBOX: &str = "poison-oversize-outbox-";
pub const POISON_OVERSIZE_DIRECT: &str = "poison-oversize-direct-";

/// The topic's `max.message.bytes` (set when the run creates it) and the size of an
/// oversize payload: above the topic's limit, below librdkafka's own `message.max.bytes`
/// (1,000,000), so that the broker is the one that refuses it.
pub const TOPIC_MAX_MESSAGE_BYTES: usize = 262_144;
pub const OVERSIZE_BYTES: usize = 400_000;

/// Milliseconds since the Unix epoch (one clock for every process of the run).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A line on stderr with the wall time and the process's role.
pub fn say(who: &str, what: impl AsRef<str>) {
    let ms = now_ms();
    let secs = (ms / 1000) % 86_400;
    eprintln!(
        "[{who} {:02}:{:02}:{:02}.{:03}] {}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000,
        what.as_ref()
    );
}

/// Where the services are and which run this is, from the environment the driver sets:
/// `KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL` (the run's own database), `CHAOS_NAMESPACE`,
/// `CHAOS_DIR` (default `<workspace>/target/chaos`).
#[derive(Debug, Clone)]
pub struct Env {
    pub bootstrap: String,
    pub database_url: String,
    pub namespace: String,
    pub dir: PathBuf,
}

impl Env {
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(format!(
                "`{name}` is not set: run ./scripts/chaos, which sets it"
            )),
        };
        Ok(Env {
            bootstrap: var("KAFKA_BOOTSTRAP_SERVERS")?,
            database_url: var("DATABASE_URL")?,
            namespace: std::env::var("CHAOS_NAMESPACE").unwrap_or_else(|_| "chaos.".into()),
            dir: std::env::var("CHAOS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| default_dir()),
        })
    }

    /// The run's Kafka topic (namespaced).
    pub fn topic(&self) -> String {
        format!("{}{}", self.namespace, ChaosEvent::SPEC.name)
    }

    /// Its dead-letter topic.
    pub fn dlq(&self) -> String {
        let dlq = ChaosEvent::SPEC
            .dlq
            .map(|d| d.topic)
            .unwrap_or("chaos-events.dlq");
        format!("{}{dlq}", self.namespace)
    }
}

/// `<workspace>/target/chaos`.
pub fn default_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(|p| p.join("target/chaos"))
        .unwrap_or_else(|| PathBuf::from("target/chaos"))
}

/// The outbox table of the chaos topic.
pub fn outbox_table() -> &'static str {
    ChaosEvent::SPEC
        .outbox
        .map(|o| o.table)
        .unwrap_or("chaos_event_outbox")
}

/// Connects to PostgreSQL, retrying for up to `patience` (the server may be restarting).
pub async fn connect(
    url: &str,
    max_connections: u32,
    patience: Duration,
) -> Result<DatabaseConnection> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let mut opts = ConnectOptions::new(url.to_string());
        opts.max_connections(max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        match Database::connect(opts).await {
            Ok(db) => return Ok(db),
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("connecting to {url}: {e}").into()),
        }
    }
}

/// The tables of the run (besides kafka-orm's outbox and inbox): what was committed, what
/// was applied (no unique constraint: an application twice shows as two rows), the
/// producer's business rows, key → relay bucket, and the poison sent.
pub const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS chaos_accounts (key TEXT PRIMARY KEY, events BIGINT NOT NULL, last_seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chaos_committed (key TEXT NOT NULL, seq BIGINT NOT NULL, committed_at BIGINT NOT NULL, \
     PRIMARY KEY (key, seq))",
    "CREATE TABLE IF NOT EXISTS chaos_keys (key TEXT PRIMARY KEY, bucket INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chaos_applied (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, seq BIGINT NOT NULL, \
     consumer TEXT NOT NULL, applied_at BIGINT NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL, \
     kafka_ts BIGINT NOT NULL, attempt INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS chaos_applied_at ON chaos_applied (applied_at)",
    "CREATE INDEX IF NOT EXISTS chaos_applied_ts ON chaos_applied (kafka_ts)",
    "CREATE TABLE IF NOT EXISTS chaos_process_log (id BIGSERIAL PRIMARY KEY, process TEXT NOT NULL, event TEXT NOT NULL, \
     at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chaos_poison (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, \
     sent_at BIGINT NOT NULL, expect_dlq BOOLEAN NOT NULL, outcome TEXT NOT NULL)",
];

pub async fn create_tables(db: &DatabaseConnection) -> Result<()> {
    for sql in TABLES {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Records that process `who` reached `event` (e.g. `started`: its relay or handler runs),
/// so the driver can tell a process's start-up time from the time the runtime needed.
pub async fn mark(db: &DatabaseConnection, who: &str, event: &str) {
    let _ = db
        .execute_raw(stmt(
            "INSERT INTO chaos_process_log (process, event, at) VALUES ($1, $2, $3)",
            vec![who.into(), event.into(), now_ms().into()],
        ))
        .await;
}

pub fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

/// `k=v,k=v` from an environment variable (librdkafka settings passed through).
pub fn settings_from_env(var: &str) -> Vec<(String, String)> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The run's kafka-orm context: namespace, database, and the librdkafka settings of
/// `CHAOS_PRODUCER_SET` / `CHAOS_CONSUMER_SET` (`k=v,k=v`).
pub async fn build_orm(env: &Env, db: &DatabaseConnection) -> Result<KafkaOrm> {
    let mut builder = KafkaOrm::builder()
        .bootstrap_servers(env.bootstrap.clone())
        .namespace(env.namespace.clone())
        .database(db.clone())
        .connect_timeout(Duration::from_secs(30));
    for (k, v) in settings_from_env("CHAOS_PRODUCER_SET") {
        builder = builder.producer_set(k, v);
    }
    for (k, v) in settings_from_env("CHAOS_CONSUMER_SET") {
        builder = builder.consumer_set(k, v);
    }
    // The services may be restarting (a chaos run starts processes during faults).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        match builder.clone().build().await {
            Ok(orm) => return Ok(orm),
            Err(e) if std::time::Instant::now() < deadline => {
                say(
                    "chaos",
                    format!("building the context failed ({e}); retrying"),
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The relay's bucket of a key: 64-bit FNV-1a of the key bytes, then a 0xff separator
/// round, modulo 64, as kafka-orm computes it. Checked against the outbox at run start
/// (the driver only uses it to pick burst keys in a given relay's buckets).
pub fn bucket_of(key: &str) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= 0xff;
    h = h.wrapping_mul(0x0100_0000_01b3);
    (h % 64) as i32
}

/// A small seeded generator (SplitMix64): the schedule and every random choice of a run
/// follow from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Prints kafka-orm's warnings and errors (`tracing` events at WARN and above) on stderr,
/// so that each process's log shows what the runtime complained about.
pub mod logging {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    struct Stderr {
        who: String,
    }

    static NEXT: AtomicU64 = AtomicU64::new(1);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.0, " {value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                let _ = write!(self.0, " {value}");
            } else {
                let _ = write!(self.0, " {}={value}", field.name());
            }
        }
    }

    impl Subscriber for Stderr {
        fn enabled(&self, meta: &Metadata<'_>) -> bool {
            meta.is_event() && *meta.level() <= Level::WARN
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(NEXT.fetch_add(1, Ordering::Relaxed))
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut f = Fields(String::new());
            event.record(&mut f);
            super::say(
                &self.who,
                format!(
                    "{} {}:{}",
                    event.metadata().level(),
                    event.metadata().target(),
                    f.0
                ),
            );
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Installs the subscriber for this process (once, at start-up).
    pub fn install(who: &str) {
        let _ = tracing::subscriber::set_global_default(Stderr {
            who: who.to_string(),
        });
    }
}
