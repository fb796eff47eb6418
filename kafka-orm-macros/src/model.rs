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

/// A field named in `key` or `dedup`.
pub struct FieldRef<'a> {
    /// As the user wrote it in the attribute (`type` for `r#type`).
    pub name: String,
    pub ident: &'a Ident,
    pub ty: &'a Type,
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
