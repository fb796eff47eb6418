//! The Kafka topics the registered specs need (topics, retry tiers, dead-letter topics) and
//! their creation through the admin API.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};
use crate::topic::TopicSpec;

/// Every Kafka topic the registered specs need: the topics and their dead-letter topics.
pub(super) fn wanted_topics(
    specs: &[&'static TopicSpec],
    namespace: &str,
) -> BTreeMap<String, (Option<i32>, Option<i32>)> {
    let mut wanted = BTreeMap::new();
    for spec in specs {
        let shape = (spec.partitions, spec.replication);
        wanted.insert(format!("{namespace}{}", spec.name), shape);
        if spec.retry_topics {
            for tier in 1..=crate::topic::RETRY_TIERS as u8 {
                wanted.insert(
                    crate::topic::retry_topic(&format!("{namespace}{}", spec.name), tier),
                    shape,
                );
            }
        }
        if let Some(dlq) = spec.dlq {
            wanted
                .entry(format!("{namespace}{}", dlq.topic))
                .or_insert(shape);
        }
    }
    wanted
}

/// Creates missing topics through the admin API; existing ones are left as they are (a
/// partition count that differs from the declared one is logged, never changed).
pub(super) async fn create_topics(
    client: &ClientConfig,
    specs: &[&'static TopicSpec],
    namespace: &str,
    timeout: Duration,
) -> Result<()> {
    let wanted = wanted_topics(specs, namespace);
    if wanted.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client
        .create()
        .map_err(|e| Error::kafka("creating the admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, (partitions, replication))| {
            NewTopic::new(
                name,
                partitions.unwrap_or(-1),
                TopicReplication::Fixed(replication.unwrap_or(-1)),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&new_topics, &opts)
        .await
        .map_err(|e| Error::kafka("creating topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Admin {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    // Compare the live partition counts with what the types declare.
    tokio::task::spawn_blocking(move || {
        for (name, (partitions, _)) in &wanted {
            let Some(declared) = partitions else { continue };
            let Ok(meta) = admin.inner().fetch_metadata(Some(name), timeout) else {
                continue;
            };
            if let Some(t) = meta.topics().first()
                && t.partitions().len() as i32 != *declared
            {
                tracing::warn!(
                    topic = %name,
                    declared,
                    actual = t.partitions().len(),
                    "topic exists with a different partition count; it is left as it is"
                );
            }
        }
    })
    .await
    .map_err(|_| Error::Shutdown)
}
