//! Consume layers: [`ConsumeLayer`] around every handler invocation, what it sees
//! ([`ConsumeContext`], [`Message`]), how it passes on ([`Next`]) and what comes back
//! ([`Consumed`], [`Outcome`]).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::consumer::Delivery;
use crate::error::{Error, HandlerError};
use crate::producer::{Headers, MESSAGE_ID_HEADER};
use crate::topic::Topic;

/// What one handler invocation came to, as a layer sees it: how it ended, or the error
/// (the handler's, a layer's, or [`DatabaseUnavailable`]) that sends the message through
/// the retries, the retry topics and the dead-letter topic.
pub type Consumed = Result<Outcome, HandlerError>;

/// How a handler invocation ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler ran and (with a database) its transaction committed.
    Handled,
    /// The inbox had the message already: the handler did not run.
    Duplicate,
    /// A batch (batch mode) went through: `handled` messages were handled in one
    /// transaction, `duplicates` were skipped by the inbox.
    Batch {
        /// Handled.
        handled: u64,
        /// Skipped as duplicates.
        duplicates: u64,
    },
    /// A layer returned it without calling [`Next::run`]: the handler did not run, and the
    /// message counts as finished (its offset is committed), as a filter wants.
    Skipped,
}

/// A database failure outside the handler (beginning the transaction, the inbox row, the
/// commit), as a layer's [`Consumed`] carries it: returned as it came, it is retried with
/// backoff without using up the message's attempts (a message is dead-lettered for what the
/// handler did, never because the database was down). A layer that wraps it in an error of
/// its own makes it an ordinary failure.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseUnavailable(pub Error);

/// Middleware around every handler invocation: KafkaFlow's `IMessageMiddleware`,
/// MassTransit's consume filter, Spring Kafka's `RecordInterceptor`.
///
/// `handle` gets the invocation's [`ConsumeContext`] (the delivery: topic, partition,
/// offset, key, headers, message type, attempt) and [`Next`], the rest of the chain.
/// Await `next.run()` to go on (the next layer, at the end the handler with its
/// transaction and inbox row) and read what came back; return without calling it to
/// short-circuit: `Ok(Outcome::Skipped)` acknowledges the message without handling it, an
/// `Err` is a failed attempt like a handler's error (retried, then to a retry topic or the
/// dead-letter topic).
///
/// ```
/// use std::time::Instant;
/// use kafka_orm_runtime::middleware::{ConsumeContext, ConsumeLayer, Consumed, Next, Outcome};
///
/// /// Logs each invocation with its duration; drops test traffic unhandled.
/// struct Timed;
///
/// impl ConsumeLayer for Timed {
///     async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
///         let msg = ctx.message();
///         if msg.headers().get_str("x-test") == Some("1") {
///             return Ok(Outcome::Skipped);
///         }
///         let started = Instant::now();
///         let result = next.run().await;
///         println!(
///             "{}[{}]@{} {} attempt {}: {:?} in {:?}",
///             msg.topic(), msg.partition(), msg.offset(), msg.message_type(),
///             msg.attempt(), result, started.elapsed()
///         );
///         result
///     }
/// }
/// ```
///
/// Register it for every handler of a context with
/// [`KafkaOrmBuilder::consume_layer`](crate::KafkaOrmBuilder::consume_layer), or for one
/// handler with [`HandlerBuilder::layer`](crate::handler::HandlerBuilder::layer); see
/// [the module docs](super) for the order. The layer is shared by every lane of the
/// handler (`&self`): keep its state in atomics, `Mutex`es or channels.
pub trait ConsumeLayer: Send + Sync {
    /// Runs around one handler invocation: one attempt at one message, or one batch.
    fn handle<'a>(
        &'a self,
        ctx: &'a ConsumeContext<'a>,
        next: Next<'a>,
    ) -> impl Future<Output = Consumed> + Send + 'a;
}

/// One delivery as a layer sees it, whatever the topic's type.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    headers: &'a Headers,
    timestamp_ms: Option<i64>,
    attempt: u32,
    message_type: &'static str,
    value: &'a (dyn Any + Send + Sync),
}

impl<'a> Message<'a> {
    pub(crate) fn of<T: Topic>(d: &'a Delivery<T>) -> Self {
        Message {
            topic: &d.topic,
            partition: d.partition,
            offset: d.offset,
            key: d.key.as_deref(),
            headers: &d.headers,
            timestamp_ms: d.timestamp_ms,
            attempt: d.attempt,
            message_type: d.value.message_type(),
            value: &d.value,
        }
    }

    /// The topic it came from (of the topic or one of its retry topics).
    pub fn topic(&self) -> &'a str {
        self.topic
    }
    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }
    /// Its offset in the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }
    /// The raw message key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }
    /// The message headers.
    pub fn headers(&self) -> &'a Headers {
        self.headers
    }
    /// The kafka-orm message id, when a kafka-orm producer sent it.
    pub fn message_id(&self) -> Option<&'a str> {
        self.headers.get_str(MESSAGE_ID_HEADER)
    }
    /// The broker's timestamp in milliseconds since the epoch, when it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
    /// Which attempt this is (1 on first delivery; retries count up).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The stable name of the decoded value's message type (`OrderCreated`, or its
    /// `type_name = ".."`; for a topic enum, the member's).
    pub fn message_type(&self) -> &'static str {
        self.message_type
    }
    /// The decoded value, when it is a `T` (the topic's type: a struct, or a topic enum).
    pub fn value<T: 'static>(&self) -> Option<&'a T> {
        self.value.downcast_ref()
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("message_type", &self.message_type)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A shared layer: register an `Arc` and keep a clone to read the layer's state.
impl<L: ConsumeLayer> ConsumeLayer for Arc<L> {
    fn handle<'a>(
        &'a self,
        ctx: &'a ConsumeContext<'a>,
        next: Next<'a>,
    ) -> impl Future<Output = Consumed> + Send + 'a {
        (**self).handle(ctx, next)
    }
}

