//! [`Faults`]: what a test does to the harness's broker and handlers. Each fault acts on
//! the real thing (librdkafka's mock cluster, the topic's log, the handler runner), so
//! the runtime's own code answers it: produce errors reach the relay's back-off and a
//! direct produce's error, a slower broker slows every client, a record appended twice
//! reaches the inbox, undecodable bytes reach the handler's dead-letter path, a held
//! partition's lane waits while the other partitions' lanes go on, and a crash stops a
//! handler between its database commit and its offset commit.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::hook::Observer;
use super::log::{self, Message};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::producer::TYPE_HEADER;
use crate::topic::Topic;

/// How long a raw append (a fault's own produce) may take.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The error the broker answers a failed produce with: it rejects the record
/// (`INVALID_RECORD`), which librdkafka does not retry, so the producer sees it.
const PRODUCE_ERROR: RDKafkaRespErr = RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD;

/// Fault injection for a [`TestHarness`](super::TestHarness); get it with
/// [`TestHarness::faults`](super::TestHarness::faults).
#[derive(Clone)]
pub struct Faults {
    pub(super) orm: KafkaOrm,
    pub(super) observer: Arc<Observer>,
    pub(super) producer: FutureProducer,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    /// The broker fails the next `n` produce requests it receives, from any producer of
    /// the harness (the relay's, direct `produce`, the handlers' dead-letter forwards):
    /// each request's records are rejected (`INVALID_RECORD`, which the producer does not
    /// retry on its own). A direct [`produce`](crate::TopicHandle::produce) then returns
    /// [`Error::Delivery`]; the relay backs the row off and delivers it later, in order.
    /// One request carries one batch per partition: a produce is one, a relay batch of
    /// one partition is one.
    pub fn fail_next_produces(&self, n: usize) -> Result<()> {
        self.broker(move |c| {
            c.request_errors(RDKafkaApiKey::Produce, &vec![PRODUCE_ERROR; n]);
            Ok(())
        })
    }

    /// Every request to the broker takes `delay` longer (produce acknowledgements,
    /// fetches, offset commits); [`Duration::ZERO`] ends it.
    pub fn delay(&self, delay: Duration) -> Result<()> {
        self.broker(move |c| {
            c.broker_round_trip_time(-1, delay)
                .map_err(|e| Error::kafka("setting the embedded broker's round-trip time", e))
        })
    }

    /// The harness's handlers hold the messages of partition `partition` of `T`'s topic
    /// (and of its retry tiers) before their attempt, until
    /// [`release_partition`](Self::release_partition), while the other partitions go on:
    /// messages of different partitions then reach the handlers out of the order they
    /// were published in. The consumer still fetches them; held, they are not finished, so
    /// their offsets are not committed (a partition's lane waits, as behind a slow
    /// handler, and keeps one of the handler's `concurrency` slots).
    pub fn hold_partition<T: Topic>(&self, partition: i32) {
        self.observer.hold(self.orm.topic_name(T::SPEC), partition);
    }

    /// Lets the held messages of partition `partition` of `T`'s topic go on.
    pub fn release_partition<T: Topic>(&self, partition: i32) {
        self.observer
            .release(&self.orm.topic_name(T::SPEC), partition);
    }

    /// Appends `message` to its topic again, as it is on the topic (same partition, key,
    /// payload and headers, message id included): a consumer receives it twice, as after
    /// a producer retry or a redelivery. The inbox skips the second one.
    pub async fn deliver_again<T: Topic>(&self, message: &Message<T>) -> Result<()> {
        let (topic, partition, offset) = (&message.topic, message.partition, message.offset);
        let record = log::read_one(&self.orm, topic, partition, offset, APPEND_TIMEOUT)
            .await?
            .ok_or_else(|| Error::Config(format!("no record at {topic}[{partition}]@{offset}")))?;
        let mut out = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .headers(record.headers.to_rdkafka());
        if let Some(p) = &record.payload {
            out = out.payload(p.as_slice());
        }
        if let Some(k) = &record.key {
            out = out.key(k.as_slice());
        }
        self.append(topic, out).await
    }

    /// Appends `payload`, raw bytes that do not decode, to `T`'s topic with `key` and the
    /// type header of `T`'s (first) message type: a poisoned message. A handler sends it
    /// to the dead-letter topic at once (or stops, if the topic has no `dlq`).
    pub async fn poison<T: Topic>(&self, key: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        let topic = self.orm.topic_name(T::SPEC);
        let mut headers = crate::producer::Headers::new();
        if let Some(name) = T::SPEC.message_types.first() {
            headers.insert(TYPE_HEADER, *name);
        }
        let mut out = FutureRecord::<[u8], [u8]>::to(&topic)
            .payload(payload)
            .headers(headers.to_rdkafka());
        if let Some(k) = key {
            out = out.key(k);
        }
        self.append(&topic, out).await
    }

    /// The handler of `T`'s topic crashes right after its next database commit, before
    /// the message's offset is stored: nothing more is stored or committed, the harness
    /// restarts it (from its factory), and the message is delivered again. With the
    /// inbox the redelivery is skipped; without a database it is handled again.
    pub fn crash_after_commit<T: Topic>(&self) {
        self.crash_after_commits::<T>(1);
    }

    /// As [`crash_after_commit`](Self::crash_after_commit), after the `n`-th commit from
    /// now.
    pub fn crash_after_commits<T: Topic>(&self, n: u32) {
        self.observer.plan_crash(self.orm.topic_name(T::SPEC), n);
    }

    async fn append(&self, topic: &str, record: FutureRecord<'_, [u8], [u8]>) -> Result<()> {
        self.producer
            .send(record, APPEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(source, _)| Error::Delivery {
                topic: topic.to_string(),
                source,
            })
    }

    fn broker(
        &self,
        job: impl FnOnce(&crate::context::embedded::Cluster) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let broker = self
            .orm
            .embedded_broker()
            .ok_or_else(|| Error::Config("faults need the harness's embedded broker".into()))?;
        broker.run(job)
    }
}
