//! What the harness reads back: [`Message`]s of a topic, decoded as the topic's type
//! where they decode.

use std::time::Duration;

use crate::codec::DecodeError;
use crate::context::KafkaOrm;
use crate::dlq::{DeadLetterRecord, DlqFilter, Payload, scan};
use crate::error::Result;
use crate::message_type;
use crate::producer::{Headers, MESSAGE_ID_HEADER};
use crate::topic::Topic;

/// A record of a topic, undecoded: the handler's raw record.
pub(crate) type Record = crate::handler::RawRecord;

/// One message of a topic, as the [harness](super::TestHarness) read it: where it is,
/// its key and headers, and its payload decoded as `T` (by the type header, as a
/// consumer decodes it) or raw.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<T> {
    /// The topic (namespaced; a retry tier's for a message handled from one).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The raw key.
    pub key: Option<Vec<u8>>,
    /// The headers.
    pub headers: Headers,
    /// The payload, decoded as `T` where it decodes.
    pub payload: Payload<T>,
    /// The consumer group that handled it ([`TestHarness::consumed`](super::TestHarness::consumed));
    /// `None` for what was read from the topic.
    pub group: Option<String>,
}

impl<T> Message<T> {
    /// The decoded value, if the payload decodes as `T`.
    pub fn value(&self) -> Option<&T> {
        self.payload.decoded()
    }

    /// The message id ([`MESSAGE_ID_HEADER`]).
    pub fn message_id(&self) -> Option<&str> {
        self.headers.get_str(MESSAGE_ID_HEADER)
    }

    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

impl<T: Topic> Message<T> {
    pub(crate) fn decode(record: Record, group: Option<String>) -> Self {
        let bytes = record.payload.clone().unwrap_or_default();
        let named = message_type::of(&record.headers);
        let payload = match T::decode_payload(named.as_deref(), &bytes) {
            Ok(value) => Payload::Decoded(value),
            Err(DecodeError::UnknownType) => Payload::Raw {
                reason: format!(
                    "type `{}` is not one of {:?}",
                    named.as_deref().unwrap_or(""),
                    T::SPEC.message_types
                ),
                bytes,
            },
            Err(DecodeError::Codec(e)) => Payload::Raw {
                reason: e.to_string(),
                bytes,
            },
        };
        Message {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            key: record.key,
            headers: record.headers,
            payload,
            group,
        }
    }
}

/// Every record of `topic` now, in partition, then offset order (read `read_committed`).
pub(crate) async fn read_topic(
    orm: &KafkaOrm,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let filter = DlqFilter::all();
    let what = scan::Scan {
        after: None,
        filter: &filter,
        limit: None,
    };
    let scanned = scan::scan(orm, topic, what, timeout).await?;
    Ok(scanned
        .records
        .into_iter()
        .map(|r| record(topic, r))
        .collect())
}

/// The record of `topic` at `partition`/`offset`.
pub(crate) async fn read_one(
    orm: &KafkaOrm,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<Record>> {
    let filter = DlqFilter::all().at(crate::dlq::Position::new(partition, offset));
    let what = scan::Scan {
        after: None,
        filter: &filter,
        limit: Some(1),
    };
    let scanned = scan::scan(orm, topic, what, timeout).await?;
    Ok(scanned.records.into_iter().next().map(|r| record(topic, r)))
}

/// A scanned record of `topic` as a [`Record`].
fn record(topic: &str, r: DeadLetterRecord) -> Record {
    Record {
        topic: topic.to_string(),
        partition: r.position.partition,
        offset: r.position.offset,
        key: r.key,
        payload: r.payload,
        headers: r.headers,
    }
}
