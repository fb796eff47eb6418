//! What a service calls to send messages, as traits: [`Produce`] (straight to Kafka) and
//! [`Publish`] (into the outbox, inside the caller's database transaction).
//!
//! [`TopicHandle`] implements both, so production code passes `orm.topic::<T>()`; a unit
//! test passes a `testing::Recorder` (feature `testing`), which records what was sent
//! and can be told to fail. A service function names the trait, not the handle:
//!
//! ```
//! # use kafka_orm_runtime as kafka_orm;
//! use kafka_orm::{OutboxTopic, Publish};
//! use sea_orm::{DatabaseConnection, TransactionTrait};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! /// Places an order: the business change and its event in one transaction.
//! async fn place_order<E: OutboxTopic>(
//!     db: &DatabaseConnection,
//!     events: &impl Publish<E>,   // `&orm.topic::<E>()` in the service, a recorder in tests
//!     event: &E,
//! ) -> Result<String, BoxError> {
//!     let txn = db.begin().await?;
//!     // .. insert the order on `txn` ..
//!     let id = events.publish(&txn, event).await?;
//!     txn.commit().await?;
//!     Ok(id)
//! }
//! ```
//!
//! The futures are `Send`, so such a function can run in `tokio::spawn`.

use std::future::Future;

use sea_orm::DatabaseTransaction;

use crate::context::TopicHandle;
use crate::error::Result;
use crate::producer::{DeliveryReport, Headers};
use crate::topic::{OutboxTopic, Producible};

/// Produces `T` straight to Kafka: [`TopicHandle::produce`] and its siblings.
pub trait Produce<T: Producible>: Send + Sync {
    /// Produces `value` and waits for the broker's acknowledgement
    /// ([`TopicHandle::produce`]).
    fn produce(&self, value: &T) -> impl Future<Output = Result<DeliveryReport>> + Send;

    /// [`produce`](Self::produce) with extra headers
    /// ([`TopicHandle::produce_with_headers`]).
    fn produce_with_headers(
        &self,
        value: &T,
        headers: Headers,
    ) -> impl Future<Output = Result<DeliveryReport>> + Send;

    /// Produces every value and waits for every acknowledgement; reports in input order
    /// ([`TopicHandle::produce_all`]).
    fn produce_all(&self, values: &[T])
    -> impl Future<Output = Result<Vec<DeliveryReport>>> + Send;
}

/// Publishes `T` through its outbox, inside the caller's transaction:
/// [`TopicHandle::publish`] and its siblings.
pub trait Publish<T: OutboxTopic>: Send + Sync {
    /// Writes `value` into the outbox inside `txn`; returns the message id
    /// ([`TopicHandle::publish`]).
    fn publish(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
    ) -> impl Future<Output = Result<String>> + Send;

    /// [`publish`](Self::publish) with extra headers
    /// ([`TopicHandle::publish_with_headers`]).
    fn publish_with_headers(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
        headers: Headers,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Writes every value into the outbox inside `txn`; message ids in input order
    /// ([`TopicHandle::publish_all`]).
    fn publish_all(
        &self,
        txn: &DatabaseTransaction,
        values: &[T],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
}

impl<T: Producible> Produce<T> for TopicHandle<T> {
    fn produce(&self, value: &T) -> impl Future<Output = Result<DeliveryReport>> + Send {
        TopicHandle::produce(self, value)
    }

    fn produce_with_headers(
        &self,
        value: &T,
        headers: Headers,
    ) -> impl Future<Output = Result<DeliveryReport>> + Send {
        TopicHandle::produce_with_headers(self, value, headers)
    }

    fn produce_all(
        &self,
        values: &[T],
    ) -> impl Future<Output = Result<Vec<DeliveryReport>>> + Send {
        TopicHandle::produce_all(self, values)
    }
}

impl<T: OutboxTopic> Publish<T> for TopicHandle<T> {
    fn publish(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
    ) -> impl Future<Output = Result<String>> + Send {
        TopicHandle::publish(self, txn, value)
    }

    fn publish_with_headers(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
        headers: Headers,
    ) -> impl Future<Output = Result<String>> + Send {
        TopicHandle::publish_with_headers(self, txn, value, headers)
    }

    fn publish_all(
        &self,
        txn: &DatabaseTransaction,
        values: &[T],
    ) -> impl Future<Output = Result<Vec<String>>> + Send {
        TopicHandle::publish_all(self, txn, values)
    }
}
