//! [`KafkaOrm::group_lag`]: a consumer group's committed-offset lag, read from outside
//! the group (its committed offsets and the partitions' high watermarks; the group is not
//! joined, so its members are not disturbed).

use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::telemetry::lag::{PartitionLag, lag_of_committed};

impl KafkaOrm {
    /// The lag of consumer group `group` (its Kafka name, as it is) per partition it has
    /// committed an offset on: of `topics`, or of every topic of the cluster when
    /// `topics` is empty. Each broker call is bounded by `timeout`.
    ///
    /// A topic named in `topics` that the cluster does not have is [`Error::Admin`]; a
    /// group that never committed an offset there has no lag to report (an empty list).
    pub async fn group_lag(
        &self,
        group: &str,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Vec<PartitionLag>> {
        let mut cfg = self.client_config();
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = cfg
            .create()
            .map_err(|e| Error::kafka("creating a consumer to read committed offsets", e))?;
        let topics = topics.to_vec();
        let guard = crate::offthread::OffThread::new(consumer, |_| {});
        let consumer = std::sync::Arc::clone(guard.get());
        tokio::task::spawn_blocking(move || read_lag(&consumer, &topics, timeout))
            .await
            .map_err(|_| Error::Shutdown)?
    }
}

fn read_lag(
    consumer: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>> {
    let meta = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| Error::kafka("reading the cluster's topics", e))?;
    for name in topics {
        if !meta.topics().iter().any(|t| t.name() == name) {
            return Err(Error::Admin {
                topic: name.clone(),
                reason: "the cluster has no such topic".into(),
            });
        }
    }
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        let wanted = if topics.is_empty() {
            !t.name().starts_with("__")
        } else {
            topics.iter().any(|n| n == t.name())
        };
        for p in t.partitions().iter().filter(|_| wanted) {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| Error::kafka("reading committed offsets", e))?;
    lag_of_committed(consumer, &committed, true, timeout)
}
