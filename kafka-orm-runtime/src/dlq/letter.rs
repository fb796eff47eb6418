//! A dead letter as the dead-letter topic holds it: the original record (key, payload,
//! headers) and the `kafka-orm-dlq-*` headers the handler added, parsed into
//! [`DeadLetterInfo`].

use std::fmt;
use std::str::FromStr;

use crate::handler::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_FIRST_FAILURE, DLQ_GROUP, DLQ_LAST_FAILURE, DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC,
};
use crate::producer::{Headers, MESSAGE_ID_HEADER};

/// Header on a replayed message: the dead letter it was replayed from, as
/// `<dead-letter topic>[<partition>]@<offset>` (parse it with [`ReplayOf::parse`]).
pub const REPLAY_OF_HEADER: &str = "kafka-orm-replay-of";

/// The prefix of every header a handler adds when it dead-letters a record.
const DLQ_PREFIX: &str = "kafka-orm-dlq-";

/// Where a record sits in a partition: `partition:offset` as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Position {
    /// The partition.
    pub partition: i32,
    /// The offset in it.
    pub offset: i64,
}

impl Position {
    /// The record at `offset` of `partition`.
    pub const fn new(partition: i32, offset: i64) -> Self {
        Position { partition, offset }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for Position {
    type Err = String;

    /// `partition:offset`, or a bare `offset` in partition 0.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a position: write `partition:offset` (e.g. `0:42`) or an offset")
        };
        let (partition, offset) = match s.split_once(':') {
            Some((p, o)) => (p.trim().parse().map_err(|_| bad())?, o),
            None => (0, s),
        };
        let offset: i64 = offset.trim().parse().map_err(|_| bad())?;
        if partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(Position { partition, offset })
    }
}

/// The `kafka-orm-dlq-*` headers of a dead letter, parsed. A field is `None` when its
/// header is missing or malformed (a record another tool wrote to the topic).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetterInfo {
    /// The topic the record was read from (a retry tier's, when it failed there).
    pub source_topic: Option<String>,
    /// Its partition there.
    pub source_partition: Option<i32>,
    /// Its offset there.
    pub source_offset: Option<i64>,
    /// The consumer group that gave up on it.
    pub group: Option<String>,
    /// Attempts made (0: the payload could not be decoded, so it was never handled).
    pub attempts: Option<u32>,
    /// The last error.
    pub error: Option<String>,
    /// The first failure, epoch milliseconds.
    pub first_failure_ms: Option<i64>,
    /// The last failure, epoch milliseconds.
    pub last_failure_ms: Option<i64>,
}

impl DeadLetterInfo {
    /// Parses the dead-letter headers among `headers`.
    pub fn parse(headers: &Headers) -> Self {
        let text = |name| headers.get_str(name).map(str::to_string);
        let number = |name| {
            headers
                .get_str(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        DeadLetterInfo {
            source_topic: text(DLQ_SOURCE_TOPIC),
            source_partition: number(DLQ_SOURCE_PARTITION).and_then(|p| i32::try_from(p).ok()),
            source_offset: number(DLQ_SOURCE_OFFSET),
            group: text(DLQ_GROUP),
            attempts: number(DLQ_ATTEMPTS).and_then(|a| u32::try_from(a).ok()),
            error: text(DLQ_ERROR),
            first_failure_ms: number(DLQ_FIRST_FAILURE),
            last_failure_ms: number(DLQ_LAST_FAILURE),
        }
    }
}

/// One record of a dead-letter topic, undecoded: where it is, the original message and
/// why it was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The dead-letter topic (with the context's namespace).
    pub dlq_topic: String,
    /// Where it is in the dead-letter topic.
    pub position: Position,
    /// The dead-letter record's timestamp, epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    /// The original message key.
    pub key: Option<Vec<u8>>,
    /// The original payload, as it was.
    pub payload: Option<Vec<u8>>,
    /// The original message's headers, without the dead-letter ones.
    pub headers: Headers,
    /// The dead-letter headers, parsed.
    pub info: DeadLetterInfo,
    /// Whether it was replayed already: `None` when that cannot be known here (a topic
    /// with an outbox keeps its replay records in the database, and the context has none).
    pub replayed: Option<bool>,
}

impl DeadLetterRecord {
    /// Splits a record read from `dlq_topic` into the original and its dead-letter info.
    pub(crate) fn new(
        dlq_topic: &str,
        position: Position,
        timestamp_ms: Option<i64>,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        all: Headers,
    ) -> Self {
        let info = DeadLetterInfo::parse(&all);
        let mut headers = Headers::new();
        for (name, value) in all.iter().filter(|(n, _)| !n.starts_with(DLQ_PREFIX)) {
            headers.insert(name, value);
        }
        DeadLetterRecord {
            dlq_topic: dlq_topic.to_string(),
            position,
            timestamp_ms,
            key,
            payload,
            headers,
            info,
            replayed: None,
        }
    }

    /// The key as UTF-8 text (kafka-orm's keys always are).
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The original message id (`kafka-orm-message-id`), kept by a replay.
    pub fn message_id(&self) -> Option<&str> {
        self.headers.get_str(MESSAGE_ID_HEADER)
    }

