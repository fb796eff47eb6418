//! Forwarding a message to the dead-letter topic or a retry tier **once**, even when the
//! consumer crashes right after: the forwarded record and the source partition's
//! committed offset (one past the message) are written in one Kafka transaction, with the
//! consumer's group metadata (KIP-447), so either both happen or neither.
//!
//! The runner forwards a message only when it is its partition's watermark head (every
//! earlier offset finished), and commits the consumer's stored offsets synchronously
//! first, so no later auto-commit of an older offset can undo the transaction's commit.
//! The forwarded records are transactional: read them with `isolation.level =
//! read_committed` (librdkafka's and kafka-orm's default).
//!
//! The producer's `transactional.id` is `<group>.<topic>.forward.<instance>`: with a
//! stable instance name a restarted consumer fences its predecessor's open transaction at
//! once; with the default random name an abandoned transaction is aborted by the broker
//! after `transaction.timeout.ms` (10 s here).

use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::Mutex;

use super::dlq::RawRecord;
use crate::error::{Error, Result};
use crate::producer::{self, blocking};

/// One record to forward, and the source offset to commit with it.
pub(crate) struct Forward<'a> {
    pub topic: &'a str,
    pub record: &'a RawRecord,
    pub offsets: TopicPartitionList,
    pub group: ConsumerGroupMetadata,
}

/// A transactional producer for forwarded records, one transaction at a time.
pub(crate) struct Forwarder {
    producer: FutureProducer,
    lock: Mutex<()>,
    timeout: Duration,
}

impl Forwarder {
    /// Creates the producer and initializes its transactions (fencing a predecessor with
    /// the same transactional id).
    pub async fn start(
        mut cfg: ClientConfig,
        transactional_id: String,
        timeout: Duration,
    ) -> Result<Self> {
        cfg.set("transactional.id", &transactional_id)
            .set("transaction.timeout.ms", "10000")
            .set("message.timeout.ms", "10000");
        let producer: FutureProducer = cfg
            .create()
            .map_err(|e| Error::kafka("creating the dead-letter producer", e))?;
        producer::init_transactions(&producer, &transactional_id, timeout).await?;
        Ok(Forwarder {
            producer,
            lock: Mutex::new(()),
            timeout,
        })
    }

    /// Sends `record` to `topic` and commits `offsets` for `group` in one transaction.
    pub async fn send(&self, forward: Forward<'_>) -> Result<()> {
        let topic = forward.topic;
        let _one_at_a_time = self.lock.lock().await;
        let ctx = |what: &str| format!("{what} (forwarding to `{topic}`)");
        let p = self.producer.clone();
        blocking(move || p.begin_transaction())
            .await
            .map_err(|e| Error::kafka(ctx("beginning a transaction"), e))?;
        let result = self.within(forward).await;
        if result.is_err() {
            let p = self.producer.clone();
            let timeout = self.timeout;
            let _ = blocking(move || p.abort_transaction(timeout)).await;
        }
        result
    }

    async fn within(&self, forward: Forward<'_>) -> Result<()> {
        let Forward {
            topic,
            record,
            offsets,
            group,
        } = forward;
        let headers = record.headers.to_rdkafka();
        let payload = record.payload.clone().unwrap_or_default();
        let mut out = FutureRecord::to(topic).payload(&payload).headers(headers);
        if let Some(k) = &record.key {
            out = out.key(k);
        }
        self.producer
            .send(out, self.timeout)
            .await
            .map_err(|(source, _)| Error::Delivery {
                topic: topic.to_string(),
                source,
            })?;
        let (p, timeout) = (self.producer.clone(), self.timeout);
        blocking(move || p.send_offsets_to_transaction(&offsets, &group, timeout))
            .await
            .map_err(|e| Error::kafka("sending the source offset to the transaction", e))?;
        let p = self.producer.clone();
        blocking(move || p.commit_transaction(timeout))
            .await
            .map_err(|e| Error::kafka("committing the forwarding transaction", e))
    }
}
