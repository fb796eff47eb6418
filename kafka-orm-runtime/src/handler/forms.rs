//! Handlers written as functions: async closures and `async fn` items (nothing boxed; an
//! async closure may use what it captured without cloning it by hand), and the boxed
//! closures of earlier versions.
//!
//! Why a closure is cloned per attempt: the future an async closure returns when called
//! through `AsyncFn` borrows the closure, and stable Rust (1.95) cannot require that
//! future to be `Send` (that needs `AsyncFn::CallRefFuture` or return-type notation, both
//! unstable), which a handler running on tokio's worker threads must be. Called by value
//! (`FnOnce`) the future owns the closure's state and its type can be named, so each
//! attempt calls a clone: capture cheap clones (`Arc`, senders, connection pools), as an
//! axum handler does. A handler with state that should not be cloned is an
//! [`impl Handler`](Handler) on a struct, called by reference.

use std::future::Future;
use std::time::Duration;

use sea_orm::DatabaseTransaction;

use super::{
    BatchFuture, Handler, HandlerBuilder, HandlerError, HandlerFuture, HandlerWithoutDatabase,
    InTransaction, WithoutDatabase,
};
use crate::consumer::Delivery;
use crate::context::TopicHandle;
use crate::topic::Consumable;

/// A trait for functions of one shape returning a `Send` future of
/// `Result<(), HandlerError>`, and its blanket impl for every such function (the three
/// handler-function traits differ only in their arguments and their diagnostics).
macro_rules! handler_fn_trait {
    (
        $(#[$doc:meta])*
        $name:ident: FnOnce($($arg:ty),*),
        message = $message:tt, label = $label:tt, note = $note:tt $(,)?
    ) => {
        $(#[$doc])*
        #[diagnostic::on_unimplemented(message = $message, label = $label, note = $note)]
        pub trait $name<'a, T: 'a>: FnOnce($($arg),*) -> Self::Future {
            /// The future it returns.
            type Future: Future<Output = Result<(), HandlerError>> + Send + 'a;
        }

        impl<'a, T: 'a, F, Fut> $name<'a, T> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future<Output = Result<(), HandlerError>> + Send + 'a,
        {
            type Future = Fut;
        }
    };
}

handler_fn_trait! {
    /// A function that can be a handler: `FnOnce(&DatabaseTransaction, &Delivery<T>)` returning
    /// a `Send` future of `Result<(), HandlerError>`. Implemented for every such function, for
    /// every async closure and `async fn` of that shape; never implement it yourself.
    HandlerFn: FnOnce(&'a DatabaseTransaction, &'a Delivery<T>),
    message = "`{Self}` cannot be a handler of `{T}` in a transaction",
    label = "expected `async |txn, msg| -> Result<(), HandlerError>`",
    note = "a handler takes `(&DatabaseTransaction, &Delivery<{T}>)`, returns `Result<(), HandlerError>`, and its future must be `Send`: hold no `Rc`, `RefCell` borrow or `std::sync::MutexGuard` across an `.await`"
}

handler_fn_trait! {
    /// A function that can be a batch handler: like [`HandlerFn`], of a slice of deliveries.
    BatchHandlerFn: FnOnce(&'a DatabaseTransaction, &'a [&'a Delivery<T>]),
    message = "`{Self}` cannot be a batch handler of `{T}`",
    label = "expected `async |txn, msgs| -> Result<(), HandlerError>`",
    note = "a batch handler takes `(&DatabaseTransaction, &[&Delivery<{T}>])`, returns `Result<(), HandlerError>`, and its future must be `Send`"
}

handler_fn_trait! {
    /// A function that can be a handler without a database: `FnOnce(&Delivery<T>)` returning a
    /// `Send` future of `Result<(), HandlerError>`; never implement it yourself.
    HandlerWithoutDatabaseFn: FnOnce(&'a Delivery<T>),
    message = "`{Self}` cannot be a handler of `{T}` without a database",
    label = "expected `async |msg| -> Result<(), HandlerError>`",
    note = "a handler without a database takes `&Delivery<{T}>`, returns `Result<(), HandlerError>`, and its future must be `Send`"
}

/// A wrapper of a function as a [`Handler`], calling `$call(&self.0)` (a clone of an
/// async closure, or a reference to a boxed-future closure): of one message, or with
/// `batch`, of whole batches (one message is a batch of one).
macro_rules! fn_handler {
    ($(#[$attr:meta])* $name:ident, $call:expr, F: $($bound:tt)+) => {
        $(#[$attr])*
        pub struct $name<F>(F);

        impl<T, F> Handler<T> for $name<F>
        where
            T: 'static,
            F: $($bound)+,
        {
            fn handle<'a>(
                &'a self,
                txn: &'a DatabaseTransaction,
                msg: &'a Delivery<T>,
            ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
                $call(&self.0)(txn, msg)
            }
        }
    };
    (batch $(#[$attr:meta])* $name:ident, $call:expr, F: $($bound:tt)+) => {
        $(#[$attr])*
        pub struct $name<F>(F);

        impl<T, F> Handler<T> for $name<F>
        where
            T: Sync + 'static,
            F: $($bound)+,
        {
            async fn handle(
                &self,
                txn: &DatabaseTransaction,
                msg: &Delivery<T>,
            ) -> Result<(), HandlerError> {
                $call(&self.0)(txn, &[msg]).await
            }

            fn handle_batch<'a>(
                &'a self,
                txn: &'a DatabaseTransaction,
                msgs: &'a [&'a Delivery<T>],
            ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a
            where
                T: Sync,
            {
                $call(&self.0)(txn, msgs)
            }
        }
    };
}

fn_handler! {
    /// An async closure or `async fn` as a [`Handler`] (see [`TopicHandle::handler`]).
    #[derive(Debug, Clone)]
    AsyncFnHandler, F::clone,
    F: for<'a> HandlerFn<'a, T> + Clone + Send + Sync + 'static
}

fn_handler! {
    batch
    /// An async closure or `async fn` of whole batches as a [`Handler`] (see
    /// [`TopicHandle::batch_handler`]).
    #[derive(Debug, Clone)]
    AsyncFnBatchHandler, F::clone,
    F: for<'a> BatchHandlerFn<'a, T> + Clone + Send + Sync + 'static
}

fn_handler! {
    /// A boxed closure handler (see [`TopicHandle::handler_boxed`]).
    FnHandler, std::convert::identity,
    F: for<'a> Fn(&'a DatabaseTransaction, &'a Delivery<T>) -> HandlerFuture<'a>
        + Send
        + Sync
        + 'static
}

fn_handler! {
    batch
    /// A boxed closure handler of whole batches (see [`TopicHandle::batch_handler_boxed`]).
    FnBatchHandler, std::convert::identity,
    F: for<'a> Fn(&'a DatabaseTransaction, &'a [&'a Delivery<T>]) -> BatchFuture<'a>
        + Send
        + Sync
        + 'static
}

/// An async closure or `async fn` as a [`HandlerWithoutDatabase`] (see
/// [`TopicHandle::handler_without_database`]).
#[derive(Debug, Clone)]
pub struct AsyncFnWithoutDatabase<F>(F);

impl<T, F> HandlerWithoutDatabase<T> for AsyncFnWithoutDatabase<F>
where
    T: 'static,
    F: for<'a> HandlerWithoutDatabaseFn<'a, T> + Clone + Send + Sync + 'static,
{
    fn handle<'a>(
        &'a self,
        msg: &'a Delivery<T>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
        (self.0.clone())(msg)
    }
}

impl<T: Consumable> TopicHandle<T> {
    /// A handler from an async closure or an `async fn`: each message runs in a database
    /// transaction that also inserts its inbox row (topics with `inbox`), so it takes
    /// effect once.
    ///
    /// ```text
    /// orm.topic::<OrderCreated>().handler(async |txn, order| {
    ///     orders::ActiveModel { id: Set(order.order_id), ..Default::default() }.insert(txn).await?;
    ///     Ok(())
    /// })
    ///
    /// async fn bill(txn: &DatabaseTransaction, order: &Delivery<OrderCreated>) -> Result<(), HandlerError> { .. }
    /// orm.topic::<OrderCreated>().handler(bill)
    /// ```
    ///
    /// An `async move` closure uses what it captured as it is, with no clone written by
    /// hand: kafka-orm calls a clone of the closure for each attempt, so capture `Arc`s and
    /// other cheap clones (stable Rust cannot require the future of an `AsyncFn` call, which
    /// borrows the closure, to be `Send`; called by value, its future owns the clone). State
    /// that should not be cloned goes in an [`impl Handler`](Handler) passed to
    /// [`TopicHandle::handler_with`]; a closure returning a boxed future is
    /// [`TopicHandle::handler_boxed`].
    pub fn handler<F>(&self, f: F) -> HandlerBuilder<T, InTransaction<AsyncFnHandler<F>>>
    where
        F: for<'a> AsyncFnOnce(
                &'a DatabaseTransaction,
                &'a Delivery<T>,
            ) -> Result<(), HandlerError>
            + for<'a> HandlerFn<'a, T>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.handler_with(AsyncFnHandler(f))
    }

    /// A handler from a closure returning a boxed future, the form of earlier versions:
    /// `|txn, msg| Box::pin(async move { .. })`. Its captures need not be `Clone`; what the
    /// future uses is cloned into it by hand. Prefer [`TopicHandle::handler`].
    pub fn handler_boxed<F>(&self, f: F) -> HandlerBuilder<T, InTransaction<FnHandler<F>>>
    where
        F: for<'a> Fn(&'a DatabaseTransaction, &'a Delivery<T>) -> HandlerFuture<'a>
            + Send
            + Sync
            + 'static,
    {
        self.handler_with(FnHandler(f))
    }

    /// A handler of whole batches, in one transaction per batch (batch mode with up to
    /// `max` messages, waiting at most `max_wait` to fill one): the closure gets the
    /// messages the inbox has not seen, and can write them all with one statement.
    ///
    /// ```text
    /// orm.topic::<OrderCreated>().batch_handler(500, Duration::from_millis(20), async |txn, orders| {
    ///     invoices::Entity::insert_many(orders.iter().map(|o| invoice_of(o))).exec(txn).await?;
    ///     Ok(())
    /// })
    /// ```
    pub fn batch_handler<F>(
        &self,
        max: usize,
        max_wait: Duration,
        f: F,
    ) -> HandlerBuilder<T, InTransaction<AsyncFnBatchHandler<F>>>
    where
        F: for<'a> AsyncFnOnce(
                &'a DatabaseTransaction,
                &'a [&'a Delivery<T>],
            ) -> Result<(), HandlerError>
            + for<'a> BatchHandlerFn<'a, T>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.handler_with(AsyncFnBatchHandler(f))
            .batch(max, max_wait)
    }

    /// [`TopicHandle::batch_handler`] from a closure returning a boxed future:
    /// `|txn, msgs| Box::pin(async move { .. })`.
    pub fn batch_handler_boxed<F>(
        &self,
        max: usize,
        max_wait: Duration,
        f: F,
    ) -> HandlerBuilder<T, InTransaction<FnBatchHandler<F>>>
    where
        F: for<'a> Fn(&'a DatabaseTransaction, &'a [&'a Delivery<T>]) -> BatchFuture<'a>
            + Send
            + Sync
            + 'static,
    {
        self.handler_with(FnBatchHandler(f)).batch(max, max_wait)
    }

    /// A handler without a database, from an async closure or an `async fn`: no
    /// transaction, no inbox, and no database needed in the context; the same retries,
    /// retry topics, dead-letter topic, concurrency, per-partition (or per-key) order and
    /// watermark commits as [`TopicHandle::handler`]. At least once: a message can be
    /// handled again after a crash or a rebalance, so make its effect idempotent (or use
    /// the inbox and [`TopicHandle::handler`], which apply a database effect once).
    ///
    /// ```text
    /// orm.topic::<PageViewed>().handler_without_database(async move |view| {
    ///     counter.record(&view.page).await?;   // `counter` is captured, not cloned by hand
    ///     Ok(())
    /// })
    /// ```
    ///
    /// A topic with an inbox refuses it at [`spawn`](HandlerBuilder::spawn)
    /// ([`Error::Config`](crate::Error::Config)): its inbox only means something to a
    /// handler in a transaction.
    pub fn handler_without_database<F>(
        &self,
        f: F,
    ) -> HandlerBuilder<T, WithoutDatabase<AsyncFnWithoutDatabase<F>>>
    where
        F: for<'a> AsyncFnOnce(&'a Delivery<T>) -> Result<(), HandlerError>
            + for<'a> HandlerWithoutDatabaseFn<'a, T>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.handler_with(AsyncFnWithoutDatabase(f))
    }
}
