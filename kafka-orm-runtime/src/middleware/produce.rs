//! Produce layers: [`ProduceLayer`] around `produce` and `publish`, what it sees and may
//! change ([`ProduceContext`]), and how it passes on ([`ProduceNext`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;

use crate::error::{Error, Result};
use crate::producer::{self, DeliveryReport, Headers, MESSAGE_ID_HEADER, Outgoing, TYPE_HEADER};

/// A boxed future of a produce layer or of the end of the chain.
type BoxFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Which call a [`ProduceContext`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProduceKind {
    /// `produce`, `produce_with_headers`, `produce_all`: sent to Kafka now;
    /// [`ProduceContext::report`] is set once the broker acknowledged it.
    Produce,
    /// `publish`, `publish_with_headers`, `publish_all`: written into the outbox inside
    /// the caller's transaction (the relay sends it as written, without running layers).
    Publish,
}

/// Middleware around `produce` and `publish`: KafkaFlow's producer middleware,
/// MassTransit's send and publish filters, Kafka's `ProducerInterceptor`.
///
/// `produce` gets the encoded message ([`ProduceContext`]: topic, key, headers, payload
/// size, message type) before it is sent or written, may add headers
/// ([`ProduceContext::headers_mut`]), and goes on with `next.run(ctx).await`; returning
/// an error instead (e.g. [`ProduceContext::reject`], [`Error::Rejected`]) fails the call
/// with that error and nothing is sent or written.
///
/// ```
/// use kafka_orm_runtime::Result;
/// use kafka_orm_runtime::middleware::{ProduceContext, ProduceLayer, ProduceNext};
///
/// /// Stamps the tenant on every message; refuses to send without one.
/// struct Tenant(Option<String>);
///
/// impl ProduceLayer for Tenant {
///     async fn produce(&self, ctx: &mut ProduceContext, next: ProduceNext<'_>) -> Result<()> {
///         let Some(tenant) = &self.0 else {
///             return Err(ctx.reject("no tenant: refusing to send"));
///         };
///         ctx.headers_mut().insert("x-tenant", tenant.as_str());
///         next.run(ctx).await
///     }
/// }
/// ```
///
/// With [`ProduceKind::Produce`], `next.run` returns once the broker acknowledged the
/// message (so a layer can time the send and read [`ProduceContext::report`]); with
/// [`ProduceKind::Publish`], once the row is accepted: it is inserted right after the
/// layers, with the call's other rows in one statement, inside the caller's transaction.
/// Register it with [`KafkaOrmBuilder::produce_layer`](crate::KafkaOrmBuilder::produce_layer).
pub trait ProduceLayer: Send + Sync {
    /// Runs around producing or publishing one message.
    fn produce<'a>(
        &'a self,
        ctx: &'a mut ProduceContext,
        next: ProduceNext<'a>,
    ) -> impl Future<Output = Result<()>> + Send + 'a;
}

/// A shared layer: register an `Arc` and keep a clone to read the layer's state.
impl<L: ProduceLayer> ProduceLayer for Arc<L> {
    fn produce<'a>(
        &'a self,
        ctx: &'a mut ProduceContext,
        next: ProduceNext<'a>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        (**self).produce(ctx, next)
    }
}

/// One message on its way out, as a [`ProduceLayer`] sees it.
pub struct ProduceContext {
    kind: ProduceKind,
    topic: String,
    message_type: &'static str,
    msg: Outgoing,
    report: Option<DeliveryReport>,
    /// Whether the chain reached its end (no layer short-circuited it with `Ok`).
    reached: bool,
}

impl ProduceContext {
    /// Produce or publish.
    pub fn kind(&self) -> ProduceKind {
        self.kind
    }
    /// The Kafka topic (with the context's namespace).
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The stable name of the message's type (`OrderCreated`, or its `type_name = ".."`).
    pub fn message_type(&self) -> &'static str {
        self.message_type
    }
    /// The message key, from the key fields.
    pub fn key(&self) -> Option<&[u8]> {
        self.msg.key.as_deref()
    }
    /// The encoded payload.
    pub fn payload(&self) -> &[u8] {
        &self.msg.payload
    }
    /// The payload's size in bytes.
    pub fn payload_len(&self) -> usize {
        self.msg.payload.len()
    }
    /// The headers it will carry: the caller's, the message id's and the type's.
    pub fn headers(&self) -> &Headers {
        &self.msg.headers
    }
    /// The headers, to add to (e.g. a tenant id). The message-id and type headers are
    /// kafka-orm's: they are set again after the layers, whatever a layer did to them.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.msg.headers
    }
    /// The message id it carries in the [`MESSAGE_ID_HEADER`].
    pub fn message_id(&self) -> &str {
        &self.msg.message_id
    }
    /// Where the broker stored it: set after `next.run` of a [`ProduceKind::Produce`]
    /// returned `Ok`.
    pub fn report(&self) -> Option<&DeliveryReport> {
        self.report.as_ref()
    }
    /// The error a layer returns to refuse this message: [`Error::Rejected`] with its
    /// topic and type.
    pub fn reject(&self, reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Rejected {
            topic: self.topic.clone(),
            message_type: self.message_type,
            reason: reason.into(),
        }
    }

    /// kafka-orm's own headers, as encoding set them.
    fn restamp(&mut self) {
        self.reached = true;
        let headers = &mut self.msg.headers;
        headers.remove(MESSAGE_ID_HEADER);
        headers.insert(MESSAGE_ID_HEADER, self.msg.message_id.as_str());
        headers.remove(TYPE_HEADER);
        headers.insert(TYPE_HEADER, self.message_type);
    }
}

