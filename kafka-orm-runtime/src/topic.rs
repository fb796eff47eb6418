//! The [`Topic`] trait that `#[derive(Topic)]` implements, and the static
//! [`TopicSpec`] describing one topic's settings.
//!
//! Everything here is data: the derive emits constants and two small accessors,
//! and all behaviour lives in generic runtime code (producer, consumer, outbox,
//! inbox) that reads the spec.

use std::time::Duration;

use crate::codec::DecodeError;
use crate::codec::{Codec, CodecError};
use crate::key::{ColumnKind, DedupValue, KeyBytes};

/// A Rust type mapped to one Kafka topic.
///
/// Implemented by `#[derive(Topic)]`; implementing it by hand is possible but the
/// derive checks the attribute at compile time, which a hand-written impl does not.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a kafka-orm topic",
    label = "this type has no `#[derive(kafka_orm::Topic)]`",
    note = "add `#[derive(kafka_orm::Topic)]` and `#[topic(name = \"...\")]` to the type"
)]
pub trait Topic: Sized + Send + Sync + 'static {
    /// All settings from the `#[topic(..)]` attribute.
    const SPEC: &'static TopicSpec;

    /// How the payload is encoded: [`crate::codec::Json`] unless `codec = "..."` is given.
    type Codec: Codec<Self>;

    /// The Kafka message key, built from the `key` field(s); `None` when the topic has no key.
    ///
    /// One field is written in its text form (a `String` as is, integers in decimal, a
    /// `Uuid` hyphenated); several fields are written as a JSON array, so that keys from
    /// other languages' producers are easy to build.
    fn key(&self) -> Option<KeyBytes>;

    /// The inbox deduplication key from the `inbox(dedup = ..)` field(s), in declaration
    /// order; empty when the topic dedups on the message-id header (bare `inbox`) or has
    /// no inbox.
    fn dedup_key(&self) -> Vec<DedupValue>;

    /// The values of the outbox table's typed key columns (`key_<field>`, one per `key`
    /// field, in order, from [`KeyPart::key_value`](crate::key::KeyPart::key_value)).
    /// The derive implements it for outbox topics; the default is empty: no typed key
    /// columns.
    fn key_values(&self) -> Vec<sea_orm::Value> {
        Vec::new()
    }

    /// The stable name of this value's message type, sent in the `kafka-orm-type` header:
    /// for a struct its one name ([`TopicSpec::message_types`]), for an enum its
    /// variant's.
    fn message_type(&self) -> &'static str {
        Self::SPEC.default_message_type()
    }

    /// Encodes the payload: with [`Topic::Codec`] for a struct, with the variant's codec
    /// (its struct alone, no enum tag) for an enum.
    fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        Self::Codec::encode(self, out)
    }

    /// Decodes a payload whose type header names `message_type` (`None`: no header; see
    /// [`crate::message_type`]). A type this topic does not carry is
    /// [`DecodeError::UnknownType`], whatever the payload holds.
    ///
    /// The default, for a struct: a header naming another type than its
    /// [`message_types`](TopicSpec::message_types) is unknown (a spec without any accepts
    /// every header); no header is the struct.
    fn decode_payload(message_type: Option<&str>, payload: &[u8]) -> Result<Self, DecodeError> {
        let known = Self::SPEC.message_types;
        match message_type {
            Some(named) if !known.is_empty() && !known.contains(&named) => {
                Err(DecodeError::UnknownType)
            }
            _ => Self::Codec::decode(payload).map_err(DecodeError::Codec),
        }
    }
}

/// Marker: the topic may be produced to (it is not `consume_only`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be produced: the topic is declared `consume_only`",
    note = "remove `consume_only` from `#[topic(..)]` to produce to it"
)]
pub trait Producible: Topic {}

/// Marker: the topic may be consumed (it is not `produce_only`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be consumed: the topic is declared `produce_only`",
    note = "remove `produce_only` from `#[topic(..)]` to consume it"
)]
pub trait Consumable: Topic {}

/// Marker: the topic has a transactional outbox (`#[topic(outbox)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no outbox",
    note = "add `outbox` to `#[topic(..)]` to publish through the transactional outbox"
)]
pub trait OutboxTopic: Producible {}

