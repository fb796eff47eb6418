//! Committed-offset lag: per assigned partition, the broker's high watermark minus the
//! group's committed offset (what a restart would resume from), not the consumer's
//! position. [`committed_lag`] computes it; [`LagSampler`] samples it every few seconds on
//! a thread of its own (the calls block on the broker), feeds the
//! [`kafka_orm.consumer.lag`](super::metrics::name::CONSUMER_LAG) gauges and keeps the
//! last sample for health checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Consumer lag of one partition (see [`RunningHandler::lag`](crate::handler::RunningHandler::lag)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic (the handler's topic or one of its retry tiers).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Messages before the end of the partition, counted from the group's committed
    /// offset ([`RunningHandler::committed_lag`](crate::handler::RunningHandler::committed_lag), [`TopicConsumer::committed_lag`]) or the
    /// consumer's position ([`RunningHandler::lag`](crate::handler::RunningHandler::lag)).
    ///
    /// [`TopicConsumer::committed_lag`]: crate::consumer::TopicConsumer::committed_lag
    pub lag: i64,
}

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext};
use tokio::sync::watch;

use super::metrics;
use crate::error::{Error, Result};
use crate::offthread::OffThread;

/// Reads a consumer's lag now (blocking; call it off the async runtime).
pub(crate) type LagFn = Arc<dyn Fn(Duration) -> Result<Vec<PartitionLag>> + Send + Sync>;

/// How long one broker call of a sample may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The committed-offset lag of every partition assigned to `consumer`. A partition
/// without a committed offset counts from its low watermark (what `earliest` reads).
/// Blocks on the broker: call it off the async runtime.
pub(crate) fn committed_lag<X, K>(consumer: &K, timeout: Duration) -> Result<Vec<PartitionLag>>
where
    X: ConsumerContext,
    K: Consumer<X>,
{
    let committed = consumer
        .committed(timeout)
        .map_err(|e| Error::kafka("reading committed offsets", e))?;
    lag_of_committed(consumer, &committed, false, timeout)
}

/// The lag of each partition in `committed` (a group's committed offsets): its high
/// watermark minus the committed offset. A partition without a committed offset counts
/// from its low watermark, or with `skip_uncommitted` is left out (and its watermarks not
/// read). Sorted by topic, then partition. Blocks on the broker.
pub(crate) fn lag_of_committed<X, K>(
    consumer: &K,
    committed: &TopicPartitionList,
    skip_uncommitted: bool,
    timeout: Duration,
) -> Result<Vec<PartitionLag>>
where
    X: ConsumerContext,
    K: Consumer<X>,
{
    let mut out = Vec::new();
    for e in committed.elements() {
        let done = e.offset().to_raw().filter(|o| *o >= 0);
        if done.is_none() && skip_uncommitted {
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .map_err(|err| Error::kafka(format!("reading watermarks of `{}`", e.topic()), err))?;
        let done = done.unwrap_or(low);
        out.push(PartitionLag {
            topic: e.topic().to_string(),
            partition: e.partition(),
            lag: (high - done.max(low)).max(0),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// The last lag sample of a consumer, shared with its health check and, through
/// [`LastLag::subscribe`], with a handler's lag-based concurrency.
#[derive(Debug)]
pub(crate) struct LastLag(watch::Sender<Option<Vec<PartitionLag>>>);

impl Default for LastLag {
    fn default() -> Self {
        LastLag(watch::Sender::new(None))
    }
}

impl LastLag {
    /// The last successful sample (`None` before the first one).
    pub fn get(&self) -> Option<Vec<PartitionLag>> {
        self.0.borrow().clone()
    }

    /// A receiver told of each new sample.
    pub fn subscribe(&self) -> watch::Receiver<Option<Vec<PartitionLag>>> {
        self.0.subscribe()
    }

    fn set(&self, lag: Vec<PartitionLag>) {
        self.0.send_replace(Some(lag));
    }
}

/// Samples a consumer's committed-offset lag every `interval` until the consumer is
/// dropped. Holds only a weak reference between samples, so it never keeps the
/// consumer (or its group membership) alive.
pub(crate) struct LagSampler;

impl LagSampler {
    /// Starts the sampling thread of `consumer`, a member of `group`.
    pub fn spawn<X, K>(
        consumer: Weak<OffThread<K>>,
        group: String,
        interval: Duration,
    ) -> Arc<LastLag>
    where
        X: ConsumerContext,
        K: Consumer<X> + Send + Sync + 'static,
    {
        let last = Arc::new(LastLag::default());
        let shared = Arc::clone(&last);
        let started = std::thread::Builder::new()
            .name("kafka-orm-lag".into())
            .spawn(move || sample_until_dropped(consumer, &group, interval, &shared));
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the lag sampling thread; no lag metrics");
        }
        last
    }
}

fn sample_until_dropped<X, K>(
    consumer: Weak<OffThread<K>>,
    group: &str,
    interval: Duration,
    last: &LastLag,
) where
    X: ConsumerContext,
    K: Consumer<X> + Send + Sync + 'static,
{
    let mut reported: BTreeMap<(String, i32), ::metrics::Gauge> = BTreeMap::new();
    loop {
        std::thread::sleep(interval);
        let Some(client) = consumer.upgrade() else {
            break;
        };
        let sample = committed_lag(client.get().as_ref(), CALL_TIMEOUT.min(interval * 4));
        drop(client);
        let lag = match sample {
            Ok(lag) => lag,
            Err(e) => {
                tracing::debug!(error = %e, "lag sample failed");
                continue;
            }
        };
        let mut now = BTreeMap::new();
        for p in &lag {
            let key = (p.topic.clone(), p.partition);
            let gauge = reported
                .remove(&key)
                .unwrap_or_else(|| metrics::lag_gauge(&p.topic, group, p.partition));
            gauge.set(p.lag as f64);
            now.insert(key, gauge);
        }
        // Partitions that moved to another member: that member reports them now.
        reported.values().for_each(|g| g.set(0.0));
        reported = now;
        last.set(lag);
    }
    reported.values().for_each(|g| g.set(0.0));
}