impl fmt::Debug for ProduceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProduceContext")
            .field("kind", &self.kind)
            .field("topic", &self.topic)
            .field("message_type", &self.message_type)
            .field("message_id", &self.msg.message_id)
            .field("payload_len", &self.payload_len())
            .field("headers", &self.msg.headers)
            .finish_non_exhaustive()
    }
}

/// The rest of the chain after a produce layer: the next layer, and at the end the send
/// (or, for a publish, the row). Consumed by [`ProduceNext::run`], so it runs at most once.
pub struct ProduceNext<'a> {
    layers: &'a [Arc<dyn DynProduceLayer>],
    end: &'a (dyn End + 'a),
}

impl<'a> ProduceNext<'a> {
    /// Runs the rest of the chain on `ctx`.
    pub fn run<'b>(
        self,
        ctx: &'b mut ProduceContext,
    ) -> impl Future<Output = Result<()>> + Send + 'b
    where
        'a: 'b,
    {
        match self.layers.split_first() {
            None => self.end.call(ctx),
            Some((first, rest)) => first.produce_boxed(
                ctx,
                ProduceNext {
                    layers: rest,
                    end: self.end,
                },
            ),
        }
    }
}

impl fmt::Debug for ProduceNext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProduceNext")
            .field("layers_left", &self.layers.len())
            .finish_non_exhaustive()
    }
}

/// The end of a produce chain.
pub(crate) trait End: Send + Sync {
    fn call<'b>(&'b self, ctx: &'b mut ProduceContext) -> BoxFuture<'b>;
}

/// Sends the message and waits for the broker (`produce`).
struct Send_<'p> {
    producer: &'p FutureProducer,
    timeout: Duration,
}

impl End for Send_<'_> {
    fn call<'b>(&'b self, ctx: &'b mut ProduceContext) -> BoxFuture<'b> {
        Box::pin(async move {
            ctx.restamp();
            let msg = &ctx.msg;
            let (partition, offset) = producer::send_parts(
                self.producer,
                &ctx.topic,
                msg.key.as_deref(),
                &msg.payload,
                msg.headers.clone(),
                &msg.message_id,
                self.timeout,
            )
            .await?;
            ctx.report = Some(DeliveryReport {
                topic: ctx.topic.clone(),
                partition,
                offset,
                message_id: ctx.msg.message_id.clone(),
            });
            Ok(())
        })
    }
}

/// Accepts the row (`publish`): it is inserted after the chain.
struct Accept;

impl End for Accept {
    fn call<'b>(&'b self, ctx: &'b mut ProduceContext) -> BoxFuture<'b> {
        ctx.restamp();
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A [`ProduceLayer`] behind a pointer, its future boxed.
pub(crate) trait DynProduceLayer: Send + Sync {
    fn produce_boxed<'a>(
        &'a self,
        ctx: &'a mut ProduceContext,
        next: ProduceNext<'a>,
    ) -> BoxFuture<'a>;
}

impl<L: ProduceLayer> DynProduceLayer for L {
    fn produce_boxed<'a>(
        &'a self,
        ctx: &'a mut ProduceContext,
        next: ProduceNext<'a>,
    ) -> BoxFuture<'a> {
        Box::pin(self.produce(ctx, next))
    }
}

/// Registered produce layers, outermost first.
#[derive(Clone, Default)]
pub(crate) struct ProduceLayers(Vec<Arc<dyn DynProduceLayer>>);

impl ProduceLayers {
    /// Adds `layer` inside the ones added before.
    pub fn push(&mut self, layer: impl ProduceLayer + 'static) {
        self.0.push(Arc::new(layer));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sends `msg` to `topic` through the layers; the broker's report.
    pub async fn send(
        &self,
        producer: &FutureProducer,
        topic: String,
        message_type: &'static str,
        msg: Outgoing,
        timeout: Duration,
    ) -> Result<DeliveryReport> {
        let end = Send_ { producer, timeout };
        let mut ctx = self
            .through(ProduceKind::Produce, topic, message_type, msg, &end)
            .await?;
        ctx.report.take().ok_or(Error::Shutdown) // set by `Send_` once reached
    }

    /// Runs a row to be published to `topic` through the layers; the message to write.
    pub async fn publish(
        &self,
        topic: String,
        message_type: &'static str,
        msg: Outgoing,
    ) -> Result<Outgoing> {
        let ctx = self
            .through(ProduceKind::Publish, topic, message_type, msg, &Accept)
            .await?;
        Ok(ctx.msg)
    }

    async fn through(
        &self,
        kind: ProduceKind,
        topic: String,
        message_type: &'static str,
        msg: Outgoing,
        end: &(dyn End + '_),
    ) -> Result<ProduceContext> {
        let mut ctx = ProduceContext {
            kind,
            topic,
            message_type,
            msg,
            report: None,
            reached: false,
        };
        let next = ProduceNext {
            layers: &self.0,
            end,
        };
        next.run(&mut ctx).await?;
        if !ctx.reached {
            return Err(ctx.reject(
                "a produce layer returned `Ok` without calling `next.run`: nothing was sent or written",
            ));
        }
        Ok(ctx)
    }
}

impl fmt::Debug for ProduceLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} produce layer(s)", self.0.len())
    }
}
