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

mod batch;
mod outputs;
mod transact;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::consumer::Delivery;
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::topic::Consumable;
use worker::{Stop, Worker};

pub use crate::handler::HandlerError;
pub use outputs::Outputs;

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
pub struct StatsHandle(pub(crate) Arc<StatsInner>);

#[derive(Debug, Default)]
pub(crate) struct StatsInner {
    pub(crate) initialized: AtomicBool,
    pub(crate) committed: AtomicU64,
    pub(crate) aborted: AtomicU64,
    pub(crate) consumed: AtomicU64,
    pub(crate) produced: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
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

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
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
