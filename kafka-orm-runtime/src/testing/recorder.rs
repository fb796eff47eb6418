//! [`Recorder`]: a [`Produce`] and [`Publish`] for unit tests, which records what a
//! service sent and fails when told to.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use sea_orm::DatabaseTransaction;

use crate::error::{Error, Result};
use crate::producer::{self, DeliveryReport, Headers};
use crate::service::{Produce, Publish};
use crate::topic::{OutboxTopic, Producible, Topic};

/// How a recorded message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Through [`Produce`]: straight to Kafka.
    Produced,
    /// Through [`Publish`]: into the outbox, in the caller's transaction.
    Published,
}

/// One message a [`Recorder`] took, encoded as the real handle would encode it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<T> {
    /// The value.
    pub value: T,
    /// Produced or published.
    pub sent: Sent,
    /// The message key, from the key fields.
    pub key: Option<Vec<u8>>,
    /// The headers, with the message id and the type header stamped.
    pub headers: Headers,
    /// The message id ([`MESSAGE_ID_HEADER`](crate::producer::MESSAGE_ID_HEADER)).
    pub message_id: String,
}

/// A failure to hand out, made fresh for each failing call.
type MakeError = Arc<dyn Fn() -> Error + Send + Sync>;

struct State<T> {
    records: Vec<Recorded<T>>,
    failures: VecDeque<Option<MakeError>>,
}

/// Records what a service produces and publishes, for unit tests without a broker or an
/// outbox: pass it where the service takes `impl Produce<T>` or `impl Publish<T>`.
///
/// Each message is encoded as [`TopicHandle`](crate::TopicHandle) encodes it (codec,
/// key, message-id and type headers), so an encoding error is the real one. A publish is
/// recorded when it is called: whether the caller's transaction then commits is the
/// database's business (use the [harness](super::TestHarness) to test a rollback).
/// [`fail_next`](Self::fail_next) makes the next calls fail, to test a service's error
/// path. Clones share their records.
///
/// ```
/// # use kafka_orm_runtime as kafka_orm;
/// # use kafka_orm::{Producible, Result};
/// use kafka_orm::service::Produce;
/// use kafka_orm::testing::Recorder;
///
/// async fn notify<E: Producible>(out: &impl Produce<E>, event: E) -> Result<()> {
///     out.produce(&event).await.map(|_| ())
/// }
///
/// # async fn check<E: Producible + Clone + std::fmt::Debug + PartialEq>(event: E) {
/// let out = Recorder::new();
/// notify(&out, event.clone()).await.unwrap();
/// assert_eq!(out.values(), vec![event.clone()]);
///
/// out.fail_next(1);
/// assert!(notify(&out, event).await.is_err());
/// assert_eq!(out.records().len(), 1); // a failed call records nothing
/// # }
/// ```
pub struct Recorder<T> {
    state: Arc<Mutex<State<T>>>,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Recorder {
            state: Arc::clone(&self.state),
        }
    }
}

impl<T: Topic + Clone> Default for Recorder<T> {
    fn default() -> Self {
        Recorder::new()
    }
}

impl<T: Topic + Clone> Recorder<T> {
    /// Nothing recorded, no failures planned.
    pub fn new() -> Self {
        Recorder {
            state: Arc::new(Mutex::new(State {
                records: Vec::new(),
                failures: VecDeque::new(),
            })),
        }
    }

    /// Everything recorded so far, in call order.
    pub fn records(&self) -> Vec<Recorded<T>> {
        self.lock().records.clone()
    }

    /// The values recorded so far, in call order.
    pub fn values(&self) -> Vec<T> {
        self.lock()
            .records
            .iter()
            .map(|r| r.value.clone())
            .collect()
    }

    /// The values sent one way ([`Sent::Produced`] or [`Sent::Published`]), in call order.
    pub fn values_sent(&self, sent: Sent) -> Vec<T> {
        let state = self.lock();
        state
            .records
            .iter()
            .filter(|r| r.sent == sent)
            .map(|r| r.value.clone())
            .collect()
    }

    /// Forgets what was recorded (planned failures stay).
    pub fn clear(&self) {
        self.lock().records.clear();
    }

    /// The next `n` calls fail (a produce as an unacknowledged delivery,
    /// [`Error::Delivery`]; a publish as a database error, [`Error::Database`]) and record
    /// nothing. A call of many values (`produce_all`, `publish_all`) is one call.
    pub fn fail_next(&self, n: usize) {
        self.lock().failures.extend((0..n).map(|_| None));
    }

