//! The small recorders the producer, the relay, handlers, streams and pipelines call: each
//! registers its handles once, when its component starts, with the names and labels of
//! [`metrics`](super::metrics).

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use super::metrics::label::{
    DESTINATION, ERROR_TYPE, GROUP, OPERATION, OUTCOME, PARTITION, REBALANCE, SYSTEM, TABLE,
};
use super::metrics::{KAFKA, describe, name};

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect()
}

fn counter(name: &'static str, pairs: &[(&'static str, &str)]) -> Counter {
    metrics::counter!(name, labels(pairs))
}

fn gauge(name: &'static str, pairs: &[(&'static str, &str)]) -> Gauge {
    metrics::gauge!(name, labels(pairs))
}

fn histogram(name: &'static str, pairs: &[(&'static str, &str)]) -> Histogram {
    metrics::histogram!(name, labels(pairs))
}

/// One message sent by direct produce; `error` names the failure class, if it failed.
pub(crate) fn sent(topic: &str, error: Option<&str>) {
    let mut pairs = vec![(SYSTEM, KAFKA), (DESTINATION, topic), (OPERATION, "send")];
    if let Some(e) = error {
        pairs.push((ERROR_TYPE, e));
    }
    counter(name::SENT_MESSAGES, &pairs).increment(1);
}

/// `rows` rows written into `table`, the outbox of `topic`.
pub(crate) fn published(topic: &str, table: &str, rows: u64) {
    counter(
        name::OUTBOX_PUBLISHED,
        &[(SYSTEM, KAFKA), (DESTINATION, topic), (TABLE, table)],
    )
    .increment(rows);
}

/// The relay's handles for one outbox table.
#[derive(Clone)]
pub(crate) struct RelayMetrics {
    batch_size: Histogram,
    batch_duration: Histogram,
    delivered: Counter,
    failed_transient: Counter,
    failed_permanent: Counter,
    fenced: Counter,
    backlog: Gauge,
    oldest_age: Gauge,
    buckets: Gauge,
}

impl RelayMetrics {
    /// Registers the handles of `table`, the outbox of `topic`.
    pub fn new(table: &str, topic: &str) -> Self {
        describe();
        let outbox = [(SYSTEM, KAFKA), (DESTINATION, topic), (TABLE, table)];
        let failed = |kind| {
            let mut pairs = outbox.to_vec();
            pairs.push((ERROR_TYPE, kind));
            counter(name::RELAY_FAILED, &pairs)
        };
        RelayMetrics {
            batch_size: histogram(name::RELAY_BATCH_SIZE, &outbox),
            batch_duration: histogram(name::RELAY_BATCH_DURATION, &outbox),
            delivered: counter(name::RELAY_DELIVERED, &outbox),
            failed_transient: failed("transient"),
            failed_permanent: failed("permanent"),
            fenced: counter(name::RELAY_FENCED, &outbox),
            backlog: gauge(name::OUTBOX_BACKLOG, &outbox),
            oldest_age: gauge(name::OUTBOX_OLDEST_AGE, &outbox),
            buckets: gauge(name::RELAY_BUCKETS, &outbox),
        }
    }

    /// One batch of `rows` rows that took `elapsed`.
    pub fn batch(&self, rows: usize, elapsed: Duration) {
        self.batch_size.record(rows as f64);
        self.batch_duration.record(elapsed.as_secs_f64());
    }

    /// Rows delivered and deleted, and delivered rows fenced off.
    pub fn delivered(&self, deleted: u64, fenced: u64) {
        self.delivered.increment(deleted);
        self.fenced.increment(fenced);
    }

    /// One failed delivery attempt.
    pub fn failed(&self, transient: bool) {
        if transient {
            self.failed_transient.increment(1);
        } else {
            self.failed_permanent.increment(1);
        }
    }

    /// The buckets this relay instance owns, sampled.
    pub fn buckets(&self, owned: usize) {
        self.buckets.set(owned as f64);
    }

    /// A backlog sample.
    pub fn backlog(&self, rows: u64, oldest_age: Option<Duration>) {
        self.backlog.set(rows as f64);
        self.oldest_age
            .set(oldest_age.unwrap_or_default().as_secs_f64());
    }
}

/// The labels of a consumer's metrics: system, topic, group.
fn consumer_labels<'a>(topic: &'a str, group: &'a str) -> [(&'static str, &'a str); 3] {
    [(SYSTEM, KAFKA), (DESTINATION, topic), (GROUP, group)]
}

/// `base` and one more label.
fn with_label<'a>(
    base: &[(&'static str, &'a str)],
    key: &'static str,
    value: &'a str,
) -> Vec<(&'static str, &'a str)> {
    let mut pairs = base.to_vec();
    pairs.push((key, value));
    pairs
}

