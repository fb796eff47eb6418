//! Kafka transactions without a database: consume → process → produce, exactly once.
//!
//! [`KafkaOrm::transactional`] builds a pipeline that reads one input topic in a consumer
//! group, hands batches of decoded [`Delivery`]s to a handler, and commits whatever the
//! handler sends through [`Outputs`] together with the batch's input offsets in one Kafka
//! transaction (transactional producer with zombie fencing, offsets sent to the
//! transaction, input read `read_committed`). Handler errors abort and retry the batch;
//! undecodable input is dead-lettered or skipped inside the transaction.
//!
//! The guarantees, zombie fencing, rebalance handling and errors are documented, with an
//! example, in the facade crate: `kafka_orm::transactional`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::consumer::{Delivery, decode};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::handler::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_FIRST_FAILURE, DLQ_GROUP, DLQ_LAST_FAILURE, DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC,
};
use crate::outbox::now_ms;
use crate::producer::{self, Headers, Outgoing};
use crate::topic::{Consumable, Producible};

pub use crate::handler::HandlerError;

impl KafkaOrm {
    /// A consume → process → produce pipeline over input topic `T` that runs each batch in
    /// one Kafka transaction; see the [module docs](crate::transactional).
    pub fn transactional<T: Consumable>(&self) -> TransactionalBuilder<T> {
        TransactionalBuilder {
            orm: self.clone(),
            transactional_id: None,
            group: None,
            max_messages: 100,
            max_wait: Duration::from_millis(50),
            transaction_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(30),
            close_timeout: Duration::from_secs(10),
            producer_settings: BTreeMap::new(),
            consumer_settings: BTreeMap::new(),
            stats: StatsHandle::default(),
            _type: PhantomData,
        }
    }
}

/// Configures a transactional pipeline; get one with [`KafkaOrm::transactional`] and start
/// it with [`run`](Self::run).
#[must_use = "call `.run(handler, shutdown).await` to start the pipeline"]
pub struct TransactionalBuilder<T> {
    orm: KafkaOrm,
    transactional_id: Option<String>,
    group: Option<String>,
    max_messages: usize,
    max_wait: Duration,
    transaction_timeout: Duration,
    operation_timeout: Duration,
    retry_backoff: Duration,
    max_retry_backoff: Duration,
    close_timeout: Duration,
    producer_settings: BTreeMap<String, String>,
    consumer_settings: BTreeMap<String, String>,
    stats: StatsHandle,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TransactionalBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalBuilder")
            .field("transactional_id", &self.transactional_id)
            .field("group", &self.group)
            .field("max_messages", &self.max_messages)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl<T: Consumable> TransactionalBuilder<T> {
    /// The producer's `transactional.id` (required), prefixed with the context's namespace.
    ///
    /// Keep it stable across restarts of one instance and unique between instances that
    /// run at the same time: a new producer with the id fences the old one (see the module
    /// docs on zombie fencing).
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// The consumer group (prefixed with the context's namespace); default: the topic's
    /// `group = ".."`, else the context's `group_id(..)`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// At most `max_messages` input messages per transaction, and at most `max_wait` from
    /// the first message of a batch to its transaction (defaults: 100, 50 ms).
    pub fn batch(mut self, max_messages: usize, max_wait: Duration) -> Self {
        self.max_messages = max_messages.max(1);
        self.max_wait = max_wait;
        self
    }

    /// `transaction.timeout.ms`: how long the broker keeps a transaction open without
    /// progress before aborting it (default 60 s; at most the broker's
    /// `transaction.max.timeout.ms`). It bounds how long a crashed instance's open
    /// transaction holds back `read_committed` readers when no instance with the same
    /// transactional id restarts.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// How long each blocking transactional call (`init_transactions`,
    /// `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`, the seek
    /// that rewinds) may take (default 30 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Backoff before a failed batch is retried: `initial`, doubled per consecutive
    /// failure, capped at `max` (defaults 100 ms and 30 s; the cap should stay well below
    /// `max.poll.interval.ms`).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_backoff = initial;
        self.max_retry_backoff = max.max(initial);
        self
    }