/// Marker: the topic has an inbox (`#[topic(inbox)]` or `#[topic(inbox(dedup = ..))]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no inbox",
    note = "add `inbox` or `inbox(dedup = \"field\")` to `#[topic(..)]`"
)]
pub trait InboxTopic: Consumable {}

/// The settings of one topic, built at compile time by the derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicSpec {
    /// Rust path of the type, e.g. `my_app::events::OrderCreated`: for error messages and
    /// the registry, never on the wire (see [`TopicSpec::message_types`]).
    pub type_name: &'static str,
    /// Kafka topic name.
    pub name: &'static str,
    /// The stable names of the message types the topic carries, sent in the
    /// `kafka-orm-type` header: one for a struct (its name, or `type_name = ".."`), one per
    /// variant for an enum. Empty only in a hand-written spec: the header is then the Rust
    /// path and every header is accepted (see [`crate::message_type`]).
    pub message_types: &'static [&'static str],
    /// Fields the message key is built from, in order; empty for no key.
    pub key_fields: &'static [&'static str],
    /// Payload format: `"json"` or the path of the user codec.
    pub format: &'static str,
    /// Which directions the topic may be used in.
    pub direction: Direction,
    /// Consumer group; `None` uses the context's default group.
    pub group: Option<&'static str>,
    /// Partitions to create the topic with when it is missing (`None`: broker default).
    pub partitions: Option<i32>,
    /// Replication factor to create the topic with (`None`: broker default).
    pub replication: Option<i32>,
    /// Transactional outbox settings, when `outbox` is set.
    pub outbox: Option<OutboxSpec>,
    /// Inbox settings, when `inbox` is set.
    pub inbox: Option<InboxSpec>,
    /// In-place retry policy of the consumer; `None`: the defaults,
    /// [`defaults::RETRY`](crate::defaults::RETRY).
    pub retry: Option<RetrySpec>,
    /// Whether failed messages go through delayed retry topics (Spring-style tiers).
    pub retry_topics: bool,
    /// Dead-letter topic, when `dlq` is set.
    pub dlq: Option<DlqSpec>,
}

/// Which ways a topic may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Produced and consumed (the default).
    Both,
    /// `produce_only`: this service never consumes it.
    ProduceOnly,
    /// `consume_only`: this service never produces to it.
    ConsumeOnly,
}

/// Outbox settings (`outbox` or `outbox(table = "..")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxSpec {
    /// Table the outbox rows are stored in.
    pub table: &'static str,
    /// The type of each typed key column (`key_<field>`, one per [`TopicSpec::key_fields`]
    /// entry, in the same order); empty: the table has no typed key columns.
    pub key_columns: &'static [ColumnKind],
}

/// Inbox settings (`inbox(dedup = .., retention = "7d", table = "..")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxSpec {
    /// Table the inbox rows are stored in.
    pub table: &'static str,
    /// Fields the deduplication key is built from; empty: the message-id header.
    pub dedup_fields: &'static [&'static str],
    /// The column type of each dedup field, in the same order.
    pub dedup_columns: &'static [ColumnKind],
    /// How long inbox rows are kept, in seconds (default
    /// [`defaults::INBOX_RETENTION`](crate::defaults::INBOX_RETENTION)).
    pub retention_secs: u64,
}

/// In-place retry policy (`retry(attempts = 5, backoff = "100ms", max_backoff = "30s")`;
/// what is left out is [`defaults`](crate::defaults)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetrySpec {
    /// Total attempts, the first one included (>= 1).
    pub attempts: u32,
    /// First backoff; doubled per attempt.
    pub backoff: Duration,
    /// Cap on the backoff.
    pub max_backoff: Duration,
}

/// Dead-letter topic settings (`dlq` or `dlq = "name"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DlqSpec {
    /// Name of the dead-letter topic (default: `<topic>.dlq`).
    pub topic: &'static str,
}

