//! One batch in one Kafka transaction: begin, dead-letter undecodable input, run the
//! handler, send the input offsets, commit — or abort and rewind.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use super::batch::Batch;
use super::worker::{Outcome, Stop, Worker};
use super::{HandlerError, Outputs, StatsHandle};
use crate::consumer::Delivery;
use crate::error::Error;
use crate::handler::{Failure, RawRecord, dead_letter};
use crate::producer::Outgoing;
use crate::topic::Consumable;

impl<T: Consumable> Worker<T> {
    /// One transaction: begin, dead-letter, handler, offsets, commit.
    pub(super) async fn transact<H>(
        &self,
        mut batch: Batch<T>,
        attempt: u32,
        handler: &mut H,
    ) -> std::result::Result<Outcome, Stop>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
    {
        let ranges = batch.ranges();
        if ranges.is_empty() {
            return Ok(Outcome::Committed);
        }
        let producer = Arc::clone(self.producer.get());
        if let Err(e) = producer.begin_transaction() {
            // Nothing was produced yet: only a fatal error stops us.
            self.fatal_or(e, "beginning a transaction")?;
            self.rewind(&ranges).await;
            return Ok(Outcome::Retry);
        }
        let mut out = Outputs {
            orm: self.orm.clone(),
            producer: (*producer).clone(),
            queue_timeout: self.config.queue_timeout,
            attempt,
            overflow: VecDeque::new(),
            in_flight: Vec::new(),
            sent: 0,
        };

        if let Err(e) = self.dead_letter_undecodable(&batch, &mut out) {
            return self.abort(e.to_string(), &ranges).await;
        }

        if let Some(outcome) = self
            .run_handler(&mut batch, attempt, handler, &mut out, &ranges)
            .await?
        {
            return Ok(outcome);
        }
        if let Some(outcome) = self.commit(&producer, &ranges).await? {
            return Ok(outcome);
        }
        self.metrics.consumed.increment(batch.len() as u64);
        self.metrics.outputs.increment(out.sent as u64);
        self.metrics
            .undecodable
            .increment(batch.undecodable.len() as u64);
        let s = &self.stats.0;
        StatsHandle::add(&s.committed, 1);
        StatsHandle::add(&s.consumed, batch.len() as u64);
        StatsHandle::add(&s.produced, out.sent as u64);
        if self.config.dlq_topic.is_some() {
            StatsHandle::add(&s.dead_lettered, batch.undecodable.len() as u64);
        } else {
            StatsHandle::add(&s.skipped, batch.undecodable.len() as u64);
        }
        tracing::debug!(
            messages = batch.len(),
            outputs = out.sent,
            "transaction committed"
        );
        Ok(Outcome::Committed)
    }

    /// Undecodable input goes to the dead-letter topic inside the transaction (attempts 0:
    /// it never reached a handler), with the handler's dead-letter headers.
    fn dead_letter_undecodable(
        &self,
        batch: &Batch<T>,
        out: &mut Outputs,
    ) -> crate::error::Result<()> {
        let Some(dlq) = &self.config.dlq_topic else {
            return Ok(());
        };
        for u in &batch.undecodable {
            let raw = RawRecord {
                topic: self.config.topic.clone(),
                partition: u.partition,
                offset: u.offset,
                key: u.key.clone(),
                payload: u.payload.clone(),
                headers: u.headers.clone(),
            };
            let failure = Failure {
                group: &self.config.group,
                attempts: 0,
                error: u.error.clone(),
                first_ms: u.failed_ms,
                last_ms: u.failed_ms,
            };
            let record = dead_letter(&raw, failure);
            let msg = Outgoing {
                key: record.key,
                payload: record.payload.unwrap_or_default(),
                headers: record.headers,
                message_id: String::new(),
            };
            out.enqueue(dlq.clone(), msg)?;
        }
        Ok(())
    }

    /// Runs the handler on the batch; `Some` when the transaction was aborted instead.
    async fn run_handler<H>(
        &self,
        batch: &mut Batch<T>,
        attempt: u32,
        handler: &mut H,
        out: &mut Outputs,
        ranges: &BTreeMap<i32, (i64, i64)>,
    ) -> std::result::Result<Option<Outcome>, Stop>
    where
        H: AsyncFnMut(&[Delivery<T>], &mut Outputs) -> Result<(), HandlerError>,
    {
        let (out, ranges) = (out, ranges);
        for d in &mut batch.deliveries {
            d.attempt = attempt;
        }
        let handled = AssertUnwindSafe(handler(&batch.deliveries, out))
            .catch_unwind()
            .await;
        match handled {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let reason = format!("the handler failed: {e}");
                return self.abort(reason, ranges).await.map(Some);
            }
            Err(panic) => {
                tracing::error!(
                    transactional_id = %self.config.transactional_id,
                    "transactional pipeline: the handler panicked; aborting the transaction"
                );
                let _ = self.abort("the handler panicked".into(), ranges).await;
                return Err(Stop::Panic(panic));
            }
        }
        if let Err(e) = out.drain().await {
            return self.abort(e.to_string(), ranges).await.map(Some);
        }

