//! Every metric kafka-orm records, named once: [`METRICS`] describes them (the table of
//! the [module docs](super) is checked against it), the label keys are [`label`], and the
//! small recorders below are what the producer, the relay, handlers and streams call.
//!
//! Recording goes through the [`metrics`] facade: nothing is exported unless the
//! application installs a recorder (e.g. `metrics-exporter-prometheus`). Handles are
//! registered when a relay, handler or stream starts, so install the recorder before
//! starting them (first thing in `main`).

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label, Unit};

use MetricKind::{Counter as C, Gauge as G, Histogram as H};
use label::{DESTINATION, ERROR_TYPE, GROUP, OPERATION, PARTITION, REBALANCE, SYSTEM, TABLE};

/// Label keys: OpenTelemetry messaging attributes where they exist, `kafka_orm.*` for ours.
pub mod label {
    /// Always `"kafka"`.
    pub const SYSTEM: &str = "messaging.system";
    /// The topic, with the context's namespace.
    pub const DESTINATION: &str = "messaging.destination.name";
    /// The consumer group, with the context's namespace.
    pub const GROUP: &str = "messaging.consumer.group.name";
    /// The partition number, as text.
    pub const PARTITION: &str = "messaging.destination.partition.id";
    /// `send` (produce), `poll` (received by a consumer), `process` (a handler).
    pub const OPERATION: &str = "messaging.operation.name";
    /// Why the operation failed; absent when it succeeded.
    pub const ERROR_TYPE: &str = "error.type";
    /// The outbox table.
    pub const TABLE: &str = "kafka_orm.outbox.table";
    /// `assign` or `revoke`.
    pub const REBALANCE: &str = "kafka_orm.rebalance";
}

/// The value of [`label::SYSTEM`].
pub const KAFKA: &str = "kafka";

/// Metric names, one constant each.
pub mod name {
    /// Counter: messages sent by `produce`, `produce_with_headers` and `produce_all`.
    pub const SENT_MESSAGES: &str = "messaging.client.sent.messages";
    /// Counter: messages received by handlers and `consume()` streams.
    pub const CONSUMED_MESSAGES: &str = "messaging.client.consumed.messages";
    /// Histogram: one handler transaction (inbox row, handler, commit), in seconds.
    pub const PROCESS_DURATION: &str = "messaging.process.duration";
    /// Counter: rows written into an outbox by `publish` / `publish_all`.
    pub const OUTBOX_PUBLISHED: &str = "kafka_orm.outbox.published";
    /// Gauge: rows waiting in an outbox table.
    pub const OUTBOX_BACKLOG: &str = "kafka_orm.outbox.backlog";
    /// Gauge: age of the oldest waiting row, in seconds.
    pub const OUTBOX_OLDEST_AGE: &str = "kafka_orm.outbox.oldest_age";
    /// Histogram: rows per relay batch.
    pub const RELAY_BATCH_SIZE: &str = "kafka_orm.relay.batch.size";
    /// Histogram: one relay batch (produce, wait for acks, delete), in seconds.
    pub const RELAY_BATCH_DURATION: &str = "kafka_orm.relay.batch.duration";
    /// Counter: rows delivered and deleted.
    pub const RELAY_DELIVERED: &str = "kafka_orm.relay.delivered";
    /// Counter: failed delivery attempts.
    pub const RELAY_FAILED: &str = "kafka_orm.relay.failed";
    /// Counter: delivered rows left for another relay (the lease had passed on).
    pub const RELAY_FENCED: &str = "kafka_orm.relay.fenced";
    /// Gauge: key-hash buckets this relay instance owns.
    pub const RELAY_BUCKETS: &str = "kafka_orm.relay.buckets";
    /// Counter: messages a handler applied and committed.
    pub const HANDLER_HANDLED: &str = "kafka_orm.handler.handled";
    /// Counter: messages a handler skipped because the inbox had them.
    pub const HANDLER_DUPLICATES: &str = "kafka_orm.handler.duplicates";
    /// Counter: failed handler attempts that are retried (in place or through a retry topic).
    pub const HANDLER_RETRIES: &str = "kafka_orm.handler.retries";
    /// Counter: messages sent to the dead-letter topic.
    pub const HANDLER_DEAD_LETTERED: &str = "kafka_orm.handler.dead_lettered";
    /// Counter: rebalance callbacks, by `kafka_orm.rebalance`.
    pub const HANDLER_REBALANCES: &str = "kafka_orm.handler.rebalances";
    /// Counter: partitions paused for backpressure.
    pub const HANDLER_PAUSES: &str = "kafka_orm.handler.pauses";
    /// Counter: payloads that could not be decoded (handlers and streams).
    pub const CONSUMER_UNDECODABLE: &str = "kafka_orm.consumer.undecodable";
    /// Gauge: high watermark minus the group's committed offset, per partition.
    pub const CONSUMER_LAG: &str = "kafka_orm.consumer.lag";
}

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// A sampled value.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric: what the docs' table lists and what is described to the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// The name (OpenTelemetry style, dotted; Prometheus shows dots as underscores).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The UCUM unit: `s`, or a count in braces (`{message}`).
    pub unit: &'static str,
    /// Its label keys (see [`label`]); `error.type` only on failures.
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

