//! [`KafkaOrmBuilder`]: how a service describes its broker, database and settings, and
//! `build()`, which checks them and opens the context.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use sea_orm::DatabaseConnection;

mod security_section;

use super::admin::create_topics;
use super::direction::Directions;
use super::embedded::EmbeddedBroker;
use super::{BOOTSTRAP_ENV, Inner, KafkaOrm, Tuning, client_config};
use crate::error::{Error, Result};
use crate::middleware::{ConsumeLayer, ProduceLayer};
use crate::security::{self, Security};
use crate::{connect, defaults, registry, schema};

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
    directions: Option<Directions>,
    create_topics: bool,
    migrate: bool,
    connect_timeout: Duration,
    tuning: Tuning,
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
            directions: None,
            create_topics: true,
            migrate: true,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            tuning: Tuning::default(),
        }
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
            .field("directions", &self.directions)
            .field("create_topics", &self.create_topics)
            .field("migrate", &self.migrate)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.tuning.send_timeout)
            .field("consumer_buffer", &self.tuning.consumer_buffer)
            .field("metrics_interval", &self.tuning.metrics_interval)
            .field("shutdown_timeout", &self.tuning.shutdown_timeout)
            .field("consume_layers", &self.tuning.consume_layers.len())
            .field("produce_layers", &self.tuning.produce_layers.len())
            .finish()
    }
}

impl KafkaOrmBuilder {
    /// Declares that this service produces `T` (directly, through the outbox, or as a
    /// pipeline's output), so that one events crate serves producer-only and consumer-only
    /// services: the types say neither `produce_only` nor `consume_only`, and each service
    /// says what it does with them.
    ///
    /// ```text
    /// let orm = KafkaOrm::builder().bootstrap_from_env()
    ///     .produces::<OrderEvent>()        // this service sends orders …
    ///     .consumes::<PaymentEvent>()      // … and reads payments, nothing else
    ///     .build().await?;
    /// ```
    ///
    /// A service that declares nothing may use every type both ways, as far as the type
    /// allows. Once it declares one direction of one type, the two lists are complete:
    ///
    /// | what | checked | how |
    /// |---|---|---|
    /// | a `produce_only` / `consume_only` type used the other way | compile time | the type lacks [`Consumable`] / [`Producible`] |
    /// | `.produces::<T>()` of a `consume_only` type, `.consumes::<T>()` of a `produce_only` one | compile time | the same bounds |
    /// | `.consumes::<T>()` of a topic with an inbox, without `.database(..)` | `build()` | [`Error::NoDatabase`] |
    /// | producing or publishing a type the service does not declare it produces | the call | [`Error::NotProduced`] |
    /// | consuming a type it does not declare it consumes (a stream, a handler, a pipeline) | the call (`consume()`, `spawn()`, `run_until`) | [`Error::NotConsumed`] |
    ///
    /// [`Producible`]: crate::Producible
    /// [`Consumable`]: crate::Consumable
    pub fn produces<T: crate::Producible>(mut self) -> Self {
        self.directions.get_or_insert_default().produce::<T>();
        self
    }

    /// Declares that this service consumes `T` (a stream, a handler or a pipeline); see
    /// [`produces`](Self::produces). `build()` checks that a consumed topic with an inbox
    /// has the database ([`Error::NoDatabase`]). Needs [`Consumable`](crate::Consumable).
    pub fn consumes<T: crate::Consumable>(mut self) -> Self {
        self.directions.get_or_insert_default().consume::<T>();
        self
    }

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

    /// The consumer group of topics that set no `group = ".."` and of handles without
    /// [`TopicHandle::group`](crate::TopicHandle::group) (prefixed with the namespace).
    pub fn group(mut self, group: impl Into<String>) -> Self {
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

    /// How long `build()` waits for the broker to answer before failing (default
    /// [`defaults::CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a produce may wait for room in the local queue (default
    /// [`defaults::SEND_TIMEOUT`]); delivery
    /// itself is bounded by librdkafka's `message.timeout.ms`.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.send_timeout = timeout;
        self
    }

    /// How many decoded messages a consumer buffers ahead of the caller (default
    /// [`defaults::CONSUMER_BUFFER`]).
    pub fn consumer_buffer(mut self, messages: usize) -> Self {
        self.tuning.consumer_buffer = messages;
        self
    }

    /// How often the sampled metrics are taken (default
    /// [`defaults::METRICS_INTERVAL`]): the committed-offset lag of
    /// handlers and streams (on a thread of each consumer's own) and the outbox backlog and
    /// oldest age (by each relay). See [`crate::telemetry`].
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.tuning.metrics_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long a `shutdown()` waits for work in flight (default
    /// [`defaults::SHUTDOWN_TIMEOUT`]): of stream consumers, and of handlers, relays and
    /// pipelines unless their builder's `shutdown_timeout` says otherwise.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.shutdown_timeout = timeout;
        self
    }