    /// How long closing the consumer may take when the pipeline stops (default 10 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Passes a librdkafka setting to this pipeline's transactional producer (on top of the
    /// context's common settings).
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer_settings.insert(key.into(), value.into());
        self
    }

    /// Passes a librdkafka setting to this pipeline's input consumer (on top of the
    /// context's common settings), e.g. `("auto.offset.reset", "latest")`.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer_settings.insert(key.into(), value.into());
        self
    }

    /// A live view of the pipeline's counters, usable while it runs.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Runs the pipeline until `shutdown` completes or a fatal error occurs.
    ///
    /// `handler` gets each batch (in order per partition) and an [`Outputs`] to send to;
    /// returning `Ok` commits the outputs together with the batch's offsets, returning an
    /// error aborts both and retries the batch. On shutdown the current transaction (if
    /// any) finishes, messages collected but not yet processed are left for the next run
    /// (their offsets were not committed), and the consumer leaves the group.
    pub async fn run<H, S>(self, mut handler: H, shutdown: S) -> Result<PipelineStats>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
        S: Future<Output = ()>,
    {
        let mut worker = Worker::<T>::start(self).await?;
        let shutdown = pin!(shutdown);
        let result = worker.run_loop(&mut handler, shutdown).await;
        let close_timeout = worker.config.close_timeout;
        let stats = worker.stats.clone();
        worker.close(close_timeout).await;
        match result {
            Ok(()) => Ok(stats.snapshot()),
            Err(Stop::Error(e)) => Err(e),
            Err(Stop::Panic(payload)) => std::panic::resume_unwind(payload),
        }
    }
}

/// Counters of a pipeline, as returned by [`TransactionalBuilder::run`] and
/// [`StatsHandle::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Whether `init_transactions` succeeded and the consumer subscribed.
    pub initialized: bool,
    /// Transactions committed.
    pub committed: u64,
    /// Transactions aborted (each followed by a retry of its batch).
    pub aborted: u64,
    /// Input messages whose offsets were committed (undecodable ones included).
    pub consumed: u64,
    /// Outputs committed (dead-lettered messages not included).
    pub produced: u64,
    /// Undecodable input messages skipped (the topic has no `dlq`).
    pub skipped: u64,
    /// Undecodable input messages committed to the dead-letter topic.
    pub dead_lettered: u64,
}

/// A cheap, cloneable live view of a pipeline's counters; get it with
/// [`TransactionalBuilder::stats`] before calling `run`.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<StatsInner>);

#[derive(Debug, Default)]
struct StatsInner {
    initialized: AtomicBool,
    committed: AtomicU64,
    aborted: AtomicU64,
    consumed: AtomicU64,
    produced: AtomicU64,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
}

impl StatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> PipelineStats {
        let s = &self.0;
        PipelineStats {
            initialized: s.initialized.load(Ordering::Relaxed),
            committed: s.committed.load(Ordering::Relaxed),
            aborted: s.aborted.load(Ordering::Relaxed),
            consumed: s.consumed.load(Ordering::Relaxed),
            produced: s.produced.load(Ordering::Relaxed),
            skipped: s.skipped.load(Ordering::Relaxed),
            dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Whether `err`, returned by [`TransactionalBuilder::run`], is a fatal Kafka error: the
/// producer that raised it cannot be used again (fenced, or failed in another way
/// librdkafka flags as fatal). Restarting the pipeline creates a new producer.
pub fn is_fatal(err: &Error) -> bool {
    match err {
        Error::Kafka { source, .. } | Error::Delivery { source, .. } => match source {
            KafkaError::Transaction(e) => e.is_fatal(),
            // `run` reports a fatal producer state it found without a failing call so.
            KafkaError::Global(_) => true,
            other => other.rdkafka_error_code().is_some_and(is_fencing_code),
        },
        _ => false,
    }
}

/// Whether `err` says this producer was fenced: another producer with the same
/// transactional id initialized after it (a newer instance took over).
pub fn is_fenced(err: &Error) -> bool {
    match err {
        Error::Kafka { source, .. } | Error::Delivery { source, .. } => {
            source.rdkafka_error_code().is_some_and(is_fencing_code)
        }
        _ => false,
    }
}

fn is_fencing_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Where the handler sends its outputs: every message is produced at once inside the
/// batch's transaction, keyed by the output topic's key fields, and becomes visible to
/// `read_committed` readers only when the transaction commits.
pub struct Outputs {
    orm: KafkaOrm,
    producer: FutureProducer,
    queue_timeout: Duration,
    attempt: u32,
    /// Messages waiting for room in librdkafka's queue, in order; once one waits, every
    /// later one waits behind it so per-partition order is kept.
    overflow: VecDeque<(String, Outgoing)>,
    in_flight: Vec<(String, DeliveryFuture)>,
    sent: usize,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("attempt", &self.attempt)
            .field("sent", &self.sent)
            .field("waiting_for_queue", &self.overflow.len())
            .finish_non_exhaustive()
    }
}

impl Outputs {
    /// Produces `value` to its topic inside the transaction and returns the message id it
    /// carries. Does not wait for the broker; [`flush`](Self::flush) does, and the commit
    /// always does.
    pub fn send<O: Producible>(&mut self, value: &O) -> Result<String> {
        self.send_with_headers(value, Headers::new())
    }

