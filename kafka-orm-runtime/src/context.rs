//! The [`KafkaOrm`] context: one per service, built once at startup, cheap to clone.
//!
//! `build()` reads the topics registered by `#[derive(Topic)]`, rejects contradictions,
//! checks that the broker answers (in bounded time), creates missing topics, and opens the
//! shared idempotent producer. [`KafkaOrm::topic`] then hands out typed per-topic handles.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::consumer::TopicConsumer;
use crate::error::{Error, Result};
use crate::producer::{self, DeliveryReport, Headers};
use crate::registry;
use crate::security::{self, Sasl, Scram, Security, Tls};
use crate::telemetry::metrics as telemetry;
use crate::topic::{Consumable, OutboxTopic, Producible, Topic, TopicSpec};
use crate::{connect, outbox, schema};

/// Environment variable read by [`KafkaOrmBuilder::bootstrap_from_env`].
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// The kafka-orm context: registered topics, the shared producer, the optional database.
///
/// Cloning is cheap (an `Arc`); clone it into tasks rather than building another.
#[derive(Clone)]
pub struct KafkaOrm {
    inner: Arc<Inner>,
}

struct Inner {
    bootstrap: String,
    namespace: String,
    default_group: Option<String>,
    common: BTreeMap<String, String>,
    consumer_overrides: BTreeMap<String, String>,
    producer_config: ClientConfig,
    producer: FutureProducer,
    database: Option<DatabaseConnection>,
    topics: Vec<&'static TopicSpec>,
    send_timeout: Duration,
    consumer_buffer: usize,
    metrics_interval: Duration,
    // Declared last: the embedded broker outlives the clients above.
    _embedded: Option<EmbeddedBroker>,
}

/// How to reach Kafka.
#[derive(Debug, Clone)]
enum BrokerChoice {
    Unset,
    Servers(String),
    FromEnv,
    Embedded,
}

/// Builds a [`KafkaOrm`]; start with [`KafkaOrm::builder`].
///
/// `Debug` output leaves out passwords, secrets and PEM texts.
#[derive(Clone)]
#[must_use = "call `.build().await` to get the context"]
pub struct KafkaOrmBuilder {
    broker: BrokerChoice,
    namespace: String,
    default_group: Option<String>,
    security: Security,
    common: BTreeMap<String, String>,
    producer_overrides: BTreeMap<String, String>,
    consumer_overrides: BTreeMap<String, String>,
    database: Option<DatabaseConnection>,
    create_topics: bool,
    migrate: bool,
    connect_timeout: Duration,
    send_timeout: Duration,
    consumer_buffer: usize,
    metrics_interval: Duration,
}

impl KafkaOrm {
    /// Starts configuring a context.
    pub fn builder() -> KafkaOrmBuilder {
        KafkaOrmBuilder {
            broker: BrokerChoice::Unset,
            namespace: String::new(),
            default_group: None,
            security: Security::default(),
            common: BTreeMap::new(),
            producer_overrides: BTreeMap::new(),
            consumer_overrides: BTreeMap::new(),
            database: None,
            create_topics: true,
            migrate: true,
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            consumer_buffer: 1024,
            metrics_interval: Duration::from_secs(5),
        }
    }

    /// The typed handle of topic `T`: produce to it, consume it.
    pub fn topic<T: Topic>(&self) -> TopicHandle<T> {
        TopicHandle {
            orm: self.clone(),
            group: None,
            _type: PhantomData,
        }
    }

