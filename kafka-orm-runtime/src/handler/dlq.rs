//! Dead-lettering: the raw record, with where it came from and why it failed.

use crate::producer::Headers;

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

/// A record as read, kept raw for dead-lettering (and what the test harness reads back).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// `raw` as it goes to the dead-letter topic: as it was (key, payload, headers), plus
/// where it came from and why it failed.
pub(crate) fn dead_letter(raw: &RawRecord, failure: Failure<'_>) -> RawRecord {
    let mut headers = raw.headers.clone();
    headers.insert(DLQ_SOURCE_TOPIC, raw.topic.as_str());
    headers.insert(DLQ_SOURCE_PARTITION, raw.partition.to_string());
    headers.insert(DLQ_SOURCE_OFFSET, raw.offset.to_string());
    headers.insert(DLQ_GROUP, failure.group);
    headers.insert(DLQ_ATTEMPTS, failure.attempts.to_string());
    headers.insert(DLQ_ERROR, failure.error);
    headers.insert(DLQ_FIRST_FAILURE, failure.first_ms.to_string());
    headers.insert(DLQ_LAST_FAILURE, failure.last_ms.to_string());
    RawRecord {
        headers,
        ..raw.clone()
    }
}
