//! Handlers: consume a topic and apply each message, in a database transaction with the
//! inbox or without a database, with retries, the dead-letter topic, concurrency and
//! watermark commits.
//!
//! ```text
//! orm.topic::<OrderCreated>()
//!     .handler(async |txn, order| {
//!         billing::Entity::insert(..).exec(txn).await?;   // SeaORM writes on txn
//!         Ok(())
//!     })
//!     .concurrency(8)
//!     .run_until(shutdown).await?;
//!
//! orm.topic::<PageViewed>()                              // no database, no inbox
//!     .handler_without_database(async |view| { stats.record(&view.page).await })
//!     .spawn().await?;
//! ```
//!
//! A handler is an async closure or an `async fn` ([`TopicHandle::handler`],
//! [`TopicHandle::handler_without_database`]), or a struct implementing [`Handler`] or
//! [`HandlerWithoutDatabase`] with `async fn` ([`TopicHandle::handler_with`]). Several
//! handlers of a service run together in a [`Host`] (`orm.host()`): one start, one
//! shutdown (or SIGTERM/Ctrl-C), and a handler that stops is reported.
//!
//! What holds:
//!
//! - **Once in the database.** The handler runs in a transaction that also inserts the
//!   message's inbox row (topics with `inbox`); a duplicate is skipped, never re-applied.
//!   The offset is stored only after the commit; a crash in between redelivers, and the
//!   inbox skips it.
//! - **At least once without one.** A [`HandlerWithoutDatabase`] gets everything below;
//!   its offset is stored after it returned, so a crash or rebalance in between hands the
//!   message to it again.
//! - **Order.** One partition's messages are handled one after another, or, with
//!   [`HandlerBuilder::key_concurrency`], one key's messages are; partitions (and keys)
//!   run concurrently up to [`HandlerBuilder::concurrency`] workers, a fixed count or one
//!   that follows the lag between a minimum and a maximum ([`Concurrency::by_lag`]).
//! - **Watermark commits.** The stored offset of a partition never passes a message that
//!   is not finished: it is the lowest unfinished offset.
//! - **Retry in place** with exponential backoff, jitter and a cap (`retry(..)` in the
//!   attribute; default [`defaults::RETRY`]). A backing-off message blocks only its
//!   partition (or key); the consumer keeps polling, so the group session stays alive.
//! - **Retry topics** (`retry_topics`, Spring Kafka's non-blocking retries): after the
//!   in-place attempts, a failed message goes to `<topic>.retry-1`, `-2`, `-3` with growing
//!   delays ([`HandlerBuilder::retry_topic_delays`]) and is tried once per tier when due, so
//!   the partition is not blocked meanwhile. Per-key order does not hold across a retry.
//! - **Dead letters.** After the last attempt the raw record goes to the topic's `dlq`
//!   with `kafka-orm-dlq-*` headers (source topic, partition, offset, attempts, error,
//!   first and last failure time, group), and the partition moves on. A payload that cannot
//!   be decoded goes there at once, and so does one of a type the topic does not carry
//!   ([`HandlerBuilder::on_unknown_type`]). Without a `dlq` such a message stops the handler
//!   with a typed error instead, its offset uncommitted: nothing is dropped silently.
//! - **Backpressure.** A partition with more than [`HandlerBuilder::max_pending`] messages
//!   waiting is paused and resumed once half of them are done.
//! - **Rebalance.** On revoke, queued messages of the revoked partitions are abandoned,
//!   in-flight ones are given [`HandlerBuilder::drain_timeout`] to finish and their
//!   offsets are committed before the partitions go; nothing is committed past unfinished
//!   work. (Handlers that finish later than that are deduplicated by the inbox.)
//! - **Shutdown** finishes in-flight handlers, commits, and closes in bounded time.
//! - **Database outages** are retried with backoff without using up attempts: a message is
//!   dead-lettered for what the handler did, never because the database was down.
//! - **Middleware.** Consume layers ([`HandlerBuilder::layer`],
//!   [`KafkaOrmBuilder::consume_layer`](crate::KafkaOrmBuilder::consume_layer)) run around
//!   each attempt (or batch), inside the `kafka_orm.handle` span and outside the
//!   transaction; see [`crate::middleware`].

mod apply;
mod client;
mod concurrency;
mod dlq;
mod forms;
mod forward;
mod health;
mod host;
mod lane;
mod lane_batch;
mod lane_forward;
mod limit;
mod observe;
mod partitions;
mod poll;
mod retry;
mod routes;
mod runner;
mod running;
mod traits;
mod unknown_type;
mod watermark;

