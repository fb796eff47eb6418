//! Middleware: your layers around handlers ([`ConsumeLayer`]) and around `produce` and
//! `publish` ([`ProduceLayer`]), KafkaFlow's `AddMiddlewares`, MassTransit's filters,
//! Spring Kafka's `RecordInterceptor` and Kafka's `ProducerInterceptor`.
//!
//! ```text
//! let orm = KafkaOrm::builder()
//!     .bootstrap_from_env()
//!     .consume_layer(Timed::default())        // every handler of the context
//!     .produce_layer(Tenant::from_env())      // every produce and publish
//!     .build().await?;
//!
//! orm.topic::<OrderCreated>()
//!     .handler(bill)
//!     .layer(OnlyPaidOrders)                  // this handler only, inside the context's
//!     .spawn().await?;
//! ```
//!
//! A layer is a struct implementing the trait with `async fn`, given the invocation's
//! context and the rest of the chain:
//!
//! | | consume | produce and publish |
//! |---|---|---|
//! | trait | [`ConsumeLayer::handle`]`(&self, ctx, next)` | [`ProduceLayer::produce`]`(&self, ctx, next)` |
//! | sees | [`ConsumeContext`]: group, and per [`Message`] topic, partition, offset, key, headers, message type, attempt, timestamp, the value (`value::<T>()`) | [`ProduceContext`]: [`ProduceKind`], topic, key, headers, payload and its size, message type, message id; after `next`, the [`DeliveryReport`](crate::producer::DeliveryReport) |
//! | may change | nothing of the delivery | headers ([`ProduceContext::headers_mut`]) |
//! | goes on | `next.run().await` → [`Consumed`] | `next.run(ctx).await` → `Result<()>` |
//! | short-circuits | `Ok(`[`Outcome::Skipped`]`)`: acknowledged unhandled; `Err(..)`: a failed attempt (retries, retry topics, dead-letter topic) | `Err(ctx.reject(..))`: the call fails with [`Error::Rejected`](crate::Error::Rejected), nothing is sent or written |
//! | registered | [`KafkaOrmBuilder::consume_layer`](crate::KafkaOrmBuilder::consume_layer), [`HandlerBuilder::layer`](crate::handler::HandlerBuilder::layer) | [`KafkaOrmBuilder::produce_layer`](crate::KafkaOrmBuilder::produce_layer) |
//!
//! # Order
//!
//! Layers run outermost first, as an onion: the first registered is entered first and left
//! last. Around a handler:
//!
//! ```text
//! kafka_orm.handle span + handler metrics     built in, always outermost
//!   context layers                             consume_layer(..), in the order added
//!     handler layers                           .layer(..), in the order added
//!       the handler's attempt                  begin, inbox row, handler, commit
//! ```
//!
//! So the built-in span is open while your layers run (their events are inside it and the
//! trace the message carries), and the handler's metrics (`messaging.process.duration`,
//! `kafka_orm.handler.*`) include your layers' time. A consume layer runs around each
//! **attempt**: a message retried three times passes through it three times
//! ([`Message::attempt`] counts); the retry backoff, the retry topics and the dead-letter
//! forward are outside the chain, so an error a layer returns takes the same road as a
//! handler's. In batch mode a layer runs around the whole batch
//! ([`ConsumeContext::is_batch`]); a batch that fails is handled message by message, each
//! through the layers again. With a database a layer runs outside the transaction: it sees
//! [`Outcome::Duplicate`] when the inbox had the message, and a short-circuit begins no
//! transaction at all.
//!
//! Produce layers run in the order added around every `produce`, `produce_with_headers`,
//! `produce_all` (each message on its own) and `publish`, `publish_with_headers`,
//! `publish_all` (each row on its own), inside the `kafka_orm.publish` span of a publish,
//! before the `kafka_orm.produce` span of a send (which writes the trace context into the
//! headers). A publish's layers run at publish time, inside the caller's transaction: the
//! headers they add are stored in the outbox row and the relay sends them as stored; the
//! relay, the dead-letter and retry-topic forwards and transactional pipelines' outputs run
//! no layers (a header added at publish must not be added twice, and a forward carries the
//! original record).
//!
//! Streams from [`TopicHandle::consume`](crate::TopicHandle::consume) run no consume
//! layers: there is no handler invocation to wrap; the stream's reader is its own loop.
//!
//! # Why not tower
//!
//! tower's `Layer`/`Service` is the Rust shape for middleware, and this follows it (a
//! layer wraps the rest of the chain and may call it or not), but not its types:
//!
//! - `Service::call(&mut self, req)` returns a future that owns what it needs
//!   (`'static` in practice), while a handler invocation borrows: the delivery, and with a
//!   database the transaction, live on the lane's stack for the attempt. A `Service` over
//!   them would need them cloned or reference-counted for each message.
//! - `poll_ready` (backpressure per service) has nothing to do here: the handler's
//!   concurrency, lanes and partition pauses are the backpressure.
//! - `Service` is generic over the request, so one layer for every topic of a context
//!   would need a request type erased anyway, which is what [`ConsumeContext`] is; and a
//!   tower stack's type grows with every layer, while layers registered on the context are
//!   only known at run time.
//! - It would add `tower`'s traits to the public API of a crate that has none of its
//!   services.
//!
//! So a layer is a small trait in the style of KafkaFlow's `Invoke(context, next)`:
//! `async fn` in the impl, the context borrowed, [`Next`] the rest of the chain.
//!
//! # What it costs
//!
//! With no layer registered, nothing is boxed or allocated per message: the built-in
//! layer is called directly (a generic call, not through a pointer), the handler's
//! attempt is pinned on the stack and awaited through [`Next`] (a pointer to a pinned
//! future: one indirect poll), and the [`ConsumeContext`] of a single message is a few
//! references. `produce` and `publish` check that the list is empty and take the path they
//! took before. Each registered layer costs one boxed future per invocation (a layer
//! behind a pointer cannot return an unnamed future otherwise), and `produce` with layers
//! clones the headers once. In batch mode the context is a `Vec` of the batch's views
//! (one allocation per batch, not per message).

mod consume;
mod produce;

pub(crate) use consume::ConsumeLayers;
pub use consume::{
    ConsumeContext, ConsumeLayer, Consumed, DatabaseUnavailable, Message, Next, Outcome,
};
pub(crate) use produce::ProduceLayers;
pub use produce::{ProduceContext, ProduceKind, ProduceLayer, ProduceNext};

#[cfg(test)]
mod tests;
