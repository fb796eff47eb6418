//! Shared helpers for the integration tests: where the real broker and database are,
//! and a unique namespace per test so tests run in parallel and can be re-run.
//!
//! `./scripts/test` starts real Kafka and PostgreSQL and exports `KAFKA_BOOTSTRAP_SERVERS`
//! and `DATABASE_URL`. A test that needs a service which is not configured FAILS, naming
//! `./scripts/test`: a suite run without its services must not look green. To skip such
//! tests on purpose (e.g. a quick `cargo test` of the macros), set
//! `KAFKA_ORM_SKIP_INFRA=1`: each skipped test then says so on stderr, uncaptured.
//! (`KAFKA_ORM_REQUIRE_INFRA=1`, which scripts/test sets, overrides the opt-out.)

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kafka_orm::{KafkaOrm, KafkaOrmBuilder};

/// The opt-out: with `KAFKA_ORM_SKIP_INFRA=1`, tests whose services are not configured
/// skip (loudly) instead of failing.
pub const SKIP_INFRA_ENV: &str = "KAFKA_ORM_SKIP_INFRA";

/// The real broker's address. Without `KAFKA_BOOTSTRAP_SERVERS` the test fails, or, with
/// [`SKIP_INFRA_ENV`] set, `None` after saying loudly that the test is skipped.
pub fn kafka_bootstrap() -> Option<String> {
    service("KAFKA_BOOTSTRAP_SERVERS", |_| None)
}

/// The real PostgreSQL server's URL (`DATABASE_URL`, which must be a `postgres://` URL);
/// missing, the test fails, or skips loudly with [`SKIP_INFRA_ENV`] set.
pub fn postgres_url() -> Option<String> {
    service("DATABASE_URL", |url| {
        (!url.starts_with("postgres"))
            .then(|| format!("`DATABASE_URL` is `{url}`, not a PostgreSQL URL (postgres://..)"))
    })
}

/// Whether the opt-out is in force (and not overridden by `KAFKA_ORM_REQUIRE_INFRA=1`).
fn skip_allowed() -> bool {
    let on = |var: &str| {
        std::env::var(var)
            .is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0" && v.trim() != "false")
    };
    on(SKIP_INFRA_ENV) && !on("KAFKA_ORM_REQUIRE_INFRA")
}

fn service(var: &str, invalid: impl Fn(&str) -> Option<String>) -> Option<String> {
    let problem = match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => match invalid(&v) {
            None => return Some(v),
            Some(problem) => problem,
        },
        _ => format!("`{var}` is not set"),
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if skip_allowed() {
        // Straight to the process's stderr: libtest captures `eprintln!` of passing tests,
        // and a skip must be visible.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: {problem}, and {SKIP_INFRA_ENV}=1 is set; run ./scripts/test to run it against real Kafka and PostgreSQL"
        );
        return None;
    }
    panic!(
        "{test} needs real Kafka and PostgreSQL, but {problem}: run the tests with ./scripts/test \
         (it starts both and exports KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL), or export them \
         from `scripts/kafka env` and `scripts/postgres env`; set {SKIP_INFRA_ENV}=1 to skip \
         such tests on purpose"
    )
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

/// librdkafka's in-process mock cluster (one broker, which a test may stop with
/// `broker_down(1)`: the shared real broker never is), with `topics` (name, partitions)
/// created under a unique namespace, and a builder pointed at it that leaves topic creation
/// to the mock.
pub fn mock_kafka(
    test: &str,
    topics: &[(&str, i32)],
) -> (
    kafka_orm::deps::rdkafka::mocking::MockCluster<
        'static,
        kafka_orm::deps::rdkafka::producer::DefaultProducerContext,
    >,
    KafkaOrmBuilder,
) {
    let mock = kafka_orm::deps::rdkafka::mocking::MockCluster::new(1).expect("a mock cluster");
    let namespace = unique_namespace(test);
    for (topic, partitions) in topics {
        mock.create_topic(&format!("{namespace}{topic}"), *partitions, 1)
            .expect("creating a mock topic");
    }
    let builder = KafkaOrm::builder()
        .bootstrap_servers(mock.bootstrap_servers())
        .namespace(namespace)
        .create_topics(false);
    (mock, builder)
}

/// Publishes `events` through the outbox in one committed transaction.
pub async fn publish_committed<T: kafka_orm::OutboxTopic>(
    orm: &KafkaOrm,
    db: &sea_orm::DatabaseConnection,
    events: &[T],
) {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await.expect("beginning a transaction");
    orm.topic::<T>()
        .publish_all(&txn, events)
        .await
        .expect("publishing");
    txn.commit().await.expect("committing");
}