pub use crate::telemetry::lag::PartitionLag;
pub use apply::{AnyHandler, Apply, InDatabase, InTransaction, NoDatabase, WithoutDatabase};
pub use concurrency::Concurrency;
pub(crate) use dlq::{Failure, RawRecord, dead_letter};
pub use forms::{
    AsyncFnBatchHandler, AsyncFnHandler, AsyncFnWithoutDatabase, BatchHandlerFn, FnBatchHandler,
    FnHandler, HandlerFn, HandlerWithoutDatabaseFn,
};
pub use host::{Host, HostBuilder};
pub use routes::{Routes, RoutesWithoutDatabase};
pub(crate) use running::Counters;
pub use running::{HandlerStats, RunningHandler};
pub use traits::{BatchFuture, Handler, HandlerError, HandlerFuture, HandlerWithoutDatabase};

use std::future::Future;
use std::time::Duration;

use crate::context::TopicHandle;
use crate::defaults;
use crate::error::{Error, Result};
use crate::message_type::OnUnknownType;
use crate::middleware::{ConsumeLayer, ConsumeLayers};
use crate::topic::{Consumable, Topic};

pub use dlq::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_FIRST_FAILURE, DLQ_GROUP, DLQ_LAST_FAILURE, DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC,
};

/// What to do with a message whose last attempt failed when the topic has no `dlq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExhausted {
    /// Stop the handler with [`Error::HandlerFailed`]; the offset is not committed, so the
    /// message is handled again after a restart (the default without `dlq`).
    Stop,
    /// Log it at error level, count it in [`HandlerStats::skipped_failures`], move on.
    Skip,
}

/// Configures a handler; get one with [`TopicHandle::handler`],
/// [`TopicHandle::handler_without_database`] or [`TopicHandle::handler_with`]. `H` is the
/// handler as it runs: [`InTransaction`] or [`WithoutDatabase`].
#[must_use = "call `.run_until(..)` or `.spawn()` to start the handler"]
pub struct HandlerBuilder<T, H> {
    topic: TopicHandle<T>,
    handler: H,
    config: Config,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub concurrency: Concurrency,
    pub key_lanes: u32,
    pub batch: Option<(usize, Duration)>,
    pub max_pending: usize,
    pub drain_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub on_exhausted: OnExhausted,
    pub on_unknown_type: OnUnknownType,
    /// The context's consume layers, then the handler's (complete from `spawn` on).
    pub layers: ConsumeLayers,
    pub purge_interval: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub retry_topic_delays: Vec<Duration>,
    pub instance_id: Option<String>,
    pub lag_threshold: Option<i64>,
}

impl<T: Consumable> TopicHandle<T> {
    /// A handler from a struct implementing [`Handler`] (in a database transaction) or
    /// [`HandlerWithoutDatabase`], with `async fn`: called by reference, nothing boxed or
    /// cloned per message.
    pub fn handler_with<H, M>(&self, handler: H) -> HandlerBuilder<T, H::Apply>
    where
        H: AnyHandler<T, M>,
    {
        let retry = T::SPEC.retry.unwrap_or(defaults::RETRY);
        HandlerBuilder {
            topic: self.clone(),
            handler: handler.into_apply(),
            config: Config {
                concurrency: Concurrency::default(),
                key_lanes: defaults::HANDLER_KEY_LANES,
                batch: None,
                max_pending: defaults::HANDLER_MAX_PENDING,
                drain_timeout: defaults::HANDLER_DRAIN_TIMEOUT,
                shutdown_timeout: self.orm().shutdown_timeout(),
                on_exhausted: OnExhausted::Stop,
                on_unknown_type: OnUnknownType::default(),
                layers: ConsumeLayers::default(),
                purge_interval: defaults::INBOX_PURGE_INTERVAL,
                attempts: retry.attempts.max(1),
                backoff: retry.backoff,
                max_backoff: retry.max_backoff,
                retry_topic_delays: defaults::RETRY_TIER_FACTORS
                    .map(|factor| retry.max_backoff * factor)
                    .to_vec(),
                instance_id: None,
                lag_threshold: None,
            },
        }
    }
}