/// One handler invocation as a layer sees it: the consumer group and the message (or, in
/// batch mode, the messages).
#[derive(Debug)]
pub struct ConsumeContext<'a> {
    group: &'a str,
    messages: Messages<'a>,
}

#[derive(Debug)]
enum Messages<'a> {
    One(Message<'a>),
    Batch(Vec<Message<'a>>),
}

impl<'a> ConsumeContext<'a> {
    /// One attempt at one delivery.
    pub(crate) fn one<T: Topic>(group: &'a str, d: &'a Delivery<T>) -> Self {
        ConsumeContext {
            group,
            messages: Messages::One(Message::of(d)),
        }
    }

    /// One batch (never empty).
    pub(crate) fn batch<T: Topic>(group: &'a str, ds: &[&'a Delivery<T>]) -> Self {
        ConsumeContext {
            group,
            messages: Messages::Batch(ds.iter().map(|d| Message::of(*d)).collect()),
        }
    }

    /// The consumer group (with the context's namespace).
    pub fn group(&self) -> &'a str {
        self.group
    }

    /// The message; in batch mode, the batch's first.
    pub fn message(&self) -> &Message<'a> {
        &self.messages()[0]
    }

    /// The messages of this invocation: one, or a batch's in order.
    pub fn messages(&self) -> &[Message<'a>] {
        match &self.messages {
            Messages::One(m) => std::slice::from_ref(m),
            Messages::Batch(ms) => ms,
        }
    }

    /// Whether this is a batch handler's invocation (batch mode with more than one
    /// message); a failed batch is then handled message by message, each through the
    /// layers again.
    pub fn is_batch(&self) -> bool {
        matches!(self.messages, Messages::Batch(_))
    }
}

/// The rest of the chain after a layer: the next layer, and at the end the handler.
///
/// Consumed by [`Next::run`], so it runs at most once; a layer that drops it instead
/// short-circuits.
pub struct Next<'a> {
    layers: &'a [Arc<dyn DynConsumeLayer>],
    ctx: &'a ConsumeContext<'a>,
    end: Pin<&'a mut (dyn Future<Output = Consumed> + Send + 'a)>,
}

impl<'a> Next<'a> {
    /// The chain from `layers` on, ending in `end` (the handler's invocation, created but
    /// not polled: futures do nothing until awaited, so a short-circuit drops it unrun).
    pub(crate) fn new(
        layers: &'a [Arc<dyn DynConsumeLayer>],
        ctx: &'a ConsumeContext<'a>,
        end: Pin<&'a mut (dyn Future<Output = Consumed> + Send + 'a)>,
    ) -> Self {
        Next { layers, ctx, end }
    }

    /// Runs the rest of the chain and returns what it came to.
    pub async fn run(self) -> Consumed {
        match self.layers.split_first() {
            None => self.end.await,
            Some((first, rest)) => {
                let next = Next {
                    layers: rest,
                    ctx: self.ctx,
                    end: self.end,
                };
                first.handle_boxed(self.ctx, next).await
            }
        }
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("layers_left", &self.layers.len())
            .finish_non_exhaustive()
    }
}

/// A [`ConsumeLayer`] behind a pointer: its future boxed (only registered layers are
/// called this way; the built-in one is called directly).
pub(crate) trait DynConsumeLayer: Send + Sync {
    fn handle_boxed<'a>(
        &'a self,
        ctx: &'a ConsumeContext<'a>,
        next: Next<'a>,
    ) -> Pin<Box<dyn Future<Output = Consumed> + Send + 'a>>;
}

impl<L: ConsumeLayer> DynConsumeLayer for L {
    fn handle_boxed<'a>(
        &'a self,
        ctx: &'a ConsumeContext<'a>,
        next: Next<'a>,
    ) -> Pin<Box<dyn Future<Output = Consumed> + Send + 'a>> {
        Box::pin(self.handle(ctx, next))
    }
}

/// Registered consume layers, outermost first.
#[derive(Clone, Default)]
pub(crate) struct ConsumeLayers(Vec<Arc<dyn DynConsumeLayer>>);

impl ConsumeLayers {
    /// Adds `layer` inside the ones added before.
    pub fn push(&mut self, layer: impl ConsumeLayer + 'static) {
        self.0.push(Arc::new(layer));
    }

    /// These layers outside `inner`'s.
    pub fn around(&self, inner: &ConsumeLayers) -> ConsumeLayers {
        ConsumeLayers(self.0.iter().chain(&inner.0).cloned().collect())
    }

    pub fn as_slice(&self) -> &[Arc<dyn DynConsumeLayer>] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for ConsumeLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} consume layer(s)", self.0.len())
    }
}
