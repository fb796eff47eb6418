//! Publishing: [`TopicHandle::publish`] writes events into the topic's outbox inside the
//! caller's database transaction; the relay delivers them once it commits.

use sea_orm::DatabaseTransaction;

use crate::context::TopicHandle;
use crate::error::Result;
use crate::producer::Headers;
use crate::telemetry::metrics as telemetry;
use crate::topic::{OutboxTopic, Topic};

impl<T: Topic> TopicHandle<T> {
    /// Writes `value` into the topic's outbox inside `txn`: it reaches Kafka after `txn`
    /// commits (delivered by [`KafkaOrm::outbox_relay`](crate::KafkaOrm::outbox_relay)) and never if it rolls back.
    /// Returns the message id the relayed message will carry.
    ///
    /// The context's produce layers ([`KafkaOrmBuilder::produce_layer`](crate::KafkaOrmBuilder::produce_layer))
    /// run here, inside `txn`, for each row (also of [`publish_all`](Self::publish_all)):
    /// the headers they add are stored in the row, and one that refuses a row fails the
    /// call with [`Error::Rejected`](crate::Error::Rejected) before anything is written.
    pub async fn publish(&self, txn: &DatabaseTransaction, value: &T) -> Result<String>
    where
        T: OutboxTopic,
    {
        self.publish_with_headers(txn, value, Headers::new()).await
    }

    /// [`publish`](Self::publish) with extra headers (e.g. `traceparent`), relayed as given.
    pub async fn publish_with_headers(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
        headers: Headers,
    ) -> Result<String>
    where
        T: OutboxTopic,
    {
        self.orm().may_produce(T::SPEC)?;
        let topic = self.name();
        let layers = super::Layers {
            layers: self.orm().produce_layers(),
            topic: &topic,
        };
        let mut ids = super::publish_through(txn, &[value], headers, layers).await?;
        telemetry::published(&self.name(), super::table_of(T::SPEC), 1);
        Ok(ids.remove(0))
    }

    /// Writes many values into the outbox inside `txn` with one insert statement; per key
    /// they are delivered in the order given. Returns the message ids in input order.
    pub async fn publish_all<'a, I>(
        &self,
        txn: &DatabaseTransaction,
        values: I,
    ) -> Result<Vec<String>>
    where
        T: OutboxTopic,
        I: IntoIterator<Item = &'a T>,
    {
        self.orm().may_produce(T::SPEC)?;
        let values: Vec<&T> = values.into_iter().collect();
        let topic = self.name();
        let layers = super::Layers {
            layers: self.orm().produce_layers(),
            topic: &topic,
        };
        let ids = super::publish_through(txn, &values, Headers::new(), layers).await?;
        telemetry::published(&self.name(), super::table_of(T::SPEC), ids.len() as u64);
        Ok(ids)
    }
}
