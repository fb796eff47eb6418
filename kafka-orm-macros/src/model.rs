//! The checked topic: every value resolved, names defaulted. `check/` builds it while it
//! checks, and only a topic without errors gets one; the expansion reads only this.
//!
//! The defaults of the runtime's policies (retry, inbox retention) are not copied here:
//! `None` is "the default", which the expansion writes as a reference to
//! `kafka_orm::defaults`.

use proc_macro2::Span;
use syn::{Ident, Path, Type, Visibility};

pub struct TopicModel<'a> {
    pub ident: &'a Ident,
    /// The struct's visibility, which its entity modules get too.
    pub vis: &'a Visibility,
    /// Path generated code reaches kafka-orm at (`::kafka_orm` unless `crate = ".."`).
    pub krate: Path,
    /// `OrderCreated`: the last segment of `TopicSpec::type_name`.
    pub type_name: String,
    /// What the topic's messages are: one struct, or the structs of an enum's variants.
    pub messages: Messages<'a>,
    pub name: String,
    pub key: Vec<FieldRef<'a>>,
    /// A user codec; `None` is the default JSON codec.
    pub codec: Option<Codec<'a>>,
    pub direction: Direction,
    pub group: Option<String>,
    pub partitions: Option<i32>,
    pub replication: Option<i32>,
    pub outbox: Option<Outbox>,
    pub inbox: Option<Inbox<'a>>,
    pub retry: Option<Retry>,
    pub retry_topics: bool,
    pub dlq: Option<String>,
}

/// The message types of a topic.
pub enum Messages<'a> {
    /// A struct, its messages of one type with this stable name (`type_name = ".."`, or
    /// the struct's name).
    Struct { name: String },
    /// An enum, one message type per variant, in order.
    Enum(Vec<Variant<'a>>),
}

/// A variant of a topic enum: `Created(OrderCreated)`.
pub struct Variant<'a> {
    pub ident: &'a Ident,
    /// The struct it holds.
    pub ty: &'a Type,
    /// Its stable name: `type_name = ".."`, or the last segment of the type's path.
    pub name: String,
}

/// A field named in `key` or `dedup`.
pub struct FieldRef<'a> {
    /// As the user wrote it in the attribute (`type` for `r#type`).
    pub name: String,
    /// The field (spanned on the struct's field, or on the attribute's string for a topic
    /// enum, whose variants' structs the derive does not see).
    pub ident: Ident,
    pub ty: FieldType<'a>,
}

/// The name of a topic enum's leading dedup "field", the message type.
pub const MESSAGE_TYPE_FIELD: &str = "message_type";

/// Where a key or dedup field's type comes from.
pub enum FieldType<'a> {
    /// The struct's field, of this type.
    Declared(&'a Type),
    /// A field of every variant's struct, whose type only the compiler knows: the column
    /// type is the first variant's (the expansion asserts the others agree).
    OfVariants { first: &'a Type },
    /// Not a field: a topic enum's inbox dedups on the message type first, so that two
    /// types with one dedup value are two messages (column `dedup_message_type`).
    MessageType,
}

impl FieldType<'_> {
    /// The struct field's type, when the derive sees it.
    pub fn declared(&self) -> Option<&Type> {
        match self {
            FieldType::Declared(ty) => Some(ty),
            _ => None,
        }
    }
}

pub struct Codec<'a> {
    pub ty: &'a Type,
    /// The codec path as written, for `TopicSpec::format`.
    pub text: String,
}

#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Direction {
    Both,
    ProduceOnly,
    ConsumeOnly,
}

pub struct Outbox {
    pub table: String,
    /// The `table = ".."` string, or the `outbox` flag for the default name.
    pub table_span: Span,
}

pub struct Inbox<'a> {
    pub table: String,
    /// The `table = ".."` string, or the `inbox` flag for the default name.
    pub table_span: Span,
    /// Empty: deduplicate on the message-id header.
    pub dedup: Vec<FieldRef<'a>>,
    /// `None`: the runtime's default.
    pub retention_secs: Option<u64>,
}

/// `retry(..)` with at least one setting; `None` is the runtime's default. A bare `retry`
/// is no `retry` at all.
pub struct Retry {
    pub attempts: Option<u32>,
    pub backoff: Option<RetryDuration>,
    pub max_backoff: Option<RetryDuration>,
}

/// A `backoff` or `max_backoff`, with its string for messages and spans.
pub struct RetryDuration {
    pub ms: u64,
    pub lit: syn::LitStr,
}