    /// [`send`](Self::send) with extra headers (e.g. the input's `traceparent`).
    pub fn send_with_headers<O: Producible>(
        &mut self,
        value: &O,
        headers: Headers,
    ) -> Result<String> {
        let msg = producer::encode(value, headers)?;
        let id = msg.message_id.clone();
        self.enqueue(self.orm.topic_name(O::SPEC), msg)?;
        self.sent += 1;
        Ok(id)
    }

    /// Waits until every output sent so far is acknowledged by the broker (still
    /// uncommitted: `read_committed` readers do not see them before the commit).
    pub async fn flush(&mut self) -> Result<()> {
        self.drain().await?;
        for (topic, delivery) in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(Error::Delivery { topic, source }),
                Err(_) => return Err(Error::Shutdown),
            }
        }
        Ok(())
    }

    /// How many outputs were sent in this transaction.
    pub fn len(&self) -> usize {
        self.sent
    }

    /// Whether no output was sent in this transaction yet.
    pub fn is_empty(&self) -> bool {
        self.sent == 0
    }

    /// Which attempt at the current batch this is: 1 the first time, counting up after each
    /// abort until a transaction commits.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn try_send(
        &self,
        topic: &str,
        msg: &Outgoing,
    ) -> std::result::Result<DeliveryFuture, KafkaError> {
        let mut record = FutureRecord::to(topic)
            .payload(&msg.payload)
            .headers(msg.headers.to_rdkafka());
        if let Some(key) = &msg.key {
            record = record.key(key);
        }
        self.producer.send_result(record).map_err(|(e, _)| e)
    }

    fn enqueue(&mut self, topic: String, msg: Outgoing) -> Result<()> {
        if self.overflow.is_empty() {
            match self.try_send(&topic, &msg) {
                Ok(delivery) => {
                    self.in_flight.push((topic, delivery));
                    return Ok(());
                }
                Err(e) if is_queue_full(&e) => {}
                Err(source) => return Err(Error::Delivery { topic, source }),
            }
        }
        self.overflow.push_back((topic, msg));
        Ok(())
    }

    /// Produces what waited for room in the queue, waiting for room at most the operation
    /// timeout per message.
    async fn drain(&mut self) -> Result<()> {
        while let Some((topic, msg)) = self.overflow.pop_front() {
            let deadline = Instant::now() + self.queue_timeout;
            loop {
                match self.try_send(&topic, &msg) {
                    Ok(delivery) => {
                        self.in_flight.push((topic, delivery));
                        break;
                    }
                    Err(e) if is_queue_full(&e) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(source) => return Err(Error::Delivery { topic, source }),
                }
            }
        }
        Ok(())
    }
}

fn is_queue_full(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}

/// The input consumer's context: remembers revoked partitions, so collected messages of a
/// partition this instance no longer owns never make it into a transaction.
#[derive(Default)]
struct PipelineContext {
    revoked: Mutex<Revoked>,
}

#[derive(Default)]
struct Revoked {
    all: bool,
    partitions: Vec<i32>,
}

impl ClientContext for PipelineContext {}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions_of(tpl), "transactional pipeline: partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                tracing::info!(partitions = ?parts, "transactional pipeline: partitions revoked");
                revoked.partitions.extend(parts);
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "transactional pipeline: rebalance error; dropping the collected batch");
                revoked.all = true;
            }
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