    /// The bootstrap servers in use (the embedded broker's address in embedded mode).
    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.bootstrap
    }

    /// Every topic registered in this binary, as validated at startup.
    pub fn topics(&self) -> &[&'static TopicSpec] {
        &self.inner.topics
    }

    /// The Kafka topic name of `spec` in this context (namespace prefix applied).
    pub fn topic_name(&self, spec: &TopicSpec) -> String {
        self.namespaced(spec.name)
    }

    /// `name` with the context's namespace prefix (topics, groups, transactional ids).
    pub(crate) fn namespaced(&self, name: &str) -> String {
        format!("{}{name}", self.inner.namespace)
    }

    /// The database given to the builder, if any.
    pub fn database(&self) -> Option<&DatabaseConnection> {
        self.inner.database.as_ref()
    }

    /// Waits until every message produced so far is acknowledged, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.producer.flush(timeout))
            .await
            .map_err(|_| Error::Shutdown)?
            .map_err(|e| Error::kafka("flushing the producer", e))
    }

    /// A librdkafka configuration with the context's common settings (bootstrap servers and
    /// everything passed through with [`KafkaOrmBuilder::set`]).
    pub fn client_config(&self) -> ClientConfig {
        client_config(&self.inner.bootstrap, &self.inner.common)
    }

    pub(crate) fn send_timeout(&self) -> Duration {
        self.inner.send_timeout
    }

    /// How often lag and outbox backlog gauges are sampled.
    pub(crate) fn metrics_interval(&self) -> Duration {
        self.inner.metrics_interval
    }

    /// The shared producer (health checks ask the broker through it).
    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.inner.producer
    }

    /// The producer configuration of the context (idempotent, `acks=all`, the user's
    /// producer settings), for components that need a producer of their own.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        self.inner.producer_config.clone()
    }

    /// A consumer configuration for `group`: the context's settings, manual offset storing,
    /// earliest reset, then the consumer overrides.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        self.consumer_config_with(group, &[])
    }

    /// Like [`Self::consumer_config`] with extra defaults, still overridden by the user's
    /// `consumer_set` settings.
    pub(crate) fn consumer_config_with(
        &self,
        group: &str,
        defaults: &[(&str, &str)],
    ) -> ClientConfig {
        let inner = &self.inner;
        let mut cfg = client_config(&inner.bootstrap, &inner.common);
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in defaults {
            cfg.set(*k, *v);
        }
        for (k, v) in &inner.consumer_overrides {
            cfg.set(k, v);
        }
        cfg
    }

    pub(crate) fn group_for(
        &self,
        spec: &'static TopicSpec,
        explicit: Option<&str>,
    ) -> Result<String> {
        let group = explicit
            .or(spec.group)
            .or(self.inner.default_group.as_deref())
            .ok_or(Error::NoGroup { topic: spec.name })?;
        Ok(self.namespaced(group))
    }
}