    /// The next `n` calls fail with the error `make` returns.
    pub fn fail_next_with(&self, n: usize, make: impl Fn() -> Error + Send + Sync + 'static) {
        let make: MakeError = Arc::new(make);
        self.lock()
            .failures
            .extend((0..n).map(|_| Some(Arc::clone(&make))));
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `values` sent `sent`, or fails as planned (one planned failure per call);
    /// the recorded messages and the place of the first in the recording.
    fn record(
        &self,
        values: &[&T],
        headers: Headers,
        sent: Sent,
    ) -> Result<(i64, Vec<Recorded<T>>)> {
        let encoded = values
            .iter()
            .map(|v| producer::encode(*v, headers.clone()).map(|m| (*v, m)))
            .collect::<Result<Vec<_>>>()?;
        let mut state = self.lock();
        if let Some(failure) = state.failures.pop_front() {
            return Err(match failure {
                Some(make) => make(),
                None => planned_failure::<T>(sent),
            });
        }
        let recorded: Vec<Recorded<T>> = encoded
            .into_iter()
            .map(|(value, m)| Recorded {
                value: value.clone(),
                sent,
                key: m.key,
                headers: m.headers,
                message_id: m.message_id,
            })
            .collect();
        let first = state.records.len() as i64;
        state.records.extend(recorded.iter().cloned());
        Ok((first, recorded))
    }
}

/// The delivery reports of messages recorded from place `first` on: partition 0, the
/// offset their place in the recording.
fn reports<T: Topic>((first, recorded): (i64, Vec<Recorded<T>>)) -> Vec<DeliveryReport> {
    recorded
        .into_iter()
        .zip(first..)
        .map(|(r, offset)| DeliveryReport {
            topic: T::SPEC.name.to_string(),
            partition: 0,
            offset,
            message_id: r.message_id,
        })
        .collect()
}

/// The error of a call [`Recorder::fail_next`] made fail.
fn planned_failure<T: Topic>(sent: Sent) -> Error {
    match sent {
        Sent::Produced => Error::Delivery {
            topic: T::SPEC.name.to_string(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        },
        Sent::Published => Error::db(
            format!("publishing to the outbox of `{}`", T::SPEC.name),
            sea_orm::DbErr::Custom("failure planned by Recorder::fail_next".into()),
        ),
    }
}

impl<T: Producible + Clone> Produce<T> for Recorder<T> {
    fn produce(&self, value: &T) -> impl Future<Output = Result<DeliveryReport>> + Send {
        self.produce_with_headers(value, Headers::new())
    }

    fn produce_with_headers(
        &self,
        value: &T,
        headers: Headers,
    ) -> impl Future<Output = Result<DeliveryReport>> + Send {
        let out = self
            .record(&[value], headers, Sent::Produced)
            .map(|r| reports(r).remove(0));
        std::future::ready(out)
    }

    fn produce_all(
        &self,
        values: &[T],
    ) -> impl Future<Output = Result<Vec<DeliveryReport>>> + Send {
        let values: Vec<&T> = values.iter().collect();
        let out = self
            .record(&values, Headers::new(), Sent::Produced)
            .map(reports);
        std::future::ready(out)
    }
}

impl<T: OutboxTopic + Clone> Publish<T> for Recorder<T> {
    fn publish(
        &self,
        txn: &DatabaseTransaction,
        value: &T,
    ) -> impl Future<Output = Result<String>> + Send {
        self.publish_with_headers(txn, value, Headers::new())
    }

    fn publish_with_headers(
        &self,
        _txn: &DatabaseTransaction,
        value: &T,
        headers: Headers,
    ) -> impl Future<Output = Result<String>> + Send {
        let out = self
            .record(&[value], headers, Sent::Published)
            .map(|(_, mut r)| r.remove(0).message_id);
        std::future::ready(out)
    }

    fn publish_all(
        &self,
        _txn: &DatabaseTransaction,
        values: &[T],
    ) -> impl Future<Output = Result<Vec<String>>> + Send {
        let values: Vec<&T> = values.iter().collect();
        let out = self
            .record(&values, Headers::new(), Sent::Published)
            .map(|(_, r)| r.into_iter().map(|r| r.message_id).collect());
        std::future::ready(out)
    }
}
