//! Typed consuming: a [`Stream`] of decoded [`Delivery`]s with manual commit.
//!
//! One background task receives from librdkafka and decodes; the stream hands the
//! results out in order (per partition, as Kafka delivers them). A payload that cannot be
//! decoded surfaces as [`Error::Decode`] naming topic, partition and offset, one whose type
//! header names a type the topic does not carry as [`Error::UnknownType`], and the stream
//! goes on with the next message. Offsets are committed only when you say so.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::codec::DecodeError;
use crate::error::{Error, Result};
use crate::message_type;
use crate::offthread::{ConsumerGuard, consumer_guard};
use crate::producer::{Headers, MESSAGE_ID_HEADER};
use crate::telemetry::lag::PartitionLag;
use crate::telemetry::lag::{self, LagSampler};
use crate::telemetry::metrics::StreamMetrics;
use crate::telemetry::trace::{self, Messaging, Operation};
use crate::topic::Topic;

/// One message received from a topic, decoded into `T`.
///
/// Dereferences to the value; [`Delivery::into_value`] takes it out.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    pub(crate) value: T,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Headers,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) attempt: u32,
    pub(crate) span: tracing::Span,
}

impl<T> Delivery<T> {
    /// The decoded value.
    pub fn value(&self) -> &T {
        &self.value
    }
    /// Takes the decoded value.
    pub fn into_value(self) -> T {
        self.value
    }
    /// The topic it came from.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The partition it came from.
    pub fn partition(&self) -> i32 {
        self.partition
    }
    /// Its offset in the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }
    /// The raw message key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    /// The message headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }
    /// The kafka-orm message id, when a kafka-orm producer sent it.
    pub fn message_id(&self) -> Option<&str> {
        self.headers.get_str(MESSAGE_ID_HEADER)
    }
    /// The message timestamp in milliseconds since the epoch, when the broker has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }
    /// Which attempt this is in a handler (1 on first delivery; retries count up).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// From a [`TopicConsumer`]: its `kafka_orm.receive` span, open until the delivery
    /// (and every clone of it) is dropped. With the `opentelemetry` feature it is a child
    /// of the trace context the message carries; run your processing in it
    /// (`.instrument(delivery.span().clone())` or `delivery.span().in_scope(..)`) to
    /// continue the producer's trace. In a handler it is [`tracing::Span::none`]: the
    /// handler runs inside its `kafka_orm.handle` span already (`Span::current()`).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
    /// This delivery's place, headers and attempt with another value (a topic enum's
    /// member, for its route).
    pub(crate) fn with_value<U>(&self, value: U) -> Delivery<U> {
        Delivery {
            value,
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
            headers: self.headers.clone(),
            timestamp_ms: self.timestamp_ms,
            attempt: self.attempt,
            span: self.span.clone(),
        }
    }

    /// The messaging attributes of a span about this delivery, read by `group`.
    pub(crate) fn messaging<'a>(&'a self, group: &'a str) -> Messaging<'a> {
        Messaging {
            destination: &self.topic,
            partition: Some(self.partition),
            offset: Some(self.offset),
            group: Some(group),
            message_id: self.message_id(),
            batch: None,
        }
    }
}

impl<T> Deref for Delivery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Decodes one received message for topic `T`, as the type its type header names (see
/// [`crate::message_type`]).
pub(crate) fn decode<T: Topic, M: Message>(m: &M) -> Result<Delivery<T>> {
    let payload = m.payload().unwrap_or_default();
    let headers = m.headers().map(Headers::from_rdkafka).unwrap_or_default();
    let named = message_type::of(&headers);
    match T::decode_payload(named.as_deref(), payload) {
        Ok(value) => Ok(Delivery {
            value,
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
            attempt: 1,
            span: tracing::Span::none(),
        }),
        Err(DecodeError::UnknownType) => Err(Error::UnknownType {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            type_name: T::SPEC.type_name,
            found: named.map(|n| n.into_owned()),
            expected: T::SPEC.message_types,
            payload: m.payload().map(<[u8]>::to_vec),
        }),
        Err(DecodeError::Codec(source)) => Err(Error::Decode {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            type_name: T::SPEC.type_name,
            payload: m.payload().map(<[u8]>::to_vec),
            source,
        }),
    }
}

/// Gives a stream's delivery its `kafka_orm.receive` span, continuing the message's trace.
fn received<T>(mut delivery: Delivery<T>, group: &str) -> Delivery<T> {
    let span = tracing::info_span!(
        parent: None,
        "kafka_orm.receive",
        topic = %delivery.topic,
        partition = delivery.partition,
        offset = delivery.offset,
        otel.kind = tracing::field::Empty,
    );
    trace::describe(&span, Operation::Receive, &delivery.messaging(group));
    trace::continue_from(&span, &delivery.headers);
    delivery.span = span;
    delivery
}

/// A stream of `T`s from one topic, in one consumer group, with manual commit.
///
/// Created by [`crate::TopicHandle::consume`]. Call [`TopicConsumer::shutdown`] to stop in
/// bounded time; dropping it also stops it, in the background.
pub struct TopicConsumer<T> {
    rx: mpsc::Receiver<Result<Delivery<T>>>,
    consumer: Arc<ConsumerGuard<StreamConsumer>>,
    topic: String,
    group: String,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    shutdown_timeout: Duration,
    _type: PhantomData<fn() -> T>,
}

impl<T: Topic> TopicConsumer<T> {
    pub(crate) fn start(
        consumer: StreamConsumer,
        topic: String,
        group: String,
        buffer: usize,
        metrics_interval: Duration,
        shutdown_timeout: Duration,
    ) -> Self {
        let consumer = Arc::new(consumer_guard(consumer));
        LagSampler::spawn(Arc::downgrade(&consumer), group.clone(), metrics_interval);
        let metrics = StreamMetrics::new(&topic, &group);
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let (stop, mut stopped) = watch::channel(false);
        let task_consumer = Arc::clone(&consumer);
        let span_group = group.clone();
        let task = tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = stopped.changed() => break,
                    msg = task_consumer.get().recv() => match msg {
                        Ok(m) => {
                            metrics.consumed.increment(1);
                            let decoded = decode::<T, _>(&m).map(|d| received(d, &span_group));
                            if decoded.is_err() {
                                metrics.undecodable.increment(1);
                            }
                            decoded
                        }
                        Err(e) => Err(Error::kafka("receiving messages", e)),
                    },
                };
                tokio::select! {
                    _ = stopped.changed() => break,
                    sent = tx.send(item) => if sent.is_err() { break },
                }
            }
        });
        TopicConsumer {
            rx,
            consumer,
            topic,
            group,
            stop,
            task: Some(task),
            shutdown_timeout,
            _type: PhantomData,
        }
    }
}

