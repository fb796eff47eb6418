//! What a handler is: [`Handler`] applies a message in a database transaction (with the
//! inbox, once), [`HandlerWithoutDatabase`] applies it without one (at least once). Both
//! are implemented with `async fn`; closures and `async fn` items get them through
//! [`super::forms`].

use std::future::Future;
use std::pin::Pin;

use sea_orm::DatabaseTransaction;

use crate::consumer::Delivery;

pub use crate::error::HandlerError;

/// A boxed handler future borrowing the transaction and the delivery (the
/// [`handler_boxed`](crate::TopicHandle::handler_boxed) form).
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A boxed batch-handler future borrowing the transaction and the deliveries.
pub type BatchFuture<'a> = HandlerFuture<'a>;

/// Applies one message inside a database transaction; with the topic's inbox, once.
///
/// Implement it with `async fn` on a struct that holds the handler's state, and pass it to
/// [`TopicHandle::handler_with`](crate::TopicHandle::handler_with); nothing is boxed or
/// cloned per message:
///
/// ```text
/// struct Billing { rates: Arc<Rates> }
///
/// impl Handler<OrderCreated> for Billing {
///     async fn handle(&self, txn: &DatabaseTransaction, order: &Delivery<OrderCreated>) -> Result<(), HandlerError> {
///         invoice(&self.rates, order).insert(txn).await?;
///         Ok(())
///     }
/// }
///
/// orm.topic::<OrderCreated>().handler_with(Billing { rates }).spawn().await?;
/// ```
pub trait Handler<T>: Send + Sync + 'static {
    /// Applies `msg` using `txn`; an error rolls the transaction back and retries.
    fn handle<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msg: &'a Delivery<T>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Applies a batch (batch mode: the messages not seen before, in order) in one
    /// transaction. The default calls [`Handler::handle`] for each; override it to write
    /// the whole batch with one statement. An error rolls the batch back, and its messages
    /// are then handled one by one.
    fn handle_batch<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msgs: &'a [&'a Delivery<T>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a
    where
        T: Sync,
    {
        in_order(msgs, move |msg| self.handle(txn, msg))
    }
}

/// Applies one message without a database (KafkaFlow's `IMessageHandler<T>`, a Spring
/// `@KafkaListener`): at least once, with the same retries, retry topics, dead-letter
/// topic, concurrency, order and watermark commits as a [`Handler`].
///
/// A message can be handled again after a crash or a rebalance (its offset is committed
/// after the handler returned, not with its effect): make the effect idempotent, or use a
/// [`Handler`] with the topic's inbox, which applies a database effect once. Pass it to
/// [`TopicHandle::handler_with`](crate::TopicHandle::handler_with); a closure goes to
/// [`TopicHandle::handler_without_database`](crate::TopicHandle::handler_without_database).
pub trait HandlerWithoutDatabase<T>: Send + Sync + 'static {
    /// Handles `msg`; an error retries it (then forwards it to a retry tier or the
    /// dead-letter topic, as configured).
    fn handle<'a>(
        &'a self,
        msg: &'a Delivery<T>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Handles a batch (batch mode). The default calls
    /// [`HandlerWithoutDatabase::handle`] for each; an error hands the batch's messages
    /// to [`HandlerWithoutDatabase::handle`] one by one (so its earlier messages run
    /// again).
    fn handle_batch<'a>(
        &'a self,
        msgs: &'a [&'a Delivery<T>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a
    where
        T: Sync,
    {
        in_order(msgs, move |msg| self.handle(msg))
    }
}

/// The default batch: `handle` for each message in order, stopping at the first error.
async fn in_order<'a, T, F, Fut>(
    msgs: &'a [&'a Delivery<T>],
    mut handle: F,
) -> Result<(), HandlerError>
where
    F: FnMut(&'a Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    for msg in msgs {
        handle(msg).await?;
    }
    Ok(())
}