impl<T: Consumable, H: Apply<T>> HandlerBuilder<T, H> {
    /// How many handler calls (messages, or batches in batch mode) run at once, across
    /// partitions and key lanes: KafkaFlow's worker count. A number is fixed (default
    /// [`defaults::HANDLER_CONCURRENCY`]); [`Concurrency::by_lag`] grows and shrinks the
    /// workers between a minimum and a maximum with the committed-offset lag (KafkaFlow's
    /// lag-based worker balancer).
    ///
    /// Order holds either way: one partition's (or, with
    /// [`key_concurrency`](Self::key_concurrency), one key's) messages run one after
    /// another on their lane, whatever the count; the workers only bound how many lanes
    /// run at once, so more workers than lanes (partitions × key lanes) stay idle. A
    /// shrink lets running calls finish. The current count is
    /// [`HandlerStats::concurrency`] and the `kafka_orm.handler.concurrency` gauge.
    ///
    /// ```no_run
    /// # use kafka_orm_runtime::{KafkaOrm, handler::Concurrency, topic::Consumable};
    /// # async fn run<Click: Consumable>(orm: KafkaOrm) -> kafka_orm_runtime::Result<()> {
    /// // 16 workers, always.
    /// let fixed = orm.topic::<Click>()
    ///     .handler_without_database(async |_click| Ok(()))
    ///     .key_concurrency(8)
    ///     .concurrency(16)
    ///     .spawn().await?;
    /// // 2 workers when idle, one more per 500 messages of lag, at most 32.
    /// let balanced = orm.topic::<Click>()
    ///     .handler_without_database(async |_click| Ok(()))
    ///     .key_concurrency(8)
    ///     .concurrency(Concurrency::by_lag(2..=32, 500))
    ///     .spawn().await?;
    /// # Ok(()) }
    /// ```
    pub fn concurrency(mut self, workers: impl Into<Concurrency>) -> Self {
        self.config.concurrency = workers.into();
        self
    }

    /// Within one partition, handle different keys concurrently in `lanes` lanes (one key
    /// always in one lane, so per-key order holds). Default 1: strict partition order.
    pub fn key_concurrency(mut self, lanes: u32) -> Self {
        self.config.key_lanes = lanes.max(1);
        self
    }

    /// Batch mode: up to `max` messages of one lane in one transaction, waiting at most
    /// `max_wait` to fill it. A failing batch is retried message by message, so one bad
    /// message cannot hold back the others.
    ///
    /// Raises [`HandlerBuilder::max_pending`] to at least 40 batches: pausing and resuming
    /// a partition every few batches costs more than it saves (measured with batches of
    /// 500: 8k msg/s at a limit of 1000, 60k at 4000, 87k–117k at 20000).
    pub fn batch(mut self, max: usize, max_wait: Duration) -> Self {
        let max = max.max(1);
        self.config.batch = Some((max, max_wait));
        self.config.max_pending = self.config.max_pending.max(max.saturating_mul(40));
        self
    }

    /// Pause a partition when this many of its messages wait or run (default 5000; at
    /// least 40 batches in batch mode); it resumes when half of them are done. This is the
    /// handler's buffer: KafkaFlow's `WithBufferSize(n)` buffers `n` messages per worker,
    /// this bounds the messages fetched ahead per partition (librdkafka's own prefetch,
    /// `queued.max.messages.kbytes` through `consumer_set`, comes on top).
    pub fn max_pending(mut self, n: usize) -> Self {
        self.config.max_pending = n.max(1);
        self
    }

    /// How long a revoke waits for in-flight handlers of the revoked partitions (default 10 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// How long [`RunningHandler::shutdown`] waits for in-flight handlers (default: the
    /// context's [`shutdown_timeout`](crate::KafkaOrmBuilder::shutdown_timeout),
    /// [`defaults::SHUTDOWN_TIMEOUT`]).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// What to do after the last attempt when the topic has no `dlq` (default: stop).
    pub fn on_exhausted(mut self, policy: OnExhausted) -> Self {
        self.config.on_exhausted = policy;
        self
    }

    /// What to do with a message whose type header names a type the topic does not carry
    /// (default [`OnUnknownType::DeadLetter`]: to the `dlq`, or stop without one). Such a
    /// message is never decoded as the wrong type; see [`crate::message_type`].
    pub fn on_unknown_type(mut self, policy: OnUnknownType) -> Self {
        self.config.on_unknown_type = policy;
        self
    }