type PipelineConsumer = StreamConsumer<PipelineContext>;

/// A message the input codec could not decode.
struct Undecodable {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    headers: Headers,
    payload: Option<Vec<u8>>,
    error: String,
    /// When decoding failed, in epoch milliseconds.
    failed_ms: i64,
}

/// The messages of one transaction, in the order received.
struct Batch<T> {
    deliveries: Vec<Delivery<T>>,
    undecodable: Vec<Undecodable>,
}

impl<T> Batch<T> {
    fn new() -> Self {
        Batch {
            deliveries: Vec::new(),
            undecodable: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.deliveries.len() + self.undecodable.len()
    }

    fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.undecodable.is_empty()
    }

    fn positions(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.deliveries
            .iter()
            .map(|d| (d.partition(), d.offset()))
            .chain(self.undecodable.iter().map(|u| (u.partition, u.offset)))
    }

    /// Per partition: (first offset, last offset).
    fn ranges(&self) -> BTreeMap<i32, (i64, i64)> {
        let mut ranges = BTreeMap::new();
        for (p, o) in self.positions() {
            let r = ranges.entry(p).or_insert((o, o));
            r.0 = r.0.min(o);
            r.1 = r.1.max(o);
        }
        ranges
    }

    fn drop_revoked(&mut self, revoked: &Revoked) {
        if revoked.all {
            self.deliveries.clear();
            self.undecodable.clear();
        } else if !revoked.partitions.is_empty() {
            let gone = |p: i32| revoked.partitions.contains(&p);
            self.deliveries.retain(|d| !gone(d.partition()));
            self.undecodable.retain(|u| !gone(u.partition));
        }
    }
}

/// Why the loop stopped early.
enum Stop {
    Error(Error),
    Panic(Box<dyn std::any::Any + Send + 'static>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// What became of one batch.
enum Outcome {
    Committed,
    /// Aborted (or never begun) and rewound: process it again after a backoff.
    Retry,
}

struct Config {
    topic: String,
    dlq_topic: Option<String>,
    transactional_id: String,
    group: String,
    max_messages: usize,
    max_wait: Duration,
    operation_timeout: Duration,
    retry_backoff: Duration,
    max_retry_backoff: Duration,
    close_timeout: Duration,
    queue_timeout: Duration,
}

/// Drops what it holds on a thread of its own, after `before_drop` (unsubscribing a
/// consumer): librdkafka's destroy can block (flushing a producer, leaving the group), which
/// must never stall the async runtime. Used when the pipeline future is dropped.
struct OffThread<C: Send + Sync + 'static> {
    client: Option<Arc<C>>,
    before_drop: fn(&C),
}

impl<C: Send + Sync + 'static> OffThread<C> {
    fn new(client: C, before_drop: fn(&C)) -> Self {
        OffThread {
            client: Some(Arc::new(client)),
            before_drop,
        }
    }

    fn get(&self) -> &Arc<C> {
        self.client.as_ref().expect("client used after drop")
    }
}

impl<C: Send + Sync + 'static> Drop for OffThread<C> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let before_drop = self.before_drop;
            let _ = std::thread::Builder::new()
                .name("kafka-orm-txn-close".into())
                .spawn(move || {
                    before_drop(&client);
                    drop(client);
                });
        }
    }
}

struct Worker<T> {
    orm: KafkaOrm,
    config: Config,
    // Dropped in this order: the consumer leaves the group, then the producer goes. A
    // dropped producer does not abort its open transaction (see the module docs).
    consumer: OffThread<PipelineConsumer>,
    producer: OffThread<FutureProducer>,
    stats: StatsHandle,
    _type: PhantomData<fn() -> T>,
}