    /// Adds a consume layer around every handler of this context (see
    /// [`crate::middleware`]): outside the handlers' own
    /// [`layer`](crate::handler::HandlerBuilder::layer)s, inside the ones added before it,
    /// and inside the built-in span and metrics.
    ///
    /// ```text
    /// let orm = KafkaOrm::builder().bootstrap_from_env()
    ///     .consume_layer(Timed::default())
    ///     .build().await?;
    /// ```
    pub fn consume_layer(mut self, layer: impl ConsumeLayer + 'static) -> Self {
        self.tuning.consume_layers.push(layer);
        self
    }

    /// Adds a produce layer around every `produce` and `publish` of this context (see
    /// [`crate::middleware`]), inside the ones added before it. A publish runs it in the
    /// caller's transaction, so the headers it adds are stored in the outbox row; the relay
    /// runs none.
    ///
    /// ```text
    /// let orm = KafkaOrm::builder().bootstrap_from_env()
    ///     .produce_layer(Tenant::from_env())
    ///     .build().await?;
    /// ```
    pub fn produce_layer(mut self, layer: impl ProduceLayer + 'static) -> Self {
        self.tuning.produce_layers.push(layer);
        self
    }

    /// Validates the registry (two types on one topic, and table and column names a
    /// hand-written `impl Topic` may get wrong: [`Error::InvalidIdentifier`], before any
    /// SQL runs) and the declared directions ([`produces`](Self::produces)), connects,
    /// creates missing topics, creates the tables and opens the producer.
    pub async fn build(self) -> Result<KafkaOrm> {
        let topics = registry::registered_topics();
        registry::validate(&topics)?;
        if let Some(directions) = &self.directions {
            directions.check_at_build(self.database.is_some())?;
        }
        let (bootstrap, embedded) = self.broker.clone().resolve()?;
        let common = self.common_settings(&bootstrap, embedded.is_some())?;
        let producer_config = producer_config(&bootstrap, &common, &self.producer_overrides);
        let producer: FutureProducer = producer_config
            .create()
            .map_err(|e| connect::creation_error(&bootstrap, "creating the producer", e))?;

        let client = client_config(&bootstrap, &common);
        connect::wait_for_broker(&client, &bootstrap, self.connect_timeout).await?;
        if self.create_topics {
            match &embedded {
                Some(broker) => broker.create_topics(&topics, &self.namespace)?,
                None => {
                    create_topics(&client, &topics, &self.namespace, self.connect_timeout).await?
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
                directions: self.directions,
                tuning: self.tuning,
                _embedded: embedded,
            }),
        })
    }

    /// The settings every client starts from: the typed security settings, then the raw
    /// ones given with [`Self::set`] (which win).
    fn common_settings(&self, bootstrap: &str, embedded: bool) -> Result<BTreeMap<String, String>> {
        if embedded && self.security.is_set() {
            return Err(Error::Config(
                "the embedded broker speaks plaintext only: drop `.tls(..)` / `.sasl_*(..)` or use a real broker".into(),
            ));
        }
        self.security.check().map_err(|reason| Error::Tls {
            bootstrap: bootstrap.to_string(),
            reason,
        })?;
        let mut common: BTreeMap<String, String> = self
            .security
            .settings()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        common.extend(self.common.clone());
        Ok(common)
    }
}

/// The shared producer's configuration: idempotent, `acks=all`, then the user's producer
/// settings.
fn producer_config(
    bootstrap: &str,
    common: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut cfg = client_config(bootstrap, common);
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "60000");
    for (k, v) in overrides {
        cfg.set(k, v);
    }
    cfg
}

impl BrokerChoice {
    /// The bootstrap servers, starting the embedded broker when that is the choice.
    fn resolve(self) -> Result<(String, Option<EmbeddedBroker>)> {
        match self {
            BrokerChoice::Servers(s) => Ok((s, None)),
            BrokerChoice::FromEnv => match std::env::var(BOOTSTRAP_ENV) {
                Ok(s) if !s.trim().is_empty() => Ok((s, None)),
                _ => Err(Error::Config(format!(
                    "`{BOOTSTRAP_ENV}` is not set; set it to the broker address (host:port)"
                ))),
            },
            BrokerChoice::Embedded => {
                let broker = EmbeddedBroker::start()?;
                Ok((broker.bootstrap.clone(), Some(broker)))
            }
            BrokerChoice::Unset => Err(Error::Config(
                "no broker: call `.bootstrap_servers(..)`, `.bootstrap_from_env()` or `.embedded()`"
                    .into(),
            )),
        }
    }
}