/// A handler's handles.
pub(crate) struct HandlerMetrics {
    pub consumed: Counter,
    process: Histogram,
    process_failed: Histogram,
    pub handled: Counter,
    pub duplicates: Counter,
    pub retries: Counter,
    pub dead_lettered: Counter,
    pub undecodable: Counter,
    pub pauses: Counter,
    /// The workers (handler calls allowed at once).
    pub concurrency: Gauge,
    pub assigned: Counter,
    pub revoked: Counter,
}

impl HandlerMetrics {
    /// Registers the handles of a handler of `topic` in `group`.
    pub fn new(topic: &str, group: &str) -> Self {
        describe();
        let consumer = consumer_labels(topic, group);
        let with = |key, value| with_label(&consumer, key, value);
        let process = with(OPERATION, "process");
        let mut process_failed = process.clone();
        process_failed.push((ERROR_TYPE, "handler_error"));
        HandlerMetrics {
            consumed: counter(name::CONSUMED_MESSAGES, &with(OPERATION, "poll")),
            process: histogram(name::PROCESS_DURATION, &process),
            process_failed: histogram(name::PROCESS_DURATION, &process_failed),
            handled: counter(name::HANDLER_HANDLED, &consumer),
            duplicates: counter(name::HANDLER_DUPLICATES, &consumer),
            retries: counter(name::HANDLER_RETRIES, &consumer),
            dead_lettered: counter(name::HANDLER_DEAD_LETTERED, &consumer),
            undecodable: counter(name::CONSUMER_UNDECODABLE, &consumer),
            pauses: counter(name::HANDLER_PAUSES, &consumer),
            concurrency: gauge(name::HANDLER_CONCURRENCY, &consumer),
            assigned: counter(name::HANDLER_REBALANCES, &with(REBALANCE, "assign")),
            revoked: counter(name::HANDLER_REBALANCES, &with(REBALANCE, "revoke")),
        }
    }

    /// One handler transaction that took `elapsed`; `ok` when it committed.
    pub fn processed(&self, elapsed: Duration, ok: bool) {
        let h = if ok {
            &self.process
        } else {
            &self.process_failed
        };
        h.record(elapsed.as_secs_f64());
    }
}

/// A `consume()` stream's handles.
pub(crate) struct StreamMetrics {
    pub consumed: Counter,
    pub undecodable: Counter,
}

impl StreamMetrics {
    /// Registers the handles of a stream of `topic` in `group`.
    pub fn new(topic: &str, group: &str) -> Self {
        describe();
        let consumer = consumer_labels(topic, group);
        let poll = with_label(&consumer, OPERATION, "poll");
        StreamMetrics {
            consumed: counter(name::CONSUMED_MESSAGES, &poll),
            undecodable: counter(name::CONSUMER_UNDECODABLE, &consumer),
        }
    }
}

/// The lag gauge of one partition.
pub(crate) fn lag_gauge(topic: &str, group: &str, partition: i32) -> Gauge {
    gauge(
        name::CONSUMER_LAG,
        &[
            (SYSTEM, KAFKA),
            (DESTINATION, topic),
            (GROUP, group),
            (PARTITION, &partition.to_string()),
        ],
    )
}

/// A transactional pipeline's handles.
pub(crate) struct PipelineMetrics {
    pub consumed: Counter,
    pub undecodable: Counter,
    pub outputs: Counter,
    committed: Counter,
    aborted: Counter,
    committed_duration: Histogram,
    aborted_duration: Histogram,
}

impl PipelineMetrics {
    /// Registers the handles of a pipeline reading `topic` in `group`.
    pub fn new(topic: &str, group: &str) -> Self {
        describe();
        let consumer = consumer_labels(topic, group);
        let with = |key, value| with_label(&consumer, key, value);
        PipelineMetrics {
            consumed: counter(name::CONSUMED_MESSAGES, &with(OPERATION, "poll")),
            undecodable: counter(name::CONSUMER_UNDECODABLE, &consumer),
            outputs: counter(name::PIPELINE_OUTPUTS, &consumer),
            committed: counter(name::PIPELINE_TRANSACTIONS, &with(OUTCOME, "committed")),
            aborted: counter(name::PIPELINE_TRANSACTIONS, &with(OUTCOME, "aborted")),
            committed_duration: histogram(
                name::PIPELINE_TRANSACTION_DURATION,
                &with(OUTCOME, "committed"),
            ),
            aborted_duration: histogram(
                name::PIPELINE_TRANSACTION_DURATION,
                &with(OUTCOME, "aborted"),
            ),
        }
    }

    /// One transaction that took `elapsed`; `committed` or aborted.
    pub fn transaction(&self, elapsed: Duration, committed: bool) {
        let (count, duration) = if committed {
            (&self.committed, &self.committed_duration)
        } else {
            (&self.aborted, &self.aborted_duration)
        };
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}