const OUTBOX: &[&str] = &[SYSTEM, DESTINATION, TABLE];
const CONSUMER: &[&str] = &[SYSTEM, DESTINATION, GROUP];

const fn spec(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

/// Every metric kafka-orm records.
pub const METRICS: &[MetricSpec] = &[
    spec(
        name::SENT_MESSAGES,
        C,
        "{message}",
        &[SYSTEM, DESTINATION, OPERATION, ERROR_TYPE],
        "Messages sent by produce (acknowledged; with error.type when the send failed)",
    ),
    spec(
        name::CONSUMED_MESSAGES,
        C,
        "{message}",
        &[SYSTEM, DESTINATION, GROUP, OPERATION],
        "Messages received by handlers and consume() streams",
    ),
    spec(
        name::PROCESS_DURATION,
        H,
        "s",
        &[SYSTEM, DESTINATION, GROUP, OPERATION, ERROR_TYPE],
        "One handler transaction: inbox row, handler, commit (a batch in batch mode)",
    ),
    spec(
        name::OUTBOX_PUBLISHED,
        C,
        "{row}",
        OUTBOX,
        "Rows written into an outbox by publish (rows of rolled-back transactions included)",
    ),
    spec(
        name::OUTBOX_BACKLOG,
        G,
        "{row}",
        OUTBOX,
        "Rows waiting in the outbox table, sampled by each relay",
    ),
    spec(
        name::OUTBOX_OLDEST_AGE,
        G,
        "s",
        OUTBOX,
        "Age of the oldest waiting row (0 when empty), sampled by each relay",
    ),
    spec(
        name::RELAY_BATCH_SIZE,
        H,
        "{row}",
        OUTBOX,
        "Rows claimed per relay batch",
    ),
    spec(
        name::RELAY_BATCH_DURATION,
        H,
        "s",
        OUTBOX,
        "One relay batch: claim, produce, wait for the acknowledgements, delete",
    ),
    spec(
        name::RELAY_DELIVERED,
        C,
        "{row}",
        OUTBOX,
        "Rows acknowledged by the broker and deleted",
    ),
    spec(
        name::RELAY_FAILED,
        C,
        "{row}",
        &[SYSTEM, DESTINATION, TABLE, ERROR_TYPE],
        "Failed delivery attempts; error.type is transient (retried within 1 s) or permanent",
    ),
    spec(
        name::RELAY_FENCED,
        C,
        "{row}",
        OUTBOX,
        "Delivered rows not deleted because the lease had passed on (delivered again)",
    ),
    spec(
        name::RELAY_BUCKETS,
        G,
        "{bucket}",
        OUTBOX,
        "Key-hash buckets this relay instance owns (of 64 per table)",
    ),
    spec(
        name::HANDLER_HANDLED,
        C,
        "{message}",
        CONSUMER,
        "Messages applied and committed",
    ),
    spec(
        name::HANDLER_DUPLICATES,
        C,
        "{message}",
        CONSUMER,
        "Messages skipped because the inbox had them",
    ),
    spec(
        name::HANDLER_RETRIES,
        C,
        "{attempt}",
        CONSUMER,
        "Failed handler attempts retried in place or through a retry topic",
    ),
    spec(
        name::HANDLER_DEAD_LETTERED,
        C,
        "{message}",
        CONSUMER,
        "Messages sent to the dead-letter topic (failed or undecodable)",
    ),
    spec(
        name::HANDLER_REBALANCES,
        C,
        "{rebalance}",
        &[SYSTEM, DESTINATION, GROUP, REBALANCE],
        "Partition assignments (assign) and revocations (revoke)",
    ),
    spec(
        name::HANDLER_PAUSES,
        C,
        "{pause}",
        CONSUMER,
        "Partitions paused because too many of their messages were pending",
    ),
    spec(
        name::CONSUMER_UNDECODABLE,
        C,
        "{message}",
        CONSUMER,
        "Payloads that could not be decoded (handlers and streams)",
    ),
    spec(
        name::CONSUMER_LAG,
        G,
        "{message}",
        &[SYSTEM, DESTINATION, GROUP, PARTITION],
        "High watermark minus the group's committed offset, per assigned partition, sampled",
    ),
];

/// Describes every metric to the installed recorder (help text and unit). Cheap; called
/// whenever a component starts, so a recorder installed late still gets the descriptions.
pub fn describe() {
    for m in METRICS {
        let unit = if m.unit == "s" {
            Unit::Seconds
        } else {
            Unit::Count
        };
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, unit, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, unit, m.help),
            MetricKind::Histogram => metrics::describe_histogram!(m.name, unit, m.help),
        }
    }
}

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
    pub assigned: Counter,
    pub revoked: Counter,
}

impl HandlerMetrics {
    /// Registers the handles of a handler of `topic` in `group`.
    pub fn new(topic: &str, group: &str) -> Self {
        describe();
        let consumer = [(SYSTEM, KAFKA), (DESTINATION, topic), (GROUP, group)];
        let with = |key, value| {
            let mut pairs = consumer.to_vec();
            pairs.push((key, value));
            pairs
        };
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
        let consumer = [(SYSTEM, KAFKA), (DESTINATION, topic), (GROUP, group)];
        let mut poll = consumer.to_vec();
        poll.push((OPERATION, "poll"));
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
