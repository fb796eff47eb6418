//! How a lane applies a message: in a database transaction that also holds the inbox row
//! ([`InTransaction`], a [`Handler`]), or without a database ([`WithoutDatabase`], a
//! [`HandlerWithoutDatabase`]). Everything around it (order, retries, retry tiers, the
//! dead-letter topic, watermark commits) is the lane's and the same for both.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use super::{Handler, HandlerError, HandlerWithoutDatabase};
use crate::consumer::Delivery;
use crate::error::Error;
use crate::inbox;
use crate::topic::Consumable;

/// A [`Handler`] as the lane runs it: each message (or batch) in a transaction with its
/// inbox rows. Built by [`TopicHandle::handler`](crate::TopicHandle::handler) and its
/// siblings.
pub struct InTransaction<H>(pub(crate) H);

/// A [`HandlerWithoutDatabase`] as the lane runs it: no transaction, no inbox. Built by
/// [`TopicHandle::handler_without_database`](crate::TopicHandle::handler_without_database)
/// or [`TopicHandle::handler_with`](crate::TopicHandle::handler_with).
pub struct WithoutDatabase<H>(pub(crate) H);

/// A [`Handler`] or a [`HandlerWithoutDatabase`]: what
/// [`TopicHandle::handler_with`](crate::TopicHandle::handler_with) takes. `M` is
/// [`InDatabase`] or [`NoDatabase`], inferred from the trait the handler implements.
pub trait AnyHandler<T: Consumable, M>: Sized {
    /// How the lane runs it.
    type Apply: Apply<T>;
    /// Wraps it.
    fn into_apply(self) -> Self::Apply;
}

/// Marks an [`AnyHandler`] that is a [`Handler`].
#[derive(Debug)]
pub enum InDatabase {}

/// Marks an [`AnyHandler`] that is a [`HandlerWithoutDatabase`].
#[derive(Debug)]
pub enum NoDatabase {}

impl<T: Consumable, H: Handler<T>> AnyHandler<T, InDatabase> for H {
    type Apply = InTransaction<H>;
    fn into_apply(self) -> InTransaction<H> {
        InTransaction(self)
    }
}

impl<T: Consumable, H: HandlerWithoutDatabase<T>> AnyHandler<T, NoDatabase> for H {
    type Apply = WithoutDatabase<H>;
    fn into_apply(self) -> WithoutDatabase<H> {
        WithoutDatabase(self)
    }
}

/// How one attempt ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The handler ran and (with a database) its transaction committed.
    Handled,
    /// The inbox had the message already; nothing ran.
    Duplicate,
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum Attempt {
    /// The database, outside the handler (begin, inbox row, commit): retried without using
    /// up attempts.
    Infra(Error),
    /// The handler's own error (or panic).
    Handler(HandlerError),
}

/// A committed batch: how many were handled, how many the inbox had already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchApplied {
    /// Handled.
    pub handled: u64,
    /// Skipped as duplicates.
    pub duplicates: u64,
}

/// How a handler runs: [`InTransaction`] or [`WithoutDatabase`], the only two (the trait
/// is sealed). Name it to pass a configured [`HandlerBuilder`](super::HandlerBuilder)
/// around: `fn billing(orm: &KafkaOrm) -> HandlerBuilder<OrderCreated, impl Apply<OrderCreated>>`.
pub trait Apply<T: Consumable>: sealed::Sealed + Send + Sync + 'static {
    /// Whether it needs the context's database.
    #[doc(hidden)]
    const DATABASE: bool;

    /// One attempt at `msg` (`db` is the context's database when [`Apply::DATABASE`]).
    #[doc(hidden)]
    fn apply<'a>(
        &'a self,
        db: Option<&'a DatabaseConnection>,
        group: &'a str,
        msg: &'a Delivery<T>,
    ) -> impl Future<Output = Result<Applied, Attempt>> + Send + 'a;

    /// `msgs` at once; an error when any of it failed (the lane then goes one by one).
    #[doc(hidden)]
    fn apply_batch<'a>(
        &'a self,
        db: Option<&'a DatabaseConnection>,
        group: &'a str,
        msgs: &'a [&'a Delivery<T>],
    ) -> impl Future<Output = Result<BatchApplied, Attempt>> + Send + 'a;
}

