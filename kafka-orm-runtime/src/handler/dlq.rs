//! Dead-lettering: the raw record, with where it came from and why it failed.

use std::time::Duration;

use crate::context::KafkaOrm;
use crate::error::Result;
use crate::producer::{self, DeliveryReport, Headers, Outgoing};

/// Header: the topic the record was read from.
pub const DLQ_SOURCE_TOPIC: &str = "kafka-orm-dlq-source-topic";
/// Header: its partition.
pub const DLQ_SOURCE_PARTITION: &str = "kafka-orm-dlq-source-partition";
/// Header: its offset.
pub const DLQ_SOURCE_OFFSET: &str = "kafka-orm-dlq-source-offset";
/// Header: the consumer group that gave up.
pub const DLQ_GROUP: &str = "kafka-orm-dlq-group";
/// Header: attempts made (0 for a payload that could not be decoded).
pub const DLQ_ATTEMPTS: &str = "kafka-orm-dlq-attempts";
/// Header: the last error.
pub const DLQ_ERROR: &str = "kafka-orm-dlq-error";
/// Header: epoch ms of the first failure.
pub const DLQ_FIRST_FAILURE: &str = "kafka-orm-dlq-first-failure";
/// Header: epoch ms of the last failure.
pub const DLQ_LAST_FAILURE: &str = "kafka-orm-dlq-last-failure";

/// A record as read, kept raw for dead-lettering.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Headers,
}

/// Why a record is dead-lettered.
pub(crate) struct Failure<'a> {
    pub group: &'a str,
    pub attempts: u32,
    pub error: String,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Sends `raw` as it is (key, payload, headers) to `topic` and waits for the ack.
pub(crate) async fn forward(
    orm: &KafkaOrm,
    topic: &str,
    raw: &RawRecord,
    timeout: Duration,
) -> Result<DeliveryReport> {
    let message_id = raw
        .headers
        .get_str(producer::MESSAGE_ID_HEADER)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let msg = Outgoing {
        key: raw.key.clone(),
        payload: raw.payload.clone().unwrap_or_default(),
        headers: raw.headers.clone(),
        message_id,
    };
    producer::send(orm.producer(), topic, msg, timeout).await
}

/// Sends `raw` to `dlq_topic` (namespace applied by the caller) and waits for the ack.
pub(crate) async fn send(
    orm: &KafkaOrm,
    dlq_topic: &str,
    raw: &RawRecord,
    failure: Failure<'_>,
    timeout: Duration,
) -> Result<DeliveryReport> {
    let mut headers = raw.headers.clone();
    headers.insert(DLQ_SOURCE_TOPIC, raw.topic.as_str());
    headers.insert(DLQ_SOURCE_PARTITION, raw.partition.to_string());
    headers.insert(DLQ_SOURCE_OFFSET, raw.offset.to_string());
    headers.insert(DLQ_GROUP, failure.group);
    headers.insert(DLQ_ATTEMPTS, failure.attempts.to_string());
    headers.insert(DLQ_ERROR, failure.error);
    headers.insert(DLQ_FIRST_FAILURE, failure.first_ms.to_string());
    headers.insert(DLQ_LAST_FAILURE, failure.last_ms.to_string());
    let record = RawRecord {
        headers,
        ..raw.clone()
    };
    forward(orm, dlq_topic, &record, timeout).await
}