        Ok(None)
    }

    /// Sends the batch's offsets to the transaction and commits it; `Some` when it was
    /// aborted instead.
    async fn commit(
        &self,
        producer: &Arc<rdkafka::producer::FutureProducer>,
        ranges: &BTreeMap<i32, (i64, i64)>,
    ) -> std::result::Result<Option<Outcome>, Stop> {
        // The offsets after the batch, with the group generation they were read in.
        let mut offsets = TopicPartitionList::new();
        for (&p, &(_, last)) in ranges {
            offsets
                .add_partition_offset(&self.config.topic, p, Offset::Offset(last + 1))
                .map_err(|e| Error::kafka("building the offsets of the transaction", e))?;
        }
        let Some(metadata) = self.consumer.get().group_metadata() else {
            return Err(Stop::Error(Error::Config(format!(
                "the consumer of `{}` has no group metadata",
                self.config.topic
            ))));
        };
        let metadata = Arc::new(metadata);
        let timeout = self.config.operation_timeout;
        let sent = self
            .blocking_retried("sending the offsets to the transaction", {
                let producer = Arc::clone(producer);
                move || producer.send_offsets_to_transaction(&offsets, &metadata, timeout)
            })
            .await?;
        if let Err(e) = sent {
            self.fatal_or(e.clone(), "sending the offsets to the transaction")?;
            return self.abort(e.to_string(), ranges).await.map(Some);
        }

        let committed = self
            .blocking_retried("committing the transaction", {
                let producer = Arc::clone(producer);
                move || producer.commit_transaction(timeout)
            })
            .await?;
        if let Err(e) = committed {
            self.fatal_or(e.clone(), "committing the transaction")?;
            return self.abort(e.to_string(), ranges).await.map(Some);
        }

        Ok(None)
    }

    /// Runs a blocking transactional call, again while librdkafka says it is retriable.
    /// The outer error is only for a lost blocking thread.
    async fn blocking_retried<F>(
        &self,
        what: &str,
        call: F,
    ) -> std::result::Result<std::result::Result<(), KafkaError>, Stop>
    where
        F: Fn() -> std::result::Result<(), KafkaError> + Send + Sync + 'static,
    {
        let call = Arc::new(call);
        let mut tries = 0;
        loop {
            tries += 1;
            let c = Arc::clone(&call);
            let result = tokio::task::spawn_blocking(move || c())
                .await
                .map_err(|_| Stop::Error(Error::Shutdown))?;
            match result {
                Err(KafkaError::Transaction(ref e))
                    if e.is_retriable() && tries < crate::defaults::OPERATION_TRIES =>
                {
                    tracing::warn!(error = %e, tries, "transactional pipeline: {what} failed; retrying");
                }
                other => return Ok(other),
            }
        }
    }

    /// Returns a stopping error when `e` (or the producer's state) is fatal.
    fn fatal_or(&self, e: KafkaError, what: &str) -> std::result::Result<(), Stop> {
        let client_fatal = self.producer.get().client().fatal_error();
        let (source, reason) = match (&e, client_fatal) {
            // librdkafka's error already says why.
            (KafkaError::Transaction(t), _) if t.is_fatal() => (e, None),
            (_, Some((code, reason))) => (KafkaError::Global(code), Some(format!("{reason}; {e}"))),
            _ => return Ok(()),
        };
        tracing::error!(
            transactional_id = %self.config.transactional_id,
            error = %source,
            "transactional pipeline: fatal producer error while {what}"
        );
        let context = match reason {
            Some(reason) => format!(
                "{what} for `{}` (fatal: {reason})",
                self.config.transactional_id
            ),
            None => format!("{what} for `{}` (fatal)", self.config.transactional_id),
        };
        Err(Stop::Error(Error::kafka(context, source)))
    }

    /// Aborts the open transaction and rewinds the consumer to the batch start.
    async fn abort(
        &self,
        reason: String,
        ranges: &BTreeMap<i32, (i64, i64)>,
    ) -> std::result::Result<Outcome, Stop> {
        tracing::warn!(
            transactional_id = %self.config.transactional_id,
            %reason,
            "transactional pipeline: aborting the transaction; the batch will be retried"
        );
        if let Some((code, why)) = self.producer.get().client().fatal_error() {
            return Err(Stop::Error(Error::kafka(
                format!(
                    "aborting the transaction of `{}` after: {reason} (fatal: {why})",
                    self.config.transactional_id
                ),
                KafkaError::Global(code),
            )));
        }
        let producer = Arc::clone(self.producer.get());
        let timeout = self.config.operation_timeout;
        let aborted = self
            .blocking_retried("aborting the transaction", move || {
                producer.abort_transaction(timeout)
            })
            .await?;
        if let Err(e) = aborted {
            // An abort that cannot complete leaves the producer unusable.
            self.fatal_or(e.clone(), "aborting the transaction")?;
            return Err(Stop::Error(Error::kafka(
                format!(
                    "aborting the transaction of `{}` after: {reason}",
                    self.config.transactional_id
                ),
                e,
            )));
        }
        StatsHandle::add(&self.stats.0.aborted, 1);
        self.rewind(ranges).await;
        Ok(Outcome::Retry)
    }

    /// Seeks each partition of the batch back to its first offset, so the next batch
    /// starts with the same messages. A partition that is no longer assigned is skipped:
    /// its new owner starts at the committed offset, which is the batch start.
    async fn rewind(&self, ranges: &BTreeMap<i32, (i64, i64)>) {
        let mut tpl = TopicPartitionList::new();
        for (&p, &(first, _)) in ranges {
            if tpl
                .add_partition_offset(&self.config.topic, p, Offset::Offset(first))
                .is_err()
            {
                continue;
            }
        }
        let consumer = Arc::clone(self.consumer.get());
        let timeout = self.config.operation_timeout;
        let result =
            tokio::task::spawn_blocking(move || consumer.seek_partitions(tpl, timeout)).await;
        match result {
            Ok(Ok(tpl)) => {
                for e in tpl.elements() {
                    if let Err(err) = e.error() {
                        tracing::info!(partition = e.partition(), error = %err, "transactional pipeline: not rewound (no longer assigned?)");
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "transactional pipeline: rewinding the consumer failed")
            }
            Err(_) => {
                tracing::warn!("transactional pipeline: rewinding the consumer was cancelled")
            }
        }
    }
}
