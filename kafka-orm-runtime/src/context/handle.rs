//! [`TopicHandle`]: the typed handle of one topic, what a service produces, publishes and
//! consumes through.

use std::marker::PhantomData;

use futures_util::future::try_join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};

use super::KafkaOrm;
use crate::consumer::TopicConsumer;
use crate::error::{Error, Result};
use crate::producer::{self, DeliveryReport, Headers};
use crate::topic::{Consumable, Producible, Topic, TopicSpec};

/// The handle of one topic `T` in a context: produce, consume.
///
/// Get it with [`KafkaOrm::topic`]; it is cheap to create and to clone.
pub struct TopicHandle<T> {
    orm: KafkaOrm,
    group: Option<String>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for TopicHandle<T> {
    fn clone(&self) -> Self {
        TopicHandle {
            orm: self.orm.clone(),
            group: self.group.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Topic> TopicHandle<T> {
    pub(super) fn new(orm: KafkaOrm) -> Self {
        TopicHandle {
            orm,
            group: None,
            _type: PhantomData,
        }
    }

    /// The topic's settings.
    pub fn spec(&self) -> &'static TopicSpec {
        T::SPEC
    }

    /// The Kafka topic name (with the context's namespace).
    pub fn name(&self) -> String {
        self.orm.topic_name(T::SPEC)
    }

    pub(crate) fn orm(&self) -> &KafkaOrm {
        &self.orm
    }

    pub(crate) fn explicit_group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Consumes in group `group` (prefixed with the namespace) instead of the topic's
    /// `group = ".."` or the context's [`group`](crate::KafkaOrmBuilder::group): for this
    /// handle's [`consume`](Self::consume), [`handler`](Self::handler) and
    /// [`transactional`](Self::transactional).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

impl<T: Topic> TopicHandle<T> {
    /// Produces `value` (key from the key fields, message-id header stamped) and waits for
    /// the broker's acknowledgement.
    ///
    /// The context's produce layers ([`KafkaOrmBuilder::produce_layer`](crate::KafkaOrmBuilder::produce_layer))
    /// run around the send, here and in [`produce_with_headers`](Self::produce_with_headers)
    /// and [`produce_all`](Self::produce_all) (each message on its own); one that refuses
    /// the message fails the call with [`Error::Rejected`].
    pub async fn produce(&self, value: &T) -> Result<DeliveryReport>
    where
        T: Producible,
    {
        self.produce_with_headers(value, Headers::new()).await
    }

    /// Produces `value` with extra headers.
    pub async fn produce_with_headers(&self, value: &T, headers: Headers) -> Result<DeliveryReport>
    where
        T: Producible,
    {
        self.orm.may_produce(T::SPEC)?;
        let msg = producer::encode(value, headers)?;
        let inner = &self.orm.inner;
        if inner.tuning.produce_layers.is_empty() {
            return producer::send(
                &inner.producer,
                &self.name(),
                msg,
                inner.tuning.send_timeout,
            )
            .await;
        }
        let kind = value.message_type();
        (inner.tuning.produce_layers)
            .send(
                &inner.producer,
                self.name(),
                kind,
                msg,
                inner.tuning.send_timeout,
            )
            .await
    }

    /// Produces many values concurrently (batched by librdkafka) and waits for every
    /// acknowledgement; reports come back in input order. Encoding errors fail the whole
    /// call before anything is sent.
    pub async fn produce_all<'a, I>(&self, values: I) -> Result<Vec<DeliveryReport>>
    where
        T: Producible,
        I: IntoIterator<Item = &'a T>,
    {
        self.orm.may_produce(T::SPEC)?;
        let msgs = values
            .into_iter()
            .map(|v| Ok((v.message_type(), producer::encode(v, Headers::new())?)))
            .collect::<Result<Vec<_>>>()?;
        let inner = &self.orm.inner;
        let (layers, topic) = (&inner.tuning.produce_layers, self.name());
        if layers.is_empty() {
            let msgs = msgs.into_iter().map(|(_, m)| m).collect();
            return producer::send_all(&inner.producer, &topic, msgs, inner.tuning.send_timeout)
                .await;
        }
        // Each message through the layers on its own, all of them at once (librdkafka
        // batches the sends).
        try_join_all(msgs.into_iter().map(|(kind, m)| {
            layers.send(
                &inner.producer,
                topic.clone(),
                kind,
                m,
                inner.tuning.send_timeout,
            )
        }))
        .await
    }
}

impl<T: Topic> TopicHandle<T> {
    /// Subscribes to the topic in its consumer group and returns a stream of deliveries.
    ///
    /// Nothing is committed automatically: call [`TopicConsumer::commit`]. A new group
    /// starts at the earliest offset unless `auto.offset.reset` is set otherwise.
    pub async fn consume(&self) -> Result<TopicConsumer<T>>
    where
        T: Consumable,
    {
        let inner = &self.orm.inner;
        let group = self.orm.group_for(T::SPEC, self.group.as_deref())?;
        let topic = self.name();
        let consumer: StreamConsumer = self
            .orm
            .consumer_config(&group)
            .create()
            .map_err(|e| Error::kafka(format!("creating a consumer for `{topic}`"), e))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| Error::kafka(format!("subscribing to `{topic}`"), e))?;
        Ok(TopicConsumer::start(
            consumer,
            topic,
            group,
            inner.tuning.consumer_buffer,
            inner.tuning.metrics_interval,
            inner.tuning.shutdown_timeout,
        ))
    }
}