impl TopicSpec {
    /// The message type a single-type topic's values carry: its one stable name, or, for a
    /// hand-written spec without any, the Rust path (as before the stable names).
    pub(crate) const fn default_message_type(&self) -> &'static str {
        match self.message_types {
            [first, ..] => first,
            [] => self.type_name,
        }
    }

    /// A spec with only the required parts set; the derive adds the rest with the
    /// `const` builder methods below, which keeps the expansion short.
    pub const fn new(type_name: &'static str, name: &'static str) -> Self {
        TopicSpec {
            type_name,
            name,
            message_types: &[],
            key_fields: &[],
            format: "json",
            direction: Direction::Both,
            group: None,
            partitions: None,
            replication: None,
            outbox: None,
            inbox: None,
            retry: None,
            retry_topics: false,
            dlq: None,
        }
    }

    /// Sets the stable names of the message types (the `kafka-orm-type` header values).
    pub const fn message_types(mut self, names: &'static [&'static str]) -> Self {
        self.message_types = names;
        self
    }
    /// Sets the key fields.
    pub const fn key_fields(mut self, fields: &'static [&'static str]) -> Self {
        self.key_fields = fields;
        self
    }
    /// Sets the payload format (`"json"` or a codec path).
    pub const fn format(mut self, format: &'static str) -> Self {
        self.format = format;
        self
    }
    /// Sets the direction (`produce_only` / `consume_only`).
    pub const fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }
    /// Sets the consumer group.
    pub const fn group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }
    /// Sets the partition count used when the topic is created.
    pub const fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
    /// Sets the replication factor used when the topic is created.
    pub const fn replication(mut self, replication: i32) -> Self {
        self.replication = Some(replication);
        self
    }
    /// Enables the transactional outbox.
    pub const fn outbox(mut self, outbox: OutboxSpec) -> Self {
        self.outbox = Some(outbox);
        self
    }
    /// Enables the inbox.
    pub const fn inbox(mut self, inbox: InboxSpec) -> Self {
        self.inbox = Some(inbox);
        self
    }
    /// Sets the in-place retry policy.
    pub const fn retry(mut self, retry: RetrySpec) -> Self {
        self.retry = Some(retry);
        self
    }
    /// Enables delayed retry topics.
    pub const fn retry_topics(mut self) -> Self {
        self.retry_topics = true;
        self
    }
    /// Enables the dead-letter topic.
    pub const fn dlq(mut self, dlq: DlqSpec) -> Self {
        self.dlq = Some(dlq);
        self
    }
}

impl OutboxSpec {
    /// Outbox stored in `table`.
    pub const fn new(table: &'static str) -> Self {
        OutboxSpec {
            table,
            key_columns: &[],
        }
    }

    /// Sets the type of each key field's column (from `<FieldType as KeyPart>::COLUMN`).
    pub const fn columns(mut self, columns: &'static [ColumnKind]) -> Self {
        self.key_columns = columns;
        self
    }
}

impl InboxSpec {
    /// Inbox stored in `table`, deduplicating on `dedup_fields`, keeping rows `retention_secs`.
    pub const fn new(
        table: &'static str,
        dedup_fields: &'static [&'static str],
        retention_secs: u64,
    ) -> Self {
        InboxSpec {
            table,
            dedup_fields,
            dedup_columns: &[],
            retention_secs,
        }
    }

    /// Sets the column type of each dedup field (from `<FieldType as DedupPart>::COLUMN`).
    pub const fn columns(mut self, columns: &'static [ColumnKind]) -> Self {
        self.dedup_columns = columns;
        self
    }
}

impl RetrySpec {
    /// Retry policy; see the field docs.
    pub const fn new(attempts: u32, backoff: Duration, max_backoff: Duration) -> Self {
        RetrySpec {
            attempts,
            backoff,
            max_backoff,
        }
    }
}

impl DlqSpec {
    /// Dead-letter topic `topic`.
    pub const fn new(topic: &'static str) -> Self {
        DlqSpec { topic }
    }
}

/// Retry tiers per topic with `retry_topics`.
pub(crate) const RETRY_TIERS: usize = 3;

/// The name of retry tier `tier` of `topic`: `<topic>.retry-<tier>`.
pub(crate) fn retry_topic(topic: &str, tier: u8) -> String {
    format!("{topic}.retry-{tier}")
}