impl std::fmt::Debug for KafkaOrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOrm")
            .field("bootstrap", &self.inner.bootstrap)
            .field("namespace", &self.inner.namespace)
            .field("topics", &self.inner.topics.len())
            .field("database", &self.inner.database.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for KafkaOrmBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| {
                    let v = if security::is_secret(k) {
                        "<redacted>".into()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        f.debug_struct("KafkaOrmBuilder")
            .field("broker", &self.broker)
            .field("namespace", &self.namespace)
            .field("default_group", &self.default_group)
            .field("security", &self.security)
            .field("common", &shown(&self.common))
            .field("producer_overrides", &shown(&self.producer_overrides))
            .field("consumer_overrides", &shown(&self.consumer_overrides))
            .field("database", &self.database.is_some())
            .field("create_topics", &self.create_topics)
            .field("migrate", &self.migrate)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("consumer_buffer", &self.consumer_buffer)
            .field("metrics_interval", &self.metrics_interval)
            .finish()
    }
}

fn client_config(bootstrap: &str, settings: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in settings {
        cfg.set(k, v);
    }
    cfg
}

impl KafkaOrmBuilder {
    /// Kafka's bootstrap servers, e.g. `"localhost:9092"`.
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.broker = BrokerChoice::Servers(servers.into());
        self
    }

    /// Reads the bootstrap servers from `KAFKA_BOOTSTRAP_SERVERS` at `build()`; building
    /// fails with a clear error when it is not set.
    pub fn bootstrap_from_env(mut self) -> Self {
        self.broker = BrokerChoice::FromEnv;
        self
    }

    /// Runs an in-process broker (librdkafka's mock cluster) inside this process: for
    /// demos and quick tests with zero setup. It is not Kafka: no admin API, no persistence.
    pub fn embedded(mut self) -> Self {
        self.broker = BrokerChoice::Embedded;
        self
    }

    /// Prefixes every topic name and consumer group with `namespace` (e.g. `"staging."`), so
    /// several environments or test runs can share one cluster.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Consumer group for topics that do not set `group = ".."`.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.default_group = Some(group.into());
        self
    }

    /// The database for the outbox and the inbox.
    pub fn database(mut self, db: DatabaseConnection) -> Self {
        self.database = Some(db);
        self
    }

    /// Passes a librdkafka setting to every client (producer, consumers, admin), e.g.
    /// `.set("client.id", "billing")` or `.set("ssl.certificate.location", "client.pem")`.
    ///
    /// For TLS and SASL use the typed [`tls`](Self::tls), [`sasl_plain`](Self::sasl_plain)
    /// and [`sasl_scram`](Self::sasl_scram); a key given here wins over the setting they
    /// derive (the escape hatch, e.g. `.set("security.protocol", "SASL_PLAINTEXT")`).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.common.insert(key.into(), value.into());
        self
    }

    /// Encrypts every connection with TLS and checks the broker's certificate against
    /// `tls`'s certificate authorities and its host name (`security.protocol=SSL`, or
    /// `SASL_SSL` with a `sasl_*` method; `ssl.ca.location` / `ssl.ca.pem`;
    /// `ssl.endpoint.identification.algorithm=https`). Applies to the producer, every
    /// consumer, handler and relay, the admin client and [`KafkaOrm::client_config`].
    ///
    /// * Confluent Cloud, Amazon MSK, Aiven and other clusters with public certificates:
    ///   [`tls_system_roots`](Self::tls_system_roots).
    /// * A self-signed or private CA (Aiven's project `ca.pem`, your own PKI, the test
    ///   broker of `scripts/kafka`): `.tls(Tls::ca_file("ca.pem"))`.
    /// * Client certificates (mutual TLS: Aiven's default, MSK on port 9094): add
    ///   `.set("ssl.certificate.location", "service.cert")` and
    ///   `.set("ssl.key.location", "service.key")`.
    ///
    /// An untrusted certificate, a wrong host name or a port that does not speak TLS makes
    /// `build()` fail at once with [`Error::Tls`].
    ///
    /// ```
    /// use kafka_orm_runtime::{KafkaOrm, Scram, Tls};
    ///
    /// // Aiven (SASL enabled on the service) or any cluster with its own CA:
    /// let builder = KafkaOrm::builder()
    ///     .bootstrap_servers("kafka-1234.aivencloud.com:12345")
    ///     .tls(Tls::ca_file("ca.pem"))
    ///     .sasl_scram(Scram::Sha256, "avnadmin", "password");
    /// ```
    pub fn tls(mut self, tls: Tls) -> Self {
        self.security.tls = Some(tls);
        self
    }

    /// TLS with the operating system's certificate authorities: `.tls(Tls::system_roots())`.
    /// Right for managed clusters (Confluent Cloud, Amazon MSK, Aiven); the machine needs
    /// its CA store (Debian and Ubuntu: the `ca-certificates` package).
    pub fn tls_system_roots(self) -> Self {
        self.tls(Tls::system_roots())
    }

    /// Authenticates with SASL `PLAIN` (`sasl.mechanism=PLAIN`, `sasl.username`,
    /// `sasl.password`), over TLS: with the system's CAs unless [`tls`](Self::tls) says
    /// otherwise (`security.protocol=SASL_SSL`).
    ///
    /// Confluent Cloud: the user name is the cluster API key, the password its secret:
    ///
    /// ```
    /// use kafka_orm_runtime::KafkaOrm;
    ///
    /// # fn f(api_key: String, api_secret: String) {
    /// let builder = KafkaOrm::builder()
    ///     .bootstrap_servers("pkc-12345.eu-west-1.aws.confluent.cloud:9092")
    ///     .tls_system_roots()
    ///     .sasl_plain(api_key, api_secret);
    /// # }
    /// ```
    ///
    /// A wrong user name or password makes `build()` fail at once with
    /// [`Error::Authentication`], naming the address, the mechanism and the user.
    pub fn sasl_plain(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.security.sasl = Some(Sasl {
            mechanism: "PLAIN",
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Authenticates with SASL `SCRAM-SHA-256` or `SCRAM-SHA-512`, over TLS like
    /// [`sasl_plain`](Self::sasl_plain) (the password itself never crosses the network).
    ///
    /// Amazon MSK: SCRAM-SHA-512 on port 9096, credentials from AWS Secrets Manager,
    /// Amazon's public CA. MSK's IAM authentication (port 9098) needs `OAUTHBEARER` with a
    /// token provider, which kafka-orm does not support (see [what is supported](crate::security)):
    ///
    /// ```
    /// use kafka_orm_runtime::{KafkaOrm, Scram};
    ///
    /// let builder = KafkaOrm::builder()
    ///     .bootstrap_servers("b-1.orders.abc123.c2.kafka.eu-west-1.amazonaws.com:9096")
    ///     .tls_system_roots()
    ///     .sasl_scram(Scram::Sha512, "billing", "from-secrets-manager");
    /// ```
    pub fn sasl_scram(
        mut self,
        mechanism: Scram,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.security.sasl = Some(Sasl {
            mechanism: mechanism.mechanism(),
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Passes a librdkafka setting to the producer only, e.g. `.producer_set("linger.ms", "1")`.
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer_overrides.insert(key.into(), value.into());
        self
    }

    /// Passes a librdkafka setting to consumers only, e.g.
    /// `.consumer_set("auto.offset.reset", "latest")`.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer_overrides.insert(key.into(), value.into());
        self
    }

    /// Whether `build()` creates registered topics that are missing (default: yes).
    pub fn create_topics(mut self, create: bool) -> Self {
        self.create_topics = create;
        self
    }

    /// Whether `build()` creates the outbox and inbox tables the registered topics need
    /// (default: yes; idempotent). Turn it off when your own migrations run
    /// [`crate::schema::statements`].
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How long `build()` waits for the broker to answer before failing (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a produce may wait for room in the local queue (default 30 s); delivery
    /// itself is bounded by librdkafka's `message.timeout.ms`.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// How many decoded messages a consumer buffers ahead of the caller (default 1024).
    pub fn consumer_buffer(mut self, messages: usize) -> Self {
        self.consumer_buffer = messages;
        self
    }

    /// How often the sampled metrics are taken (default 5 s): the committed-offset lag of
    /// handlers and streams (on a thread of each consumer's own) and the outbox backlog and
    /// oldest age (by each relay). See [`crate::telemetry`].
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Validates the registry (conflicting settings, and table and column names a
    /// hand-written `impl Topic` may get wrong: [`Error::InvalidIdentifier`], before any
    /// SQL runs), connects, creates missing topics, creates the tables and opens the
    /// producer.
    pub async fn build(self) -> Result<KafkaOrm> {
        let topics = registry::registered_topics();
        registry::validate(&topics)?;

        let (bootstrap, embedded) = match self.broker {
            BrokerChoice::Servers(s) => (s, None),
            BrokerChoice::FromEnv => match std::env::var(BOOTSTRAP_ENV) {
                Ok(s) if !s.trim().is_empty() => (s, None),
                _ => {
                    return Err(Error::Config(format!(
                        "`{BOOTSTRAP_ENV}` is not set; set it to the broker address (host:port)"
                    )));
                }
            },
            BrokerChoice::Embedded => {
                let broker = EmbeddedBroker::start()?;
                (broker.bootstrap.clone(), Some(broker))
            }
            BrokerChoice::Unset => {
                return Err(Error::Config(
                    "no broker: call `.bootstrap_servers(..)`, `.bootstrap_from_env()` or `.embedded()`"
                        .into(),
                ));
            }
        };

        if embedded.is_some() && self.security.is_set() {
            return Err(Error::Config(
                "the embedded broker speaks plaintext only: drop `.tls(..)` / `.sasl_*(..)` or use a real broker".into(),
            ));
        }
        self.security.check().map_err(|reason| Error::Tls {
            bootstrap: bootstrap.clone(),
            reason,
        })?;
        // The typed security settings, then the raw ones (which win): every client the
        // context creates starts from `common`.
        let mut common: BTreeMap<String, String> = self
            .security
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        common.extend(self.common);

        let mut producer_cfg = client_config(&bootstrap, &common);
        producer_cfg
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "60000");
        for (k, v) in &self.producer_overrides {
            producer_cfg.set(k, v);
        }
        let producer_config = producer_cfg.clone();
        let producer: FutureProducer = producer_cfg
            .create()
            .map_err(|e| connect::creation_error(&bootstrap, "creating the producer", e))?;

        connect::wait_for_broker(
            &client_config(&bootstrap, &common),
            &bootstrap,
            self.connect_timeout,
        )
        .await?;

        if self.create_topics {
            match &embedded {
                Some(broker) => broker.create_topics(&topics, &self.namespace)?,
                None => {
                    create_topics(
                        &bootstrap,
                        &common,
                        &topics,
                        &self.namespace,
                        self.connect_timeout,
                    )
                    .await?
                }
            }
        }
        if let (Some(db), true) = (&self.database, self.migrate) {
            schema::migrate(db, &topics).await?;
        }
        tracing::info!(
            bootstrap = %bootstrap,
            topics = ?topics.iter().map(|t| t.name).collect::<Vec<_>>(),
            "kafka-orm context ready"
        );

        Ok(KafkaOrm {
            inner: Arc::new(Inner {
                bootstrap,
                namespace: self.namespace,
                default_group: self.default_group,
                common,
                consumer_overrides: self.consumer_overrides,
                producer_config,
                producer,
                database: self.database,
                topics,
                send_timeout: self.send_timeout,
                consumer_buffer: self.consumer_buffer,
                metrics_interval: self.metrics_interval,
                _embedded: embedded,
            }),
        })
    }
}

/// Every Kafka topic the registered specs need: the topics and their dead-letter topics.
fn wanted_topics(
    specs: &[&'static TopicSpec],
    namespace: &str,
) -> BTreeMap<String, (Option<i32>, Option<i32>)> {
    let mut wanted = BTreeMap::new();
    for spec in specs {
        let shape = (spec.partitions, spec.replication);
        wanted.insert(format!("{namespace}{}", spec.name), shape);
        if spec.retry_topics {
            for tier in 1..=crate::handler::RETRY_TIERS as u8 {
                wanted.insert(
                    crate::handler::retry_topic(&format!("{namespace}{}", spec.name), tier),
                    shape,
                );
            }
        }
        if let Some(dlq) = spec.dlq {
            wanted
                .entry(format!("{namespace}{}", dlq.topic))
                .or_insert(shape);
        }
    }
    wanted
}

/// Creates missing topics through the admin API; existing ones are left as they are (a
/// partition count that differs from the declared one is logged, never changed).
async fn create_topics(
    bootstrap: &str,
    common: &BTreeMap<String, String>,
    specs: &[&'static TopicSpec],
    namespace: &str,
    timeout: Duration,
) -> Result<()> {
    let wanted = wanted_topics(specs, namespace);
    if wanted.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, common)
        .create()
        .map_err(|e| Error::kafka("creating the admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, (partitions, replication))| {
            NewTopic::new(
                name,
                partitions.unwrap_or(-1),
                TopicReplication::Fixed(replication.unwrap_or(-1)),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&new_topics, &opts)
        .await
        .map_err(|e| Error::kafka("creating topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Admin {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    // Compare the live partition counts with what the types declare.
    tokio::task::spawn_blocking(move || {
        for (name, (partitions, _)) in &wanted {
            let Some(declared) = partitions else { continue };
            let Ok(meta) = admin.inner().fetch_metadata(Some(name), timeout) else {
                continue;
            };
            if let Some(t) = meta.topics().first()
                && t.partitions().len() as i32 != *declared
            {
                tracing::warn!(
                    topic = %name,
                    declared,
                    actual = t.partitions().len(),
                    "topic exists with a different partition count; it is left as it is"
                );
            }
        }
    })
    .await
    .map_err(|_| Error::Shutdown)
}

/// The handle of one topic `T` in a context: produce, consume.
///
/// Get it with [`KafkaOrm::topic`]; it is cheap to create and to clone.
pub struct TopicHandle<T> {
    orm: KafkaOrm,
    group: Option<String>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for TopicHandle<T> {
    fn clone(&self) -> Self {
        TopicHandle {
            orm: self.orm.clone(),
            group: self.group.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Topic> TopicHandle<T> {
    /// The topic's settings.
    pub fn spec(&self) -> &'static TopicSpec {
        T::SPEC
    }

    /// The Kafka topic name (with the context's namespace).
    pub fn name(&self) -> String {
        self.orm.topic_name(T::SPEC)
    }

    pub(crate) fn orm(&self) -> &KafkaOrm {
        &self.orm
    }

    pub(crate) fn explicit_group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Uses consumer group `group` for this handle instead of the topic's or context's.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

impl<T: Topic> TopicHandle<T> {
    /// Produces `value` (key from the key fields, message-id header stamped) and waits for
    /// the broker's acknowledgement.
    pub async fn produce(&self, value: &T) -> Result<DeliveryReport>
    where
        T: Producible,
    {
        self.produce_with_headers(value, Headers::new()).await
    }

    /// Produces `value` with extra headers.
    pub async fn produce_with_headers(&self, value: &T, headers: Headers) -> Result<DeliveryReport>
    where
        T: Producible,
    {
        let msg = producer::encode(value, headers)?;
        let inner = &self.orm.inner;
        producer::send(&inner.producer, &self.name(), msg, inner.send_timeout).await
    }

    /// Produces many values concurrently (batched by librdkafka) and waits for every
    /// acknowledgement; reports come back in input order. Encoding errors fail the whole
    /// call before anything is sent.
    pub async fn produce_all<'a, I>(&self, values: I) -> Result<Vec<DeliveryReport>>
    where
        T: Producible,
        I: IntoIterator<Item = &'a T>,
    {
        let msgs = values
            .into_iter()
            .map(|v| producer::encode(v, Headers::new()))
            .collect::<Result<Vec<_>>>()?;
        let inner = &self.orm.inner;
        producer::send_all(&inner.producer, &self.name(), msgs, inner.send_timeout).await
    }
}

impl<T: Topic> TopicHandle<T> {
    /// Writes `value` into the topic's outbox inside `txn`: it reaches Kafka after `txn`
    /// commits (delivered by [`KafkaOrm::outbox_relay`]) and never if it rolls back.
    /// Returns the message id the relayed message will carry.
    pub async fn publish(&self, txn: &DatabaseTransaction, value: &T) -> Result<String>
    where
        T: OutboxTopic,
    {
        self.publish_with_headers(txn, value, Headers::new()).await
    }

    /// [`publish`](Self::publish) with extra headers (e.g. `traceparent`), relayed as given.
    pub async fn publish_with_headers(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
        headers: Headers,
    ) -> Result<String>
    where
        T: OutboxTopic,
    {
        let mut ids = outbox::publish(txn, &[value], headers).await?;
        telemetry::published(&self.name(), outbox::table_of(T::SPEC), 1);
        Ok(ids.remove(0))
    }

    /// Writes many values into the outbox inside `txn` with one insert statement; per key
    /// they are delivered in the order given. Returns the message ids in input order.
    pub async fn publish_all<'a, I>(
        &self,
        txn: &DatabaseTransaction,
        values: I,
    ) -> Result<Vec<String>>
    where
        T: OutboxTopic,
        I: IntoIterator<Item = &'a T>,
    {
        let values: Vec<&T> = values.into_iter().collect();
        let ids = outbox::publish(txn, &values, Headers::new()).await?;
        telemetry::published(&self.name(), outbox::table_of(T::SPEC), ids.len() as u64);
        Ok(ids)
    }
}

impl<T: Topic> TopicHandle<T> {
    /// Subscribes to the topic in its consumer group and returns a stream of deliveries.
    ///
    /// Nothing is committed automatically: call [`TopicConsumer::commit`]. A new group
    /// starts at the earliest offset unless `auto.offset.reset` is set otherwise.
    pub async fn consume(&self) -> Result<TopicConsumer<T>>
    where
        T: Consumable,
    {
        let inner = &self.orm.inner;
        let group = self.orm.group_for(T::SPEC, self.group.as_deref())?;
        let topic = self.name();
        let consumer: StreamConsumer = self
            .orm
            .consumer_config(&group)
            .create()
            .map_err(|e| Error::kafka(format!("creating a consumer for `{topic}`"), e))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| Error::kafka(format!("subscribing to `{topic}`"), e))?;
        Ok(TopicConsumer::start(
            consumer,
            topic,
            group,
            inner.consumer_buffer,
            inner.metrics_interval,
        ))
    }
}

/// librdkafka's in-process mock cluster, owned by a dedicated thread: the cluster handle
/// is not `Send`, so it never leaves that thread; dropping this stops it.
struct EmbeddedBroker {
    bootstrap: String,
    commands: std::sync::mpsc::Sender<EmbeddedCommand>,
}

type EmbeddedCommand = (String, i32, std::sync::mpsc::Sender<Result<()>>);

impl EmbeddedBroker {
    fn start() -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (commands, command_rx) = std::sync::mpsc::channel::<EmbeddedCommand>();
        std::thread::Builder::new()
            .name("kafka-orm-embedded-broker".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::kafka("starting the embedded broker", e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve topic creations until the context is dropped.
                for (topic, partitions, reply) in command_rx {
                    let result = cluster
                        .create_topic(&topic, partitions, 1)
                        .map_err(|e| Error::kafka(format!("creating topic `{topic}`"), e));
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the embedded broker thread: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| Error::Config("the embedded broker thread died".into()))??;
        Ok(EmbeddedBroker {
            bootstrap,
            commands,
        })
    }

    fn create_topics(&self, specs: &[&'static TopicSpec], namespace: &str) -> Result<()> {
        for (name, (partitions, _)) in wanted_topics(specs, namespace) {
            let (tx, rx) = std::sync::mpsc::channel();
            self.commands
                .send((name, partitions.unwrap_or(1), tx))
                .map_err(|_| Error::Config("the embedded broker stopped".into()))?;
            rx.recv()
                .map_err(|_| Error::Config("the embedded broker stopped".into()))??;
        }
        Ok(())
    }
}
