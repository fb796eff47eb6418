//! Every metric kafka-orm records, named once: [`METRICS`] describes them (the table of
//! the [module docs](super) is checked against it), the label keys are [`label`], and the
//! small recorders below are what the producer, the relay, handlers and streams call.
//!
//! Recording goes through the [`metrics`] facade: nothing is exported unless the
//! application installs a recorder (e.g. `metrics-exporter-prometheus`). Handles are
//! registered when a relay, handler or stream starts, so install the recorder before
//! starting them (first thing in `main`).

use metrics::Unit;

use MetricKind::{Counter as C, Gauge as G, Histogram as H};
use label::{
    DESTINATION, ERROR_TYPE, GROUP, OPERATION, OUTCOME, PARTITION, REBALANCE, SYSTEM, TABLE,
};

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
    /// How a Kafka transaction ended: `committed` or `aborted`.
    pub const OUTCOME: &str = "kafka_orm.transaction.outcome";
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
    /// Gauge: handler calls a handler allows at once (its workers), fixed or lag-balanced.
    pub const HANDLER_CONCURRENCY: &str = "kafka_orm.handler.concurrency";
    /// Counter: payloads that could not be decoded (handlers and streams).
    pub const CONSUMER_UNDECODABLE: &str = "kafka_orm.consumer.undecodable";
    /// Gauge: high watermark minus the group's committed offset, per partition.
    pub const CONSUMER_LAG: &str = "kafka_orm.consumer.lag";
    /// Counter: Kafka transactions of a transactional pipeline, by outcome.
    pub const PIPELINE_TRANSACTIONS: &str = "kafka_orm.pipeline.transactions";
    /// Histogram: one pipeline transaction (handler, outputs, offsets, commit or abort), in
    /// seconds.
    pub const PIPELINE_TRANSACTION_DURATION: &str = "kafka_orm.pipeline.transaction.duration";
    /// Counter: outputs a pipeline committed.
    pub const PIPELINE_OUTPUTS: &str = "kafka_orm.pipeline.outputs";
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
        name::HANDLER_CONCURRENCY,
        G,
        "{worker}",
        CONSUMER,
        "Handler calls allowed at once (workers): fixed, or as the lag last set them; 0 once stopped",
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
    spec(
        name::PIPELINE_TRANSACTIONS,
        C,
        "{transaction}",
        &[SYSTEM, DESTINATION, GROUP, OUTCOME],
        "Kafka transactions of a transactional pipeline: committed, or aborted (and retried)",
    ),
    spec(
        name::PIPELINE_TRANSACTION_DURATION,
        H,
        "s",
        &[SYSTEM, DESTINATION, GROUP, OUTCOME],
        "One pipeline transaction: handler, outputs, offsets, then commit or abort",
    ),
    spec(
        name::PIPELINE_OUTPUTS,
        C,
        "{message}",
        CONSUMER,
        "Outputs a pipeline committed (with the input offsets, in one transaction)",
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

pub(crate) use super::record::{
    HandlerMetrics, PipelineMetrics, RelayMetrics, StreamMetrics, lag_gauge, published, sent,
};