    /// Attempts per message, the first one included: overrides the attribute's
    /// `retry(attempts = ..)` (default [`defaults::RETRY_ATTEMPTS`]).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.config.attempts = attempts.max(1);
        self
    }

    /// Backoff between attempts: `base * 2^(attempt-1)` capped at `max`, with jitter;
    /// overrides the attribute's `retry(backoff = .., max_backoff = ..)` (defaults
    /// [`defaults::RETRY_BACKOFF`], [`defaults::RETRY_MAX_BACKOFF`]).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff = base;
        self.config.max_backoff = max.max(base);
        self
    }

    /// Delays of the three retry tiers (`retry_topics`): a message whose in-place attempts
    /// failed goes to `<topic>.retry-1` and is tried again after the first delay, then
    /// `.retry-2`, `.retry-3`, then the dead-letter topic. Default: `max_backoff` × 1, 4, 16.
    pub fn retry_topic_delays(mut self, delays: [Duration; 3]) -> Self {
        self.config.retry_topic_delays = delays.to_vec();
        self
    }

    /// Adds a consume layer around this handler's invocations (see [`crate::middleware`]):
    /// inside the context's ([`consume_layer`](crate::KafkaOrmBuilder::consume_layer)) and
    /// the ones added before it, outside the handler. Each attempt at a message (or each
    /// batch) goes through it.
    ///
    /// ```text
    /// orm.topic::<OrderCreated>()
    ///     .handler(bill)
    ///     .layer(OnlyPaidOrders)        // may skip a message, or fail it into the retries
    ///     .spawn().await?;
    /// ```
    pub fn layer(mut self, layer: impl ConsumeLayer + 'static) -> Self {
        self.config.layers.push(layer);
        self
    }

    /// How often expired inbox rows are purged (default 10 min; the retention comes from
    /// `inbox(retention = ..)`).
    pub fn purge_interval(mut self, interval: Duration) -> Self {
        self.config.purge_interval = interval;
        self
    }

    /// A stable name for this handler process (e.g. the pod name), unique within the
    /// group: the consumer becomes a static member (`group.instance.id`), so a restart
    /// under the same name gets its partitions back without waiting for the session
    /// timeout or rebalancing the others, and the dead-letter producer's transactional id
    /// is stable, so the restart also fences its predecessor's unfinished forward at once.
    ///
    /// A static member that stops is not removed from the group until its session times
    /// out ([`defaults::SESSION_TIMEOUT`]): its partitions wait that long unless it comes
    /// back. Without a name (the default) a stopping handler hands its partitions over at
    /// once and a killed one after the session timeout.
    pub fn instance_id(mut self, name: impl Into<String>) -> Self {
        self.config.instance_id = Some(name.into());
        self
    }

    /// [`RunningHandler::health`] is degraded while a partition's committed-offset lag (as
    /// last sampled, every [`metrics_interval`](crate::KafkaOrmBuilder::metrics_interval))
    /// is above `messages` (default: no threshold).
    pub fn lag_threshold(mut self, messages: i64) -> Self {
        self.config.lag_threshold = Some(messages.max(0));
        self
    }

    /// Starts the handler in the background. A handler in a transaction needs the
    /// context's database ([`Error::NoDatabase`]); one without a database refuses a topic
    /// with an inbox ([`Error::Config`]).
    pub async fn spawn(self) -> Result<RunningHandler> {
        let orm = self.topic.orm().clone();
        let db = if H::DATABASE {
            Some(orm.database().cloned().ok_or(Error::NoDatabase {
                operation: "handler",
                topic: T::SPEC.name,
            })?)
        } else if T::SPEC.inbox.is_some() {
            return Err(Error::Config(format!(
                "topic `{}` has an inbox, which only a handler in a transaction uses:                  use `handler(..)` (or `handler_with` a `Handler`) and a database, or drop `inbox`",
                T::SPEC.name
            )));
        } else {
            None
        };
        let group = orm.group_for(T::SPEC, self.topic.explicit_group())?;
        let mut config = self.config;
        config.layers = orm.consume_layers().around(&config.layers);
        runner::start::<T, H>(orm, db, group, self.handler, config).await
    }

    /// Runs until `shutdown` completes, then shuts down gracefully; returns the final
    /// stats, or the error that stopped the handler.
    pub async fn run_until<S: Future<Output = ()>>(self, shutdown: S) -> Result<HandlerStats> {
        let running = self.spawn().await?;
        let stopped = running.stopped.clone();
        tokio::select! {
            _ = shutdown => {}
            _ = stopped.notified() => {}
        }
        running.shutdown().await
    }
}

/// The topic type this handler module is about, for the error messages.
pub(crate) fn type_name<T: Topic>() -> &'static str {
    T::SPEC.type_name
}
