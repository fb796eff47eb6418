//! The pipeline's worker: starts the transactional producer and the consumer, collects
//! batches, runs each in a transaction ([`super::transact`]) and closes.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::batch::{Batch, PipelineConsumer, PipelineContext, Revoked, Undecodable};
use super::{HandlerError, Outputs, Settings, StatsHandle};
use crate::backoff::Backoff;
use crate::consumer::{Delivery, decode};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::offthread::OffThread;
use crate::producer::{self, Headers};
use crate::telemetry::metrics::PipelineMetrics;
use crate::topic::Consumable;
use crate::util::now_ms;

/// Why the loop stopped early.
pub(super) enum Stop {
    Error(Error),
    Panic(Box<dyn std::any::Any + Send + 'static>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// What became of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Committed,
    /// Aborted (or never begun) and rewound: process it again after a backoff.
    Retry,
}

pub(super) struct Config {
    pub(super) topic: String,
    pub(super) dlq_topic: Option<String>,
    pub(super) transactional_id: String,
    pub(super) group: String,
    pub(super) max_messages: usize,
    pub(super) max_wait: Duration,
    pub(super) operation_timeout: Duration,
    pub(super) backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) queue_timeout: Duration,
}

pub(super) struct Worker<T> {
    pub(super) orm: KafkaOrm,
    pub(super) config: Config,
    // Dropped in this order: the consumer leaves the group, then the producer goes. A
    // dropped producer does not abort its open transaction (see the module docs).
    pub(super) consumer: OffThread<PipelineConsumer>,
    pub(super) producer: OffThread<FutureProducer>,
    pub(super) stats: StatsHandle,
    pub(super) metrics: PipelineMetrics,
    _type: PhantomData<fn() -> T>,
}

impl<T: Consumable> Worker<T> {
    pub(super) async fn start(b: Settings<T>) -> Result<Self> {
        let orm = b.orm.clone();
        let spec = T::SPEC;
        let topic = orm.topic_name(spec);
        let id = b.transactional_id.clone().ok_or_else(|| {
            Error::Config(format!(
                "the transactional pipeline over `{topic}` has no transactional id: call `.transactional_id(\"..\")`"
            ))
        })?;
        // The builder's group, else the topic's, else the context's default (namespaced).
        let group = orm.group_for(spec, b.group.as_deref())?;
        let config = Config {
            dlq_topic: spec.dlq.map(|d| orm.namespaced(d.topic)),
            transactional_id: orm.namespaced(&id),
            group,
            max_messages: b.max_messages,
            max_wait: b.max_wait,
            operation_timeout: b.operation_timeout,
            backoff: b.backoff,
            max_backoff: b.max_backoff,
            shutdown_timeout: b.shutdown_timeout,
            queue_timeout: b.operation_timeout,
            topic,
        };

        let producer = transactional_producer(&orm, &b, &config).await?;
        let consumer = input_consumer(&orm, &b, &config)?;
        b.stats.0.initialized.store(true, Ordering::Relaxed);
        tracing::info!(
            topic = %config.topic,
            group = %config.group,
            transactional_id = %config.transactional_id,
            "transactional pipeline started"
        );
        let metrics = PipelineMetrics::new(&config.topic, &config.group);
        Ok(Worker {
            orm,
            config,
            consumer,
            producer,
            stats: b.stats,
            metrics,
            _type: PhantomData,
        })
    }

    pub(super) async fn run_loop<H, S>(
        &mut self,
        handler: &mut H,
        mut shutdown: Pin<&mut S>,
    ) -> std::result::Result<(), Stop>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
        S: Future<Output = ()>,
    {
        let mut attempt = 1;
        let backoff = Backoff::new(self.config.backoff, self.config.max_backoff);
        loop {
            let Some(batch) = self.collect(shutdown.as_mut()).await? else {
                return Ok(());
            };
            let span = tracing::info_span!(
                "kafka_orm.transaction",
                transactional_id = %self.config.transactional_id,
                messages = batch.len(),
                attempt,
            );
            let (started, empty) = (std::time::Instant::now(), batch.is_empty());
            let outcome = self
                .transact(batch, attempt, handler)
                .instrument(span)
                .await?;
            if !empty {
                let committed = outcome == Outcome::Committed;
                self.metrics.transaction(started.elapsed(), committed);
            }
            match outcome {
                Outcome::Committed => attempt = 1,
                Outcome::Retry => {
                    attempt += 1;
                    tokio::select! {
                        biased;
                        () = shutdown.as_mut() => return Ok(()),
                        () = tokio::time::sleep(backoff.delay_now(attempt - 1)) => {}
                    }
                }
            }
        }
    }

