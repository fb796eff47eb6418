//! [`Outputs`]: what a pipeline handler sends inside the batch's transaction.

use std::collections::VecDeque;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::producer::{self, Headers, Outgoing};
use crate::topic::Producible;

/// Where the handler sends its outputs: every message is produced at once inside the
/// batch's transaction, keyed by the output topic's key fields, and becomes visible to
/// `read_committed` readers only when the transaction commits.
pub struct Outputs {
    pub(super) orm: KafkaOrm,
    pub(super) producer: FutureProducer,
    pub(super) queue_timeout: Duration,
    pub(super) attempt: u32,
    /// Messages waiting for room in librdkafka's queue, in order; once one waits, every
    /// later one waits behind it so per-partition order is kept.
    pub(super) overflow: VecDeque<(String, Outgoing)>,
    pub(super) in_flight: Vec<(String, DeliveryFuture)>,
    pub(super) sent: usize,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("attempt", &self.attempt)
            .field("sent", &self.sent)
            .field("waiting_for_queue", &self.overflow.len())
            .finish_non_exhaustive()
    }
}

impl Outputs {
    /// Produces `value` to its topic inside the transaction and returns the message id it
    /// carries. Does not wait for the broker; [`flush`](Self::flush) does, and the commit
    /// always does.
    pub fn send<O: Producible>(&mut self, value: &O) -> Result<String> {
        self.send_with_headers(value, Headers::new())
    }

    /// [`send`](Self::send) with extra headers (e.g. the input's `traceparent`).
    pub fn send_with_headers<O: Producible>(
        &mut self,
        value: &O,
        headers: Headers,
    ) -> Result<String> {
        self.orm.may_produce(O::SPEC)?;
        let msg = producer::encode(value, headers)?;
        let id = msg.message_id.clone();
        self.enqueue(self.orm.topic_name(O::SPEC), msg)?;
        self.sent += 1;
        Ok(id)
    }

    /// Waits until every output sent so far is acknowledged by the broker (still
    /// uncommitted: `read_committed` readers do not see them before the commit).
    pub async fn flush(&mut self) -> Result<()> {
        self.drain().await?;
        for (topic, delivery) in self.in_flight.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(Error::Delivery { topic, source }),
                Err(_) => return Err(Error::Shutdown),
            }
        }
        Ok(())
    }

    /// How many outputs were sent in this transaction.
    pub fn len(&self) -> usize {
        self.sent
    }

    /// Whether no output was sent in this transaction yet.
    pub fn is_empty(&self) -> bool {
        self.sent == 0
    }

    /// Which attempt at the current batch this is: 1 the first time, counting up after each
    /// abort until a transaction commits.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn try_send(
        &self,
        topic: &str,
        msg: &Outgoing,
    ) -> std::result::Result<DeliveryFuture, KafkaError> {
        self.producer
            .send_result(record_of(topic, msg))
            .map_err(|(e, _)| e)
    }

    pub(super) fn enqueue(&mut self, topic: String, msg: Outgoing) -> Result<()> {
        if self.overflow.is_empty() {
            match self.try_send(&topic, &msg) {
                Ok(delivery) => {
                    self.in_flight.push((topic, delivery));
                    return Ok(());
                }
                Err(e) if is_queue_full(&e) => {}
                Err(source) => return Err(Error::Delivery { topic, source }),
            }
        }
        self.overflow.push_back((topic, msg));
        Ok(())
    }

    /// Produces what waited for room in the queue, waiting for room at most the operation
    /// timeout per message.
    pub(super) async fn drain(&mut self) -> Result<()> {
        while let Some((topic, msg)) = self.overflow.pop_front() {
            let until = std::time::Instant::now() + self.queue_timeout;
            match producer::enqueue(&self.producer, record_of(&topic, &msg), until).await {
                Ok(delivery) => self.in_flight.push((topic, delivery)),
                Err(source) => return Err(Error::Delivery { topic, source }),
            }
        }
        Ok(())
    }
}

fn record_of<'a>(topic: &'a str, msg: &'a Outgoing) -> FutureRecord<'a, Vec<u8>, Vec<u8>> {
    let record = FutureRecord::to(topic)
        .payload(&msg.payload)
        .headers(msg.headers.to_rdkafka());
    match &msg.key {
        Some(key) => record.key(key),
        None => record,
    }
}

fn is_queue_full(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}
