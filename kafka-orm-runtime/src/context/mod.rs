//! The [`KafkaOrm`] context: one per service, built once at startup, cheap to clone.
//!
//! `build()` reads the topics registered by `#[derive(Topic)]`, rejects contradictions,
//! checks that the broker answers (in bounded time), creates missing topics, and opens the
//! shared idempotent producer. [`KafkaOrm::topic`] then hands out typed per-topic handles.
//!
//! - `builder`: [`KafkaOrmBuilder`], its settings and `build()`;
//! - `direction`: what a service declares it produces and consumes, and what is checked
//!   when;
//! - `admin`: the Kafka topics the registry needs and their creation;
//! - `embedded`: the in-process broker behind [`KafkaOrmBuilder::embedded`];
//! - `handle`: [`TopicHandle`], what a service produces, publishes and consumes through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, Producer};
use sea_orm::DatabaseConnection;

use crate::error::{Error, Result};
use crate::middleware::{ConsumeLayers, ProduceLayers};
use crate::topic::{Topic, TopicSpec};

mod admin;
mod builder;
pub(crate) mod direction;
pub(crate) mod embedded;
mod handle;

pub use builder::KafkaOrmBuilder;
pub use handle::TopicHandle;

use embedded::EmbeddedBroker;

/// Environment variable read by [`KafkaOrmBuilder::bootstrap_from_env`].
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// The kafka-orm context: registered topics, the shared producer, the optional database.
///
/// Cloning is cheap (an `Arc`); clone it into tasks rather than building another.
#[derive(Clone)]
pub struct KafkaOrm {
    inner: Arc<Inner>,
}

/// The settings a context keeps as its builder collected them: timeouts, buffers and
/// middleware (the builder holds one while it is configured).
#[derive(Clone)]
struct Tuning {
    send_timeout: Duration,
    consumer_buffer: usize,
    metrics_interval: Duration,
    shutdown_timeout: Duration,
    /// Around every handler ([`crate::middleware`]).
    consume_layers: ConsumeLayers,
    /// Around every produce and publish.
    produce_layers: ProduceLayers,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            send_timeout: crate::defaults::SEND_TIMEOUT,
            consumer_buffer: crate::defaults::CONSUMER_BUFFER,
            metrics_interval: crate::defaults::METRICS_INTERVAL,
            shutdown_timeout: crate::defaults::SHUTDOWN_TIMEOUT,
            consume_layers: ConsumeLayers::default(),
            produce_layers: ProduceLayers::default(),
        }
    }
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
    /// What the service declared it produces and consumes; `None`: every type both ways.
    directions: Option<direction::Directions>,
    /// Timeouts, buffers and middleware, as the builder collected them.
    tuning: Tuning,
    // Declared last: the embedded broker outlives the clients above.
    _embedded: Option<EmbeddedBroker>,
}

impl KafkaOrm {
    /// The typed handle of topic `T`: produce to it, consume it.
    pub fn topic<T: Topic>(&self) -> TopicHandle<T> {
        TopicHandle::new(self.clone())
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
        self.inner.tuning.send_timeout
    }

    /// The context's consume layers, outermost first.
    pub(crate) fn consume_layers(&self) -> &ConsumeLayers {
        &self.inner.tuning.consume_layers
    }

    /// The context's produce layers, outermost first.
    pub(crate) fn produce_layers(&self) -> &ProduceLayers {
        &self.inner.tuning.produce_layers
    }

    /// The default of every `shutdown()`'s wait (streams, handlers, relays, pipelines).
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        self.inner.tuning.shutdown_timeout
    }

    /// How often lag and outbox backlog gauges are sampled.
    pub(crate) fn metrics_interval(&self) -> Duration {
        self.inner.tuning.metrics_interval
    }

    /// The in-process broker of an [`embedded`](KafkaOrmBuilder::embedded) context.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        self.inner._embedded.as_ref()
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

    /// Fails with [`Error::NotProduced`] when the service declared what it produces and
    /// `spec`'s type is not among it.
    pub(crate) fn may_produce(&self, spec: &'static TopicSpec) -> Result<()> {
        direction::may_produce(self.inner.directions.as_ref(), spec)
    }

    /// The group a consumer of `spec` (a stream, a handler, a pipeline) joins; fails with
    /// [`Error::NotConsumed`] when the service declared what it consumes and `spec`'s type
    /// is not among it.
    pub(crate) fn group_for(
        &self,
        spec: &'static TopicSpec,
        explicit: Option<&str>,
    ) -> Result<String> {
        direction::may_consume(self.inner.directions.as_ref(), spec)?;
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

/// A librdkafka configuration: `bootstrap.servers` then `settings`.
fn client_config(bootstrap: &str, settings: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in settings {
        cfg.set(k, v);
    }
    cfg
}
