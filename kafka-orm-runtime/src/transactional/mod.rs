//! Kafka transactions without a database: consume → process → produce, exactly once.
//!
//! [`TopicHandle::transactional`] builds a pipeline that reads one input topic in a consumer
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
use crate::context::{KafkaOrm, TopicHandle};
use crate::defaults;
use crate::error::{Error, Result};
use crate::topic::Consumable;
use worker::{Stop, Worker};

pub use crate::handler::HandlerError;
pub use outputs::Outputs;

impl<T: Consumable> TopicHandle<T> {
    /// A consume → process → produce pipeline over this topic that runs each batch in one
    /// Kafka transaction; see the [module docs](crate::transactional).
    ///
    /// `handler` gets each batch (in order per partition) and an [`Outputs`] to send to;
    /// returning `Ok` commits the outputs together with the batch's offsets, returning an
    /// error aborts both and retries the batch. The pipeline consumes in this handle's
    /// [`group`](TopicHandle::group), else the topic's, else the context's.
    pub fn transactional<H>(&self, handler: H) -> TransactionalBuilder<T, H>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
    {
        let orm = self.orm().clone();
        TransactionalBuilder {
            settings: Settings {
                transactional_id: None,
                group: self.explicit_group().map(str::to_string),
                max_messages: defaults::PIPELINE_BATCH,
                max_wait: defaults::PIPELINE_MAX_WAIT,
                transaction_timeout: defaults::TRANSACTION_TIMEOUT,
                operation_timeout: defaults::OPERATION_TIMEOUT,
                backoff: defaults::PIPELINE_BACKOFF,
                max_backoff: defaults::PIPELINE_MAX_BACKOFF,
                shutdown_timeout: orm.shutdown_timeout(),
                producer_settings: BTreeMap::new(),
                consumer_settings: BTreeMap::new(),
                stats: StatsHandle::default(),
                orm,
                _type: PhantomData,
            },
            handler,
        }
    }
}

/// Configures a transactional pipeline; get one with [`TopicHandle::transactional`] and
/// start it with [`run_until`](Self::run_until).
#[must_use = "call `.run_until(shutdown).await` to start the pipeline"]
pub struct TransactionalBuilder<T, H> {
    settings: Settings<T>,
    handler: H,
}

/// What the worker needs from the builder: everything but the handler.
pub(crate) struct Settings<T> {
    pub(crate) orm: KafkaOrm,
    pub(crate) transactional_id: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) max_messages: usize,
    pub(crate) max_wait: Duration,
    pub(crate) transaction_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) producer_settings: BTreeMap<String, String>,
    pub(crate) consumer_settings: BTreeMap<String, String>,
    pub(crate) stats: StatsHandle,
    _type: PhantomData<fn() -> T>,
}

impl<T, H> std::fmt::Debug for TransactionalBuilder<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("TransactionalBuilder")
            .field("transactional_id", &s.transactional_id)
            .field("group", &s.group)
            .field("max_messages", &s.max_messages)
            .field("max_wait", &s.max_wait)
            .finish_non_exhaustive()
    }
}

impl<T: Consumable, H> TransactionalBuilder<T, H>
where
    H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
{
    /// The producer's `transactional.id` (required), prefixed with the context's namespace.
    ///
    /// Keep it stable across restarts of one instance and unique between instances that
    /// run at the same time: a new producer with the id fences the old one (see the module
    /// docs on zombie fencing).
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.settings.transactional_id = Some(id.into());
        self
    }

    /// At most `max` input messages per transaction, and at most `max_wait` from the first
    /// message of a batch to its transaction (defaults [`defaults::PIPELINE_BATCH`],
    /// [`defaults::PIPELINE_MAX_WAIT`]).
    pub fn batch(mut self, max: usize, max_wait: Duration) -> Self {
        self.settings.max_messages = max.max(1);
        self.settings.max_wait = max_wait;
        self
    }

    /// `transaction.timeout.ms`: how long the broker keeps a transaction open without
    /// progress before aborting it (default [`defaults::TRANSACTION_TIMEOUT`]; at most the
    /// broker's `transaction.max.timeout.ms`). It bounds how long a crashed instance's open
    /// transaction holds back `read_committed` readers when no instance with the same
    /// transactional id restarts.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.settings.transaction_timeout = timeout;
        self
    }

    /// How long each blocking transactional call (`init_transactions`,
    /// `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`, the seek
    /// that rewinds) may take (default [`defaults::OPERATION_TIMEOUT`]).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.operation_timeout = timeout;
        self
    }

    /// Backoff before a failed batch is retried: `base`, doubled per consecutive failure,
    /// capped at `max`, with jitter (defaults [`defaults::PIPELINE_BACKOFF`],
    /// [`defaults::PIPELINE_MAX_BACKOFF`]; the cap should stay well below
    /// `max.poll.interval.ms`).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.settings.backoff = base;
        self.settings.max_backoff = max.max(base);
        self
    }

    /// How long closing the consumer may take when the pipeline stops (default: the
    /// context's [`shutdown_timeout`](crate::KafkaOrmBuilder::shutdown_timeout)).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Passes a librdkafka setting to this pipeline's transactional producer (on top of the
    /// context's common settings).
    pub fn producer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings
            .producer_settings
            .insert(key.into(), value.into());
        self
    }

    /// Passes a librdkafka setting to this pipeline's input consumer (on top of the
    /// context's common settings), e.g. `("auto.offset.reset", "latest")`.
    pub fn consumer_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings
            .consumer_settings
            .insert(key.into(), value.into());
        self
    }

    /// A live view of the pipeline's counters, usable while it runs.
    pub fn stats(&self) -> StatsHandle {
        self.settings.stats.clone()
    }

    /// Runs the pipeline in the current task until `shutdown` completes or a fatal error
    /// occurs (to run it in the background, `tokio::spawn` this future).
    ///
    /// On shutdown the current transaction (if any) finishes, messages collected but not
    /// yet processed are left for the next run (their offsets were not committed), and the
    /// consumer leaves the group.
    pub async fn run_until<S: Future<Output = ()>>(self, shutdown: S) -> Result<PipelineStats> {
        let TransactionalBuilder {
            settings,
            mut handler,
        } = self;
        let mut worker = Worker::<T>::start(settings).await?;
        let shutdown = pin!(shutdown);
        let result = worker.run_loop(&mut handler, shutdown).await;
        let timeout = worker.config.shutdown_timeout;
        let stats = worker.stats.clone();
        worker.close(timeout).await;
        match result {
            Ok(()) => Ok(stats.snapshot()),
            Err(Stop::Error(e)) => Err(e),
            Err(Stop::Panic(payload)) => std::panic::resume_unwind(payload),
        }
    }
}

/// Counters of a pipeline, as returned by [`TransactionalBuilder::run_until`] and
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
/// [`TransactionalBuilder::stats`] before calling `run_until`.
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

/// Whether `err`, returned by [`TransactionalBuilder::run_until`], is a fatal Kafka error: the
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