mod sealed {
    /// Keeps [`super::Apply`] to this crate's two.
    pub trait Sealed {}
    impl<H> Sealed for super::InTransaction<H> {}
    impl<H> Sealed for super::WithoutDatabase<H> {}
}

/// The handler's transaction on `db` (`what` names it in the error); without a database,
/// [`Error::NoDatabase`].
async fn begin<T: Consumable>(
    db: Option<&DatabaseConnection>,
    what: &'static str,
) -> Result<DatabaseTransaction, Attempt> {
    let db = db.ok_or_else(|| {
        Attempt::Infra(Error::NoDatabase {
            operation: "handler",
            topic: T::SPEC.name,
        })
    })?;
    db.begin()
        .await
        .map_err(|e| Attempt::Infra(Error::db(what, e)))
}

impl<T: Consumable, H: Handler<T>> Apply<T> for InTransaction<H> {
    const DATABASE: bool = true;

    async fn apply(
        &self,
        db: Option<&DatabaseConnection>,
        group: &str,
        msg: &Delivery<T>,
    ) -> Result<Applied, Attempt> {
        let txn = begin::<T>(db, "beginning the handler transaction").await?;
        if !inbox::record(&txn, group, msg)
            .await
            .map_err(Attempt::Infra)?
        {
            let _ = txn.rollback().await;
            return Ok(Applied::Duplicate);
        }
        caught(self.0.handle(&txn, msg))
            .await
            .map_err(Attempt::Handler)?;
        txn.commit()
            .await
            .map_err(|e| Attempt::Infra(Error::db("committing the handler transaction", e)))?;
        Ok(Applied::Handled)
    }

    async fn apply_batch(
        &self,
        db: Option<&DatabaseConnection>,
        group: &str,
        msgs: &[&Delivery<T>],
    ) -> Result<BatchApplied, Attempt> {
        let txn = begin::<T>(db, "beginning the batch transaction").await?;
        // One statement records the whole batch in the inbox; only new messages are handled.
        let fresh = match inbox::record_batch(&txn, group, msgs).await {
            Ok(fresh) => fresh,
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(Attempt::Infra(e));
            }
        };
        let new: Vec<&Delivery<T>> = msgs
            .iter()
            .zip(&fresh)
            .filter_map(|(d, f)| f.then_some(*d))
            .collect();
        if !new.is_empty()
            && let Err(e) = caught(self.0.handle_batch(&txn, &new)).await
        {
            let _ = txn.rollback().await;
            return Err(Attempt::Handler(e));
        }
        txn.commit()
            .await
            .map_err(|e| Attempt::Infra(Error::db("committing the batch transaction", e)))?;
        Ok(BatchApplied {
            handled: new.len() as u64,
            duplicates: (msgs.len() - new.len()) as u64,
        })
    }
}

impl<T: Consumable, H: HandlerWithoutDatabase<T>> Apply<T> for WithoutDatabase<H> {
    const DATABASE: bool = false;

    async fn apply(
        &self,
        _db: Option<&DatabaseConnection>,
        _group: &str,
        msg: &Delivery<T>,
    ) -> Result<Applied, Attempt> {
        caught(self.0.handle(msg)).await.map_err(Attempt::Handler)?;
        Ok(Applied::Handled)
    }

    async fn apply_batch(
        &self,
        _db: Option<&DatabaseConnection>,
        _group: &str,
        msgs: &[&Delivery<T>],
    ) -> Result<BatchApplied, Attempt> {
        caught(self.0.handle_batch(msgs))
            .await
            .map_err(Attempt::Handler)?;
        Ok(BatchApplied {
            handled: msgs.len() as u64,
            duplicates: 0,
        })
    }
}

/// Awaits a handler's future, turning a panic into an error.
async fn caught(
    handler: impl Future<Output = Result<(), HandlerError>>,
) -> Result<(), HandlerError> {
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".into());
            Err(format!("the handler panicked: {what}").into())
        }
    }
}
