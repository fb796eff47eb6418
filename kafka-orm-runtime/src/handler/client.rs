//! The handler's Kafka consumer: made and subscribed with the handler's settings, and the
//! two lag readers its metrics, health and worker balancing sample.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use super::partitions::{RunnerContext, Shared};
use super::poll::{Client, ClientGuard};
use super::{Config, PartitionLag};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::telemetry::lag::{self, LagFn};

/// The handler's consumer, subscribed: stored offsets committed every second, and,
/// with an instance name, static membership (a restart under the same name gets its
/// partitions back without a rebalance).
pub(super) fn consumer_for(
    orm: &KafkaOrm,
    group: &str,
    config: &Config,
    shared: &Arc<Shared>,
    topics: &[String],
) -> Result<Client> {
    // Stored offsets are committed by the dispatcher every second (not librdkafka's
    // auto-commit, which would also commit when the consumer is dropped after an abort).
    let mut defaults = vec![
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        (
            "session.timeout.ms",
            crate::defaults::SESSION_TIMEOUT.as_millis().to_string(),
        ),
        (
            "heartbeat.interval.ms",
            crate::defaults::HEARTBEAT_INTERVAL.as_millis().to_string(),
        ),
    ];
    if let Some(id) = &config.instance_id {
        defaults.push(("group.instance.id", id.clone()));
    }
    let defaults: Vec<(&str, &str)> = defaults.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let topic = &shared.topic;
    let client: Client = orm
        .consumer_config_with(group, &defaults)
        .create_with_context(RunnerContext {
            shared: Arc::clone(shared),
        })
        .map_err(|e| Error::kafka(format!("creating the handler consumer for `{topic}`"), e))?;
    let subscribed: Vec<&str> = topics.iter().map(String::as_str).collect();
    client
        .subscribe(&subscribed)
        .map_err(|e| Error::kafka(format!("subscribing to `{topic}`"), e))?;
    Ok(client)
}

/// The lag behind the group's committed offsets, per assigned partition.
pub(super) fn committed_lag_reader(client: Arc<ClientGuard>) -> LagFn {
    Arc::new(move |timeout| lag::committed_lag(client.get().as_ref(), timeout))
}

/// The lag of the consumer's position behind the high watermark, per assigned partition.
pub(super) fn lag_reader(client: Arc<ClientGuard>) -> LagFn {
    Arc::new(move |timeout: Duration| -> Result<Vec<PartitionLag>> {
        let c = client.get();
        let positions = c
            .position()
            .map_err(|e| Error::kafka("reading consumer positions", e))?;
        let mut out = Vec::new();
        for e in positions.elements() {
            let (_, high) = c
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .map_err(|err| {
                    Error::kafka(format!("reading watermarks of `{}`", e.topic()), err)
                })?;
            let position = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(high);
            out.push(PartitionLag {
                topic: e.topic().to_string(),
                partition: e.partition(),
                lag: (high - position).max(0),
            });
        }
        Ok(out)
    })
}