impl<T> TopicConsumer<T> {
    /// The topic consumed (with the context's namespace, if any).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The next delivery, or `None` once the consumer is closed. Same as the `Stream`.
    pub async fn next(&mut self) -> Option<Result<Delivery<T>>> {
        self.rx.recv().await
    }

    /// Up to `max` deliveries: waits at most `max_wait` for the first, then takes what
    /// arrives until `max` or `max_wait` from the call. Empty when nothing arrived (or
    /// the consumer is closed). Commit the batch with [`TopicConsumer::commit_batch`],
    /// e.g. after one database transaction for all of it.
    pub async fn next_batch(&mut self, max: usize, max_wait: Duration) -> Vec<Result<Delivery<T>>> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut batch = Vec::new();
        while batch.len() < max.max(1) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(item)) => batch.push(item),
                _ => break,
            }
        }
        batch
    }

    /// Commits every delivery of `batch` (the highest offset per partition).
    pub async fn commit_batch(&self, batch: &[Delivery<T>]) -> Result<()> {
        let done: Vec<(i32, i64)> = batch.iter().map(|d| (d.partition, d.offset)).collect();
        if done.is_empty() {
            return Ok(());
        }
        self.commit_all(&done).await
    }

    /// Commits `delivery` and everything before it in its partition, and waits until the
    /// group coordinator has stored it.
    pub async fn commit(&self, delivery: &Delivery<T>) -> Result<()> {
        self.commit_at(delivery.partition, delivery.offset).await
    }

    /// Commits everything up to and including `offset` in `partition` (use it to move past a
    /// message that failed to decode), and waits until the coordinator has stored it.
    pub async fn commit_at(&self, partition: i32, offset: i64) -> Result<()> {
        self.commit_all(&[(partition, offset)]).await
    }

    /// Commits several partitions at once: for each `(partition, offset)`, everything up to
    /// and including `offset`. The highest offset per partition wins.
    pub async fn commit_all(&self, done: &[(i32, i64)]) -> Result<()> {
        let mut highest: HashMap<i32, i64> = HashMap::new();
        for &(p, o) in done {
            let e = highest.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in highest {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o + 1))
                .map_err(|e| Error::kafka(format!("committing to topic `{}`", self.topic), e))?;
        }
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || consumer.get().commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|_| Error::Shutdown)?
            .map_err(|e| Error::kafka(format!("committing offsets of topic `{topic}`"), e))
    }

    /// The committed offset (the next one to read) of each assigned partition, as the group
    /// coordinator has it.
    pub async fn committed(&self, timeout: Duration) -> Result<Vec<(i32, Option<i64>)>> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let tpl = tokio::task::spawn_blocking(move || consumer.get().committed(timeout))
            .await
            .map_err(|_| Error::Shutdown)?
            .map_err(|e| Error::kafka(format!("reading committed offsets of `{topic}`"), e))?;
        Ok(tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| (e.partition(), e.offset().to_raw().filter(|o| *o >= 0)))
            .collect())
    }

    /// How far the group is behind, per assigned partition: the broker's high watermark
    /// minus the group's committed offset (what a restart resumes from; a partition with
    /// nothing committed counts from its low watermark). Also sampled into the
    /// `kafka_orm.consumer.lag` gauge (see [`crate::telemetry`]).
    pub async fn committed_lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || lag::committed_lag(consumer.get().as_ref(), timeout))
            .await
            .map_err(|_| Error::Shutdown)?
    }

    /// The partitions currently assigned to this consumer.
    pub fn assignment(&self) -> Result<Vec<i32>> {
        let tpl = self
            .consumer
            .get()
            .assignment()
            .map_err(|e| Error::kafka("reading the assignment", e))?;
        let mut parts: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        parts.sort_unstable();
        Ok(parts)
    }

    /// Stops receiving, leaves the group and releases the client, waiting at most the
    /// context's [`shutdown_timeout`](crate::KafkaOrmBuilder::shutdown_timeout).
    /// Uncommitted deliveries will be delivered again to the group.
    pub async fn shutdown(mut self) -> Result<()> {
        let timeout = self.shutdown_timeout;
        let _ = self.stop.send(true);
        self.rx.close();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(timeout, task).await;
        }
        let consumer = Arc::clone(&self.consumer);
        drop(self);
        crate::offthread::close_within(timeout, "kafka-orm consumer", move || {
            consumer.get().unsubscribe();
            drop(consumer);
        })
        .await;
        Ok(())
    }
}

impl<T> Drop for TopicConsumer<T> {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl<T> Stream for TopicConsumer<T> {
    type Item = Result<Delivery<T>>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> std::fmt::Debug for TopicConsumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicConsumer")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
