#![doc = include_str!("defaults.md")]

use std::time::Duration;

use crate::topic::RetrySpec;

/// How long `build()` waits for the broker to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a produce may wait for room in the local producer queue.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Decoded messages a stream consumer buffers ahead of the caller.
pub const CONSUMER_BUFFER: usize = 1024;
/// How often lag and outbox backlog gauges are sampled.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a `shutdown()` waits for work in flight before aborting it.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts of a failing handler, the first one included (`retry(attempts = ..)`).
pub const RETRY_ATTEMPTS: u32 = 3;
/// The first in-place backoff, doubled per attempt (`retry(backoff = ..)`).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// The cap on the backoff (`retry(max_backoff = ..)`); also the first retry tier's delay.
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The policy of a topic without `retry(..)` settings: no `retry` and a bare `retry` are
/// the same.
pub const RETRY: RetrySpec = RetrySpec::new(RETRY_ATTEMPTS, RETRY_BACKOFF, RETRY_MAX_BACKOFF);
/// The retry tiers' delays (`retry_topics`), as multiples of `max_backoff`.
pub const RETRY_TIER_FACTORS: [u32; 3] = [1, 4, 16];
/// How long inbox rows are kept before they are purged (`inbox(retention = ..)`).
pub const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a handler purges expired inbox rows.
pub const INBOX_PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Messages (or batches) a handler runs at once, across partitions.
pub const HANDLER_CONCURRENCY: usize = 8;
/// How long the lag must want fewer workers before a lag-balanced handler shrinks
/// ([`Concurrency::by_lag`](crate::handler::Concurrency::by_lag)).
pub const HANDLER_CONCURRENCY_COOLDOWN: Duration = Duration::from_secs(30);
/// Key lanes per partition (1: strict partition order).
pub const HANDLER_KEY_LANES: u32 = 1;
/// A partition pauses when this many of its messages wait or run.
pub const HANDLER_MAX_PENDING: usize = 5000;
/// How long a revoke waits for in-flight handlers of the revoked partitions.
pub const HANDLER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A handler consumer's `session.timeout.ms`: a killed handler's partitions move after
/// this (at once when it restarts under the same `instance_id`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// A handler consumer's `heartbeat.interval.ms`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Rows a relay claims and produces per batch.
pub const RELAY_BATCH: usize = 500;
/// How often a relay looks for rows without a wake-up.
pub const RELAY_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// First backoff of a row that failed to be delivered.
pub const RELAY_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff of a row that failed to be delivered.
pub const RELAY_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest backoff of a row that failed for a transient reason (broker unreachable,
/// timeouts, leader changes): delivery resumes soon after the broker is back.
pub const RELAY_MAX_TRANSIENT_BACKOFF: Duration = Duration::from_secs(1);
/// Lease time-to-live: a dead relay instance's buckets move after this.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// Lease renewal interval.
pub const LEASE_RENEW: Duration = Duration::from_secs(1);
/// A relay is degraded when its oldest waiting row is older than this.
pub const RELAY_HEALTH_MAX_AGE: Duration = Duration::from_secs(60);

/// Input messages per Kafka transaction of a transactional pipeline.
pub const PIPELINE_BATCH: usize = 100;
/// How long a pipeline waits to fill a batch, from its first message.
pub const PIPELINE_MAX_WAIT: Duration = Duration::from_millis(50);
/// Tries of a transactional operation (init, commit, abort) that librdkafka calls
/// retriable, the first one included.
pub const OPERATION_TRIES: u32 = 3;
/// A pipeline producer's `transaction.timeout.ms`.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one transactional operation (init, commit, abort) may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// First backoff of a pipeline batch that failed.
pub const PIPELINE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest backoff of a pipeline batch that failed.
pub const PIPELINE_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long one broker call of the dead-letter reader may take.
pub const DLQ_TIMEOUT: Duration = Duration::from_secs(10);
/// Dead letters a replay sends back per transaction.
pub const REPLAY_BATCH: usize = 100;
/// How long a health check waits for the database's ping (and twice that for the broker's
/// metadata).
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `TestHarness::wait_idle` waits by default.
pub const TEST_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    /// `100ms`, `30s`, `10min`, `7d`: the shortest exact unit, as the attributes write it.
    fn human(d: Duration) -> String {
        let ms = d.as_millis();
        match ms {
            _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
            _ if ms.is_multiple_of(60_000) && ms >= 600_000 => format!("{}min", ms / 60_000),
            _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
            _ => format!("{ms}ms"),
        }
    }

    fn values() -> Vec<(&'static str, String)> {
        let d = |name, v| (name, human(v));
        let n = |name, v: u64| (name, v.to_string());
        vec![
            d("CONNECT_TIMEOUT", CONNECT_TIMEOUT),
            d("SEND_TIMEOUT", SEND_TIMEOUT),
            n("CONSUMER_BUFFER", CONSUMER_BUFFER as u64),
            d("METRICS_INTERVAL", METRICS_INTERVAL),
            d("SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT),
            n("RETRY_ATTEMPTS", RETRY_ATTEMPTS.into()),
            d("RETRY_BACKOFF", RETRY_BACKOFF),
            d("RETRY_MAX_BACKOFF", RETRY_MAX_BACKOFF),
            ("RETRY_TIER_FACTORS", format!("{RETRY_TIER_FACTORS:?}")),
            d("INBOX_RETENTION", INBOX_RETENTION),
            d("INBOX_PURGE_INTERVAL", INBOX_PURGE_INTERVAL),
            n("HANDLER_CONCURRENCY", HANDLER_CONCURRENCY as u64),
            d("HANDLER_CONCURRENCY_COOLDOWN", HANDLER_CONCURRENCY_COOLDOWN),
            n("HANDLER_KEY_LANES", HANDLER_KEY_LANES.into()),
            n("HANDLER_MAX_PENDING", HANDLER_MAX_PENDING as u64),
            d("HANDLER_DRAIN_TIMEOUT", HANDLER_DRAIN_TIMEOUT),
            d("SESSION_TIMEOUT", SESSION_TIMEOUT),
            d("HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL),
            n("RELAY_BATCH", RELAY_BATCH as u64),
            d("RELAY_POLL_INTERVAL", RELAY_POLL_INTERVAL),
            d("RELAY_BACKOFF", RELAY_BACKOFF),
            d("RELAY_MAX_BACKOFF", RELAY_MAX_BACKOFF),
            d("RELAY_MAX_TRANSIENT_BACKOFF", RELAY_MAX_TRANSIENT_BACKOFF),
            d("LEASE_TTL", LEASE_TTL),
            d("LEASE_RENEW", LEASE_RENEW),
            d("RELAY_HEALTH_MAX_AGE", RELAY_HEALTH_MAX_AGE),
            n("PIPELINE_BATCH", PIPELINE_BATCH as u64),
            d("PIPELINE_MAX_WAIT", PIPELINE_MAX_WAIT),
            d("TRANSACTION_TIMEOUT", TRANSACTION_TIMEOUT),
            d("OPERATION_TIMEOUT", OPERATION_TIMEOUT),
            n("OPERATION_TRIES", OPERATION_TRIES.into()),
            d("PIPELINE_BACKOFF", PIPELINE_BACKOFF),
            d("PIPELINE_MAX_BACKOFF", PIPELINE_MAX_BACKOFF),
            d("DLQ_TIMEOUT", DLQ_TIMEOUT),
            n("REPLAY_BATCH", REPLAY_BATCH as u64),
            d("HEALTH_PROBE_TIMEOUT", HEALTH_PROBE_TIMEOUT),
            d("TEST_IDLE_TIMEOUT", TEST_IDLE_TIMEOUT),
        ]
    }

    /// The table's `(constant, value)` rows.
    fn table() -> Vec<(String, String)> {
        include_str!("defaults.md")
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix("[`")?.strip_suffix("`]")?;
                let value = cells.get(2)?.trim_matches('`');
                Some((name.to_string(), value.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_table_quotes_every_default_exactly() {
        let values: Vec<(String, String)> = values()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        assert_eq!(table(), values);
    }

    #[test]
    fn no_retry_and_a_bare_retry_are_one_policy() {
        assert_eq!(RETRY.attempts, RETRY_ATTEMPTS);
        assert_eq!(RETRY.backoff, RETRY_BACKOFF);
        assert_eq!(RETRY.max_backoff, RETRY_MAX_BACKOFF);
    }
}