/// A gate handlers wait at while a test looks at what is pending (open to start with).
pub struct Gate(std::sync::atomic::AtomicBool);

impl Gate {
    /// An open gate (a `static`).
    pub const fn open() -> Self {
        Gate(std::sync::atomic::AtomicBool::new(true))
    }

    /// Shuts (`false`) or opens (`true`) it.
    pub fn set_open(&self, open: bool) {
        self.0.store(open, Ordering::SeqCst);
    }

    /// Returns once the gate is open.
    pub async fn pass(&self) {
        while !self.0.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Creates topic `name` with `partitions` and the topic configs `config` (say
/// `[("max.message.bytes", "20000")]`) before kafka-orm would create it with defaults.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    use kafka_orm::deps::rdkafka::ClientConfig;
    use kafka_orm::deps::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use kafka_orm::deps::rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("an admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let created = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("creating the topic");
    for result in created {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Awaits `fut` for at most `secs` seconds, panicking with `what` on timeout, so a broken
/// test fails instead of hanging the suite.
pub async fn within<F: std::future::Future>(secs: u64, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s: {what}"))
}

/// A fresh PostgreSQL database of its own (created on the server of `DATABASE_URL`), so
/// tests never see each other's tables; `None` only when PostgreSQL is not configured and
/// [`SKIP_INFRA_ENV`] is set (see [`postgres_url`]).
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

/// A Kafka broker (`scripts/kafka`, one plaintext node) or PostgreSQL server
/// (`scripts/postgres`) of one test's own, on free ports and in a state dir under
/// `target/private-services/`, so a test can stop and start it: the suite's shared services
/// (and the chaos cluster's ports) are never touched. Stopped and deleted on drop.
pub struct PrivateService {
    script: &'static str,
    port: u16,
    state: std::path::PathBuf,
}

impl PrivateService {
    /// A Kafka broker on a free port, its KRaft controller on the port after it; started.
    pub async fn kafka() -> Self {
        Self::start_new("kafka", free_ports(2)).await
    }

    /// A PostgreSQL server on a free port; started.
    pub async fn postgres() -> Self {
        Self::start_new("postgres", free_ports(1)).await
    }

    async fn start_new(script: &'static str, port: u16) -> Self {
        let state = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/private-services/{script}-{port}"));
        let service = PrivateService {
            script,
            port,
            state,
        };
        service.start().await;
        service
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's bootstrap address (`127.0.0.1:port`).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The PostgreSQL server's URL (`scripts/postgres`'s user and database).
    pub fn url(&self) -> String {
        format!(
            "postgres://kafka_orm:kafka_orm@127.0.0.1:{}/kafka_orm",
            self.port
        )
    }

    /// Starts it (and waits until it answers); panics with the script's output on failure.
    pub async fn start(&self) {
        self.run("start").await;
        if self.script == "kafka" {
            // `scripts/kafka start` uses a broker someone else started on the port: this one
            // must be ours, or stopping it would not stop the broker the test talks to.
            self.run("pid").await;
        }
    }

    /// Stops it (and waits until it is gone).
    pub async fn stop(&self) {
        self.run("stop").await;
    }

    fn command(&self, what: &str) -> std::process::Command {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(self.script);
        let mut cmd = std::process::Command::new(script);
        cmd.arg(what)
            .env("KAFKA_ORM_STATE", &self.state)
            .env("PG_PORT", self.port.to_string())
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_NODES", "1")
            .env("KAFKA_SASL_SSL", "0")
            .env_remove("KAFKA_CONTROLLER_PORT")
            .stdin(std::process::Stdio::null());
        cmd
    }

    async fn run(&self, what: &str) {
        let mut cmd = self.command(what);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("the script's thread")
            .unwrap_or_else(|e| panic!("running scripts/{}: {e}", self.script));
        assert!(
            out.status.success(),
            "scripts/{} {what} (port {}) failed: {}{}",
            self.script,
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let _ = self.command("reset").output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// `n` consecutive free ports on 127.0.0.1 (the first returned), outside the shared
/// services' ports (PostgreSQL 35432, Kafka 39092.., the chaos cluster's 39192..).
fn free_ports(n: u16) -> u16 {
    let reserved = |p: u16| (35400..35600).contains(&p) || (39000..39300).contains(&p);
    for _ in 0..200 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let Some(last) = first.checked_add(n - 1) else {
            continue;
        };
        let free = (first..=last).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free && !(first..=last).any(reserved) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1")
}