impl<T: Consumable> Worker<T> {
    async fn start(b: TransactionalBuilder<T>) -> Result<Self> {
        let orm = b.orm;
        let spec = T::SPEC;
        let topic = orm.topic_name(spec);
        let id = b.transactional_id.ok_or_else(|| {
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
            retry_backoff: b.retry_backoff,
            max_retry_backoff: b.max_retry_backoff,
            close_timeout: b.close_timeout,
            queue_timeout: b.operation_timeout,
            topic,
        };

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
        let p = Arc::clone(producer.get());
        let timeout = config.operation_timeout;
        tokio::task::spawn_blocking(move || p.init_transactions(timeout))
            .await
            .map_err(|_| Error::Shutdown)?
            .map_err(|e| {
                Error::kafka(
                    format!(
                        "initializing transactions for `{}` (init_transactions)",
                        config.transactional_id
                    ),
                    e,
                )
            })?;

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

        b.stats.0.initialized.store(true, Ordering::Relaxed);
        tracing::info!(
            topic = %config.topic,
            group = %config.group,
            transactional_id = %config.transactional_id,
            "transactional pipeline started"
        );
        Ok(Worker {
            orm,
            config,
            consumer,
            producer,
            stats: b.stats,
            _type: PhantomData,
        })
    }

    async fn run_loop<H, S>(
        &mut self,
        handler: &mut H,
        mut shutdown: Pin<&mut S>,
    ) -> std::result::Result<(), Stop>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
        S: Future<Output = ()>,
    {
        let mut attempt = 1;
        let mut backoff = self.config.retry_backoff;
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
            match self
                .transact(batch, attempt, handler)
                .instrument(span)
                .await?
            {
                Outcome::Committed => {
                    attempt = 1;
                    backoff = self.config.retry_backoff;
                }
                Outcome::Retry => {
                    attempt += 1;
                    tokio::select! {
                        biased;
                        () = shutdown.as_mut() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.max_retry_backoff);
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

    /// One transaction: begin, dead-letter, handler, offsets, commit.
    async fn transact<H>(
        &self,
        mut batch: Batch<T>,
        attempt: u32,
        handler: &mut H,
    ) -> std::result::Result<Outcome, Stop>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
    {
        let ranges = batch.ranges();
        if ranges.is_empty() {
            return Ok(Outcome::Committed);
        }
        let producer = Arc::clone(self.producer.get());
        if let Err(e) = producer.begin_transaction() {
            // Nothing was produced yet: only a fatal error stops us.
            self.fatal_or(e, "beginning a transaction")?;
            self.rewind(&ranges).await;
            return Ok(Outcome::Retry);
        }
        let mut out = Outputs {
            orm: self.orm.clone(),
            producer: (*producer).clone(),
            queue_timeout: self.config.queue_timeout,
            attempt,
            overflow: VecDeque::new(),
            in_flight: Vec::new(),
            sent: 0,
        };

        if let Some(dlq) = &self.config.dlq_topic {
            for u in &batch.undecodable {
                // The handler's dead-letter headers; attempts 0: it never reached a handler.
                let mut headers = u.headers.clone();
                headers.insert(DLQ_SOURCE_TOPIC, self.config.topic.clone());
                headers.insert(DLQ_SOURCE_PARTITION, u.partition.to_string());
                headers.insert(DLQ_SOURCE_OFFSET, u.offset.to_string());
                headers.insert(DLQ_GROUP, self.config.group.clone());
                headers.insert(DLQ_ATTEMPTS, "0");
                headers.insert(DLQ_ERROR, u.error.clone());
                headers.insert(DLQ_FIRST_FAILURE, u.failed_ms.to_string());
                headers.insert(DLQ_LAST_FAILURE, u.failed_ms.to_string());
                let msg = Outgoing {
                    key: u.key.clone(),
                    payload: u.payload.clone().unwrap_or_default(),
                    headers,
                    message_id: String::new(),
                };
                if let Err(e) = out.enqueue(dlq.clone(), msg) {
                    return self.abort(e.to_string(), &ranges).await;
                }
            }
        }

        for d in &mut batch.deliveries {
            d.attempt = attempt;
        }
        let handled = AssertUnwindSafe(handler(&batch.deliveries, &mut out))
            .catch_unwind()
            .await;
        match handled {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let reason = format!("the handler failed: {e}");
                return self.abort(reason, &ranges).await;
            }
            Err(panic) => {
                tracing::error!(
                    transactional_id = %self.config.transactional_id,
                    "transactional pipeline: the handler panicked; aborting the transaction"
                );
                let _ = self.abort("the handler panicked".into(), &ranges).await;
                return Err(Stop::Panic(panic));
            }
        }
        if let Err(e) = out.drain().await {
            return self.abort(e.to_string(), &ranges).await;
        }

        // The offsets after the batch, with the group generation they were read in.
        let mut offsets = TopicPartitionList::new();
        for (&p, &(_, last)) in &ranges {
            offsets
                .add_partition_offset(&self.config.topic, p, Offset::Offset(last + 1))
                .map_err(|e| Error::kafka("building the offsets of the transaction", e))?;
        }
        let Some(metadata) = self.consumer.get().group_metadata() else {
            return Err(Stop::Error(Error::Config(format!(
                "the consumer of `{}` has no group metadata",
                self.config.topic
            ))));
        };
        let metadata = Arc::new(metadata);
        let timeout = self.config.operation_timeout;
        let sent = self
            .blocking_retried("sending the offsets to the transaction", {
                let producer = Arc::clone(&producer);
                move || producer.send_offsets_to_transaction(&offsets, &metadata, timeout)
            })
            .await?;
        if let Err(e) = sent {
            self.fatal_or(e.clone(), "sending the offsets to the transaction")?;
            return self.abort(e.to_string(), &ranges).await;
        }

        let committed = self
            .blocking_retried("committing the transaction", {
                let producer = Arc::clone(&producer);
                move || producer.commit_transaction(timeout)
            })
            .await?;
        if let Err(e) = committed {
            self.fatal_or(e.clone(), "committing the transaction")?;
            return self.abort(e.to_string(), &ranges).await;
        }

        let s = &self.stats.0;
        StatsHandle::add(&s.committed, 1);
        StatsHandle::add(&s.consumed, batch.len() as u64);
        StatsHandle::add(&s.produced, out.sent as u64);
        if self.config.dlq_topic.is_some() {
            StatsHandle::add(&s.dead_lettered, batch.undecodable.len() as u64);
        } else {
            StatsHandle::add(&s.skipped, batch.undecodable.len() as u64);
        }
        tracing::debug!(
            messages = batch.len(),
            outputs = out.sent,
            "transaction committed"
        );
        Ok(Outcome::Committed)
    }

    /// Runs a blocking transactional call, again while librdkafka says it is retriable.
    /// The outer error is only for a lost blocking thread.
    async fn blocking_retried<F>(
        &self,
        what: &str,
        call: F,
    ) -> std::result::Result<std::result::Result<(), KafkaError>, Stop>
    where
        F: Fn() -> std::result::Result<(), KafkaError> + Send + Sync + 'static,
    {
        let call = Arc::new(call);
        let mut tries = 0;
        loop {
            tries += 1;
            let c = Arc::clone(&call);
            let result = tokio::task::spawn_blocking(move || c())
                .await
                .map_err(|_| Stop::Error(Error::Shutdown))?;
            match result {
                Err(KafkaError::Transaction(ref e)) if e.is_retriable() && tries < 3 => {
                    tracing::warn!(error = %e, tries, "transactional pipeline: {what} failed; retrying");
                }
                other => return Ok(other),
            }
        }
    }

    /// Returns a stopping error when `e` (or the producer's state) is fatal.
    fn fatal_or(&self, e: KafkaError, what: &str) -> std::result::Result<(), Stop> {
        let client_fatal = self.producer.get().client().fatal_error();
        let (source, reason) = match (&e, client_fatal) {
            // librdkafka's error already says why.
            (KafkaError::Transaction(t), _) if t.is_fatal() => (e, None),
            (_, Some((code, reason))) => (KafkaError::Global(code), Some(format!("{reason}; {e}"))),
            _ => return Ok(()),
        };
        tracing::error!(
            transactional_id = %self.config.transactional_id,
            error = %source,
            "transactional pipeline: fatal producer error while {what}"
        );
        let context = match reason {
            Some(reason) => format!(
                "{what} for `{}` (fatal: {reason})",
                self.config.transactional_id
            ),
            None => format!("{what} for `{}` (fatal)", self.config.transactional_id),
        };
        Err(Stop::Error(Error::kafka(context, source)))
    }

    /// Aborts the open transaction and rewinds the consumer to the batch start.
    async fn abort(
        &self,
        reason: String,
        ranges: &BTreeMap<i32, (i64, i64)>,
    ) -> std::result::Result<Outcome, Stop> {
        tracing::warn!(
            transactional_id = %self.config.transactional_id,
            %reason,
            "transactional pipeline: aborting the transaction; the batch will be retried"
        );
        if let Some((code, why)) = self.producer.get().client().fatal_error() {
            return Err(Stop::Error(Error::kafka(
                format!(
                    "aborting the transaction of `{}` after: {reason} (fatal: {why})",
                    self.config.transactional_id
                ),
                KafkaError::Global(code),
            )));
        }
        let producer = Arc::clone(self.producer.get());
        let timeout = self.config.operation_timeout;
        let aborted = self
            .blocking_retried("aborting the transaction", move || {
                producer.abort_transaction(timeout)
            })
            .await?;
        if let Err(e) = aborted {
            // An abort that cannot complete leaves the producer unusable.
            self.fatal_or(e.clone(), "aborting the transaction")?;
            return Err(Stop::Error(Error::kafka(
                format!(
                    "aborting the transaction of `{}` after: {reason}",
                    self.config.transactional_id
                ),
                e,
            )));
        }
        StatsHandle::add(&self.stats.0.aborted, 1);
        self.rewind(ranges).await;
        Ok(Outcome::Retry)
    }

    /// Seeks each partition of the batch back to its first offset, so the next batch
    /// starts with the same messages. A partition that is no longer assigned is skipped:
    /// its new owner starts at the committed offset, which is the batch start.
    async fn rewind(&self, ranges: &BTreeMap<i32, (i64, i64)>) {
        let mut tpl = TopicPartitionList::new();
        for (&p, &(first, _)) in ranges {
            if tpl
                .add_partition_offset(&self.config.topic, p, Offset::Offset(first))
                .is_err()
            {
                continue;
            }
        }
        let consumer = Arc::clone(self.consumer.get());
        let timeout = self.config.operation_timeout;
        let result =
            tokio::task::spawn_blocking(move || consumer.seek_partitions(tpl, timeout)).await;
        match result {
            Ok(Ok(tpl)) => {
                for e in tpl.elements() {
                    if let Err(err) = e.error() {
                        tracing::info!(partition = e.partition(), error = %err, "transactional pipeline: not rewound (no longer assigned?)");
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "transactional pipeline: rewinding the consumer failed")
            }
            Err(_) => {
                tracing::warn!("transactional pipeline: rewinding the consumer was cancelled")
            }
        }
    }

    /// Leaves the group and releases both clients, waiting at most `timeout`.
    async fn close(mut self, timeout: Duration) {
        let consumer = self.consumer.client.take();
        let producer = self.producer.client.take();
        let closing = tokio::task::spawn_blocking(move || {
            if let Some(c) = consumer {
                c.unsubscribe();
                drop(c);
            }
            drop(producer);
        });
        if tokio::time::timeout(timeout, closing).await.is_err() {
            tracing::warn!(
                ?timeout,
                "transactional pipeline did not close in time; left to finish in the background"
            );
        }
        tracing::info!(transactional_id = %self.config.transactional_id, "transactional pipeline stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(partition: i32, offset: i64) -> Undecodable {
        Undecodable {
            partition,
            offset,
            key: None,
            headers: Headers::new(),
            payload: None,
            error: "bad".into(),
            failed_ms: 0,
        }
    }

    #[test]
    fn ranges_and_revocation() {
        let mut b = Batch::<()>::new();
        for (p, o) in [(0, 5), (1, 9), (0, 6), (0, 7), (2, 1), (1, 10)] {
            b.undecodable.push(bad(p, o));
        }
        let r = b.ranges();
        assert_eq!(r[&0], (5, 7));
        assert_eq!(r[&1], (9, 10));
        assert_eq!(r[&2], (1, 1));
        b.drop_revoked(&Revoked {
            all: false,
            partitions: vec![1],
        });
        assert_eq!(b.len(), 4);
        assert!(!b.ranges().contains_key(&1));
        b.drop_revoked(&Revoked {
            all: true,
            partitions: vec![],
        });
        assert!(b.is_empty());
    }
}