    /// Collects the next batch; `None` when `shutdown` completed first.
    async fn collect<S: Future<Output = ()>>(
        &self,
        mut shutdown: Pin<&mut S>,
    ) -> std::result::Result<Option<Batch<T>>, Stop> {
        let consumer = Arc::clone(self.consumer.get());
        let mut batch = Batch::new();
        let mut deadline: Option<Instant> = None;
        while batch.len() < self.config.max_messages {
            let received = match deadline {
                None => tokio::select! {
                    biased;
                    () = shutdown.as_mut() => return Ok(None),
                    m = consumer.recv() => m,
                },
                Some(at) => tokio::select! {
                    biased;
                    () = shutdown.as_mut() => return Ok(None),
                    () = tokio::time::sleep_until(at) => break,
                    m = consumer.recv() => m,
                },
            };
            // Rebalance callbacks ran inside `recv`: forget what we no longer own.
            self.take_revoked(&mut batch);
            if batch.is_empty() {
                deadline = None;
            }
            match received {
                Ok(m) => {
                    self.push(&mut batch, &m);
                    deadline.get_or_insert_with(|| Instant::now() + self.config.max_wait);
                }
                Err(e) => {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        return Err(Stop::Error(Error::kafka(
                            format!("consuming `{}` (fatal: {reason})", self.config.topic),
                            KafkaError::MessageConsumption(code),
                        )));
                    }
                    tracing::warn!(topic = %self.config.topic, error = %e, "transactional pipeline: consumer error");
                    tokio::select! {
                        biased;
                        () = shutdown.as_mut() => return Ok(None),
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
        self.take_revoked(&mut batch);
        Ok(Some(batch))
    }

    fn take_revoked(&self, batch: &mut Batch<T>) {
        let mut revoked = self
            .consumer
            .get()
            .context()
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        batch.drop_revoked(&revoked);
        *revoked = Revoked::default();
    }

    fn push(&self, batch: &mut Batch<T>, m: &BorrowedMessage<'_>) {
        match decode::<T, _>(m) {
            Ok(d) => batch.deliveries.push(d),
            Err(e) => {
                let error = match &e {
                    Error::Decode { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                tracing::warn!(
                    topic = %self.config.topic,
                    partition = m.partition(),
                    offset = m.offset(),
                    %error,
                    dlq = ?self.config.dlq_topic,
                    "transactional pipeline: cannot decode a message; it is {}",
                    if self.config.dlq_topic.is_some() { "dead-lettered" } else { "skipped" },
                );
                batch.undecodable.push(Undecodable {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    headers: m.headers().map(Headers::from_rdkafka).unwrap_or_default(),
                    payload: m.payload().map(<[u8]>::to_vec),
                    error,
                    failed_ms: now_ms(),
                });
            }
        }
    }

    /// Leaves the group and releases both clients, waiting at most `timeout`.
    pub(super) async fn close(mut self, timeout: Duration) {
        let consumer = self.consumer.take();
        let producer = self.producer.take();
        crate::offthread::close_within(timeout, "transactional pipeline", move || {
            if let Some(c) = consumer {
                c.unsubscribe();
                drop(c);
            }
            drop(producer);
        })
        .await;
        tracing::info!(transactional_id = %self.config.transactional_id, "transactional pipeline stopped");
    }
}

/// The transactional producer, its transactions initialized: earlier producers with the
/// same id are fenced and what they left open is aborted, before a message is consumed.
async fn transactional_producer<T>(
    orm: &KafkaOrm,
    b: &Settings<T>,
    config: &Config,
) -> Result<OffThread<FutureProducer>> {
    let mut producer_cfg = orm.client_config();
    producer_cfg
        .set("transactional.id", &config.transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set(
            "transaction.timeout.ms",
            b.transaction_timeout.as_millis().to_string(),
        );
    for (k, v) in &b.producer_settings {
        producer_cfg.set(k, v);
    }
    let producer: FutureProducer = producer_cfg.create().map_err(|e| {
        Error::kafka(
            format!(
                "creating the transactional producer `{}`",
                config.transactional_id
            ),
            e,
        )
    })?;
    let producer = OffThread::new(producer, |_| {});

    // Fence earlier producers with this id and abort what they left open, before a
    // single message is consumed.
    producer::init_transactions(
        producer.get(),
        &config.transactional_id,
        config.operation_timeout,
    )
    .await?;
    Ok(producer)
}

/// The input consumer, `read_committed` without auto-commit, subscribed.
fn input_consumer<T>(
    orm: &KafkaOrm,
    b: &Settings<T>,
    config: &Config,
) -> Result<OffThread<PipelineConsumer>> {
    // The context's consumer settings (`consumer_set`) apply, then the builder's.
    let mut consumer_cfg =
        orm.consumer_config_with(&config.group, &[("isolation.level", "read_committed")]);
    for (k, v) in &b.consumer_settings {
        consumer_cfg.set(k, v);
    }
    for (k, v) in [
        ("enable.auto.commit", "false"),
        ("isolation.level", "read_committed"),
    ] {
        if consumer_cfg.get(k) != Some(v) {
            return Err(Error::Config(format!(
                "the transactional pipeline over `{}` needs `{k}={v}` on its consumer",
                config.topic
            )));
        }
    }
    let consumer: PipelineConsumer = consumer_cfg
        .create_with_context(PipelineContext::default())
        .map_err(|e| Error::kafka(format!("creating a consumer for `{}`", config.topic), e))?;
    let consumer = OffThread::new(consumer, |c: &PipelineConsumer| c.unsubscribe());
    consumer
        .get()
        .subscribe(&[&config.topic])
        .map_err(|e| Error::kafka(format!("subscribing to `{}`", config.topic), e))?;
    Ok(consumer)
}
