//! Typed handlers per message type of a topic enum: [`Routes`] (in a database transaction)
//! and [`RoutesWithoutDatabase`], KafkaFlow's `AddTypedHandlers`.

use std::marker::PhantomData;

use sea_orm::DatabaseTransaction;

use super::{
    Handler, HandlerError, HandlerFn, HandlerFuture, HandlerWithoutDatabase,
    HandlerWithoutDatabaseFn,
};
use crate::consumer::Delivery;
use crate::message_type::Member;
use crate::topic::Topic;

/// The routes of a topic enum `E`'s message types to handlers in a database transaction:
/// a [`Handler<E>`](Handler) for [`TopicHandle::handler_with`](crate::TopicHandle::handler_with),
/// KafkaFlow's `AddTypedHandlers`.
///
/// ```text
/// let handler = orm.topic::<OrderEvent>()
///     .handler_with(Routes::new()
///         .on::<OrderCreated>(async |txn, created| { .. })
///         .on::<OrderPaid>(async |txn, paid| { .. }))
///     .spawn().await?;
/// ```
///
/// One handler, so one consumer in one group, reads the topic; each message goes to the
/// route of its type, which gets a [`Delivery`] of that struct (a clone of it: a `match`
/// on the enum in one handler avoids the clone, and has the compiler check that every type
/// is handled). `.on::<T>` compiles only for a `T` the enum holds ([`Member`]). A type
/// without a route is acknowledged without a call (logged at debug level); a type with
/// several routes runs them in the order they were added, in one transaction.
pub struct Routes<E> {
    routes: Vec<(&'static str, Box<dyn InTransaction<E>>)>,
}

/// The routes of a topic enum `E`'s message types to handlers without a database: a
/// [`HandlerWithoutDatabase<E>`](HandlerWithoutDatabase), otherwise as [`Routes`].
pub struct RoutesWithoutDatabase<E> {
    routes: Vec<(&'static str, Box<dyn WithoutDatabase<E>>)>,
}

impl<E: Topic> Routes<E> {
    /// No routes yet.
    pub fn new() -> Self {
        Routes { routes: Vec::new() }
    }

    /// Routes messages of type `M` to an async closure or `async fn` taking the
    /// transaction and a `Delivery<M>` (as [`TopicHandle::handler`](crate::TopicHandle::handler)).
    pub fn on<M: Member<E> + Clone>(
        self,
        handler: impl for<'a> AsyncFnOnce(
            &'a DatabaseTransaction,
            &'a Delivery<M>,
        ) -> Result<(), HandlerError>
        + for<'a> HandlerFn<'a, M>
        + Clone
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.route::<M>(Closure(handler, PhantomData::<fn() -> M>))
    }

    /// Routes messages of type `M` to a struct implementing [`Handler<M>`](Handler).
    pub fn on_with<M: Member<E> + Clone>(self, handler: impl Handler<M>) -> Self {
        self.route::<M>(Struct(handler, PhantomData::<fn() -> M>))
    }

    fn route<M: Member<E>>(mut self, route: impl InTransaction<E> + 'static) -> Self {
        self.routes.push((M::TYPE_NAME, Box::new(route)));
        self
    }
}

impl<E: Topic> RoutesWithoutDatabase<E> {
    /// No routes yet.
    pub fn new() -> Self {
        RoutesWithoutDatabase { routes: Vec::new() }
    }

    /// Routes messages of type `M` to an async closure or `async fn` taking a `Delivery<M>`
    /// (as [`TopicHandle::handler_without_database`](crate::TopicHandle::handler_without_database)).
    pub fn on<M: Member<E> + Clone>(
        self,
        handler: impl for<'a> AsyncFnOnce(&'a Delivery<M>) -> Result<(), HandlerError>
        + for<'a> HandlerWithoutDatabaseFn<'a, M>
        + Clone
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.route::<M>(Closure(handler, PhantomData::<fn() -> M>))
    }

    /// Routes messages of type `M` to a struct implementing
    /// [`HandlerWithoutDatabase<M>`](HandlerWithoutDatabase).
    pub fn on_with<M: Member<E> + Clone>(self, handler: impl HandlerWithoutDatabase<M>) -> Self {
        self.route::<M>(Struct(handler, PhantomData::<fn() -> M>))
    }

    fn route<M: Member<E>>(mut self, route: impl WithoutDatabase<E> + 'static) -> Self {
        self.routes.push((M::TYPE_NAME, Box::new(route)));
        self
    }
}

