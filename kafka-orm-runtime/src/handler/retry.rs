//! Retry tiers (`retry_topics`): Spring-style non-blocking retries through delayed topics
//! `<topic>.retry-1` ..= `<topic>.retry-3`, then the dead-letter topic.

use super::dlq::RawRecord;
use crate::producer::Headers;

pub(crate) use crate::topic::{RETRY_TIERS, retry_topic};

const RETRY_HEADER_PREFIX: &str = "kafka-orm-retry-";
/// Header: the attempt number the retried message is on.
const RETRY_ATTEMPT: &str = "kafka-orm-retry-attempt";
/// Header: epoch ms before which it must not be handled.
pub(crate) const RETRY_DUE: &str = "kafka-orm-retry-due";
/// Header: epoch ms of its first failure.
pub(crate) const RETRY_FIRST_FAILURE: &str = "kafka-orm-retry-first-failure";
/// Header: the error of the last attempt.
const RETRY_ERROR: &str = "kafka-orm-retry-error";

/// An integer header.
pub(crate) fn header_i64(headers: &Headers, name: &str) -> Option<i64> {
    headers.get_str(name)?.parse().ok()
}

/// The attempt a message read from a retry tier is on.
pub(crate) fn retry_attempt(headers: &Headers) -> Option<u32> {
    headers.get_str(RETRY_ATTEMPT)?.parse().ok()
}

/// `raw` as forwarded to a retry tier: its headers without earlier retry headers, plus
/// the next attempt, when it is due, the first failure and the last error.
pub(crate) fn to_tier(
    raw: &RawRecord,
    next_attempt: u32,
    due_ms: i64,
    first_ms: i64,
    error: String,
) -> RawRecord {
    let mut headers = Headers::new();
    for (name, value) in raw.headers.iter() {
        if !name.starts_with(RETRY_HEADER_PREFIX) {
            headers.insert(name, value);
        }
    }
    headers.insert(RETRY_ATTEMPT, next_attempt.to_string());
    headers.insert(RETRY_DUE, due_ms.to_string());
    headers.insert(RETRY_FIRST_FAILURE, first_ms.to_string());
    headers.insert(RETRY_ERROR, error);
    RawRecord {
        headers,
        ..raw.clone()
    }
}