    /// When it failed last: the header, else the record's timestamp (epoch ms).
    pub fn failed_at_ms(&self) -> Option<i64> {
        self.info.last_failure_ms.or(self.timestamp_ms)
    }

    /// The link a replay of it carries in [`REPLAY_OF_HEADER`].
    pub fn replay_of(&self) -> ReplayOf {
        ReplayOf {
            dlq_topic: self.dlq_topic.clone(),
            position: self.position,
        }
    }
}

/// The payload of a dead letter of `T`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<T> {
    /// It decodes as `T` (with this binary's codec).
    Decoded(T),
    /// It does not (the reason it was dead-lettered at once, or a codec that changed
    /// since): the bytes as they are.
    Raw {
        /// The payload bytes (empty for a record without payload).
        bytes: Vec<u8>,
        /// Why it does not decode.
        reason: String,
    },
}

impl<T> Payload<T> {
    /// The decoded value, if it decodes.
    pub fn decoded(&self) -> Option<&T> {
        match self {
            Payload::Decoded(value) => Some(value),
            Payload::Raw { .. } => None,
        }
    }
}

/// A dead letter of topic `T`: the payload decoded where it can be, and the record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<T> {
    /// The original payload, decoded as `T` or raw.
    pub payload: Payload<T>,
    /// The record: position, key, headers, dead-letter info.
    pub record: DeadLetterRecord,
}

/// Which dead letter a replayed message came from (the value of [`REPLAY_OF_HEADER`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplayOf {
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// The dead letter's place in it.
    pub position: Position,
}

impl ReplayOf {
    /// Parses `<topic>[<partition>]@<offset>`; `None` when it is not that.
    pub fn parse(text: &str) -> Option<Self> {
        let (rest, offset) = text.rsplit_once('@')?;
        let (topic, partition) = rest.strip_suffix(']')?.rsplit_once('[')?;
        Some(ReplayOf {
            dlq_topic: topic.to_string(),
            position: Position::new(partition.parse().ok()?, offset.parse().ok()?),
        })
    }

    /// The link of a replayed message, if it has one.
    pub fn of(headers: &Headers) -> Option<Self> {
        Self::parse(headers.get_str(REPLAY_OF_HEADER)?)
    }
}

impl fmt::Display for ReplayOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Position { partition, offset } = self.position;
        write!(f, "{}[{partition}]@{offset}", self.dlq_topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_lettered() -> Headers {
        Headers::new()
            .with(MESSAGE_ID_HEADER, "m-1")
            .with("traceparent", "00-a-b-01")
            .with(DLQ_SOURCE_TOPIC, "ns.orders")
            .with(DLQ_SOURCE_PARTITION, "2")
            .with(DLQ_SOURCE_OFFSET, "17")
            .with(DLQ_GROUP, "ns.billing")
            .with(DLQ_ATTEMPTS, "3")
            .with(DLQ_ERROR, "boom")
            .with(DLQ_FIRST_FAILURE, "1000")
            .with(DLQ_LAST_FAILURE, "2000")
    }

    #[test]
    fn the_dead_letter_headers_are_parsed_and_split_off() {
        let r = DeadLetterRecord::new(
            "ns.orders.dlq",
            Position::new(1, 5),
            Some(9),
            None,
            None,
            dead_lettered(),
        );
        assert_eq!(
            r.info,
            DeadLetterInfo {
                source_topic: Some("ns.orders".into()),
                source_partition: Some(2),
                source_offset: Some(17),
                group: Some("ns.billing".into()),
                attempts: Some(3),
                error: Some("boom".into()),
                first_failure_ms: Some(1000),
                last_failure_ms: Some(2000),
            }
        );
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [MESSAGE_ID_HEADER, "traceparent"]);
        assert_eq!(r.message_id(), Some("m-1"));
        assert_eq!(r.failed_at_ms(), Some(2000));
    }

    #[test]
    fn malformed_or_missing_headers_are_none() {
        let h = Headers::new()
            .with(DLQ_ATTEMPTS, "many")
            .with(DLQ_SOURCE_PARTITION, "99999999999");
        assert_eq!(DeadLetterInfo::parse(&h), DeadLetterInfo::default());
    }

    #[test]
    fn replay_links_round_trip() {
        let link = ReplayOf {
            dlq_topic: "t.x-1.orders.dlq".into(),
            position: Position::new(3, 42),
        };
        assert_eq!(link.to_string(), "t.x-1.orders.dlq[3]@42");
        assert_eq!(ReplayOf::parse(&link.to_string()), Some(link));
        for bad in ["", "t[1]", "t@4", "t[x]@4", "t[1]@y"] {
            assert_eq!(ReplayOf::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn positions_parse_with_or_without_a_partition() {
        assert_eq!("2:40".parse(), Ok(Position::new(2, 40)));
        assert_eq!("40".parse(), Ok(Position::new(0, 40)));
        assert_eq!(Position::new(1, 2).to_string(), "1:2");
        for bad in ["", "a:1", "1:", "-1:3", "1:-3"] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