impl<E: Topic> Default for Routes<E> {
    fn default() -> Self {
        Routes::new()
    }
}

impl<E: Topic> Default for RoutesWithoutDatabase<E> {
    fn default() -> Self {
        RoutesWithoutDatabase::new()
    }
}

impl<E: Topic> Handler<E> for Routes<E> {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        msg: &Delivery<E>,
    ) -> Result<(), HandlerError> {
        let routes = routes_of(&self.routes, msg);
        for route in routes {
            route.handle(txn, msg).await?;
        }
        Ok(())
    }
}

impl<E: Topic> HandlerWithoutDatabase<E> for RoutesWithoutDatabase<E> {
    async fn handle(&self, msg: &Delivery<E>) -> Result<(), HandlerError> {
        let routes = routes_of(&self.routes, msg);
        for route in routes {
            route.handle(msg).await?;
        }
        Ok(())
    }
}

/// The routes of `msg`'s message type, in the order they were added.
fn routes_of<'r, E: Topic, R: ?Sized>(
    routes: &'r [(&'static str, Box<R>)],
    msg: &Delivery<E>,
) -> Vec<&'r R> {
    let message_type = msg.value().message_type();
    let found: Vec<&R> = routes
        .iter()
        .filter(|(name, _)| *name == message_type)
        .map(|(_, route)| route.as_ref())
        .collect();
    if found.is_empty() {
        tracing::debug!(
            topic = %msg.topic, partition = msg.partition, offset = msg.offset, message_type,
            "no route for this message type; acknowledged without a handler"
        );
    }
    found
}

/// One route in a transaction, type-erased.
trait InTransaction<E>: Send + Sync {
    fn handle<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msg: &'a Delivery<E>,
    ) -> HandlerFuture<'a>;
}

/// One route without a database, type-erased.
trait WithoutDatabase<E>: Send + Sync {
    fn handle<'a>(&'a self, msg: &'a Delivery<E>) -> HandlerFuture<'a>;
}

/// A closure route of type `M`.
struct Closure<M, F>(F, PhantomData<fn() -> M>);

/// A struct route of type `M`.
struct Struct<M, H>(H, PhantomData<fn() -> M>);

/// `msg` as a delivery of its member `M` (`None` when it holds another type, which the
/// routing by type name rules out).
fn member<E: Topic, M: Member<E> + Clone>(msg: &Delivery<E>) -> Option<Delivery<M>> {
    M::peel(msg.value()).map(|m| msg.with_value(m.clone()))
}

impl<E, M, F> InTransaction<E> for Closure<M, F>
where
    E: Topic,
    M: Member<E> + Clone,
    F: for<'a> HandlerFn<'a, M> + Clone + Send + Sync + 'static,
{
    fn handle<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msg: &'a Delivery<E>,
    ) -> HandlerFuture<'a> {
        Box::pin(async move {
            let Some(d) = member::<E, M>(msg) else {
                return Ok(());
            };
            (self.0.clone())(txn, &d).await
        })
    }
}

impl<E, M, H> InTransaction<E> for Struct<M, H>
where
    E: Topic,
    M: Member<E> + Clone,
    H: Handler<M>,
{
    fn handle<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msg: &'a Delivery<E>,
    ) -> HandlerFuture<'a> {
        Box::pin(async move {
            let Some(d) = member::<E, M>(msg) else {
                return Ok(());
            };
            self.0.handle(txn, &d).await
        })
    }
}

impl<E, M, F> WithoutDatabase<E> for Closure<M, F>
where
    E: Topic,
    M: Member<E> + Clone,
    F: for<'a> HandlerWithoutDatabaseFn<'a, M> + Clone + Send + Sync + 'static,
{
    fn handle<'a>(&'a self, msg: &'a Delivery<E>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let Some(d) = member::<E, M>(msg) else {
                return Ok(());
            };
            (self.0.clone())(&d).await
        })
    }
}

impl<E, M, H> WithoutDatabase<E> for Struct<M, H>
where
    E: Topic,
    M: Member<E> + Clone,
    H: HandlerWithoutDatabase<M>,
{
    fn handle<'a>(&'a self, msg: &'a Delivery<E>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let Some(d) = member::<E, M>(msg) else {
                return Ok(());
            };
            self.0.handle(&d).await
        })
    }
}
