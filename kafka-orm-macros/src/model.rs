//! The checked topic: every value resolved, defaults applied. Built only after
//! `Ctxt::check` succeeded, so nothing here can fail; the expansion reads only this.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Data, DeriveInput, Field, Fields, FieldsNamed, Ident, Path, Type, Visibility, parse_quote,
};

use crate::attr::{Attrs, FieldList, Parsed};
use crate::check::{self, DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_MS, DEFAULT_MAX_BACKOFF_MS};
use crate::symbol::*;

const CHECKED: &str = "validated in check.rs";

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
    pub field: &'a Field,
}

impl FieldRef<'_> {
    pub fn ident(&self) -> &Ident {
        self.field.ident.as_ref().expect("named field")
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
    pub retention_secs: u64,
}

pub struct Retry {
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

/// `::kafka_orm`, or the path given with `crate = ".."`.
pub fn krate(attrs: &Attrs) -> Path {
    match &attrs.krate {
        Some(k) => k.value.parsed.clone(),
        None => parse_quote!(::kafka_orm),
    }
}

impl<'a> TopicModel<'a> {
    pub fn new(input: &'a DeriveInput, attrs: &'a Attrs) -> Self {
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                _ => unreachable!("{CHECKED}"),
            },
            _ => unreachable!("{CHECKED}"),
        };
        let name = match &attrs.name {
            Some(name) => name.value.value(),
            None => check::default_topic_name(input),
        };
        let direction = match (&attrs.produce_only, &attrs.consume_only) {
            (Some(_), _) => Direction::ProduceOnly,
            (_, Some(_)) => Direction::ConsumeOnly,
            _ => Direction::Both,
        };
        let int = |s: &Option<crate::attr::Setting<syn::LitInt>>, key, max| {
            s.as_ref()
                .map(|s| check::positive_int(&s.value, key, max).expect(CHECKED))
        };
        let table = |t: &Option<crate::attr::Setting<syn::LitStr>>, flag: &Path, suffix| match t {
            Some(t) => (t.value.value(), t.value.span()),
            None => (check::default_table(input, suffix), flag.span()),
        };
        let dlq = attrs.dlq.as_ref().map(|dlq| match &dlq.value {
            Some(lit) => lit.value(),
            None => format!("{name}.dlq"),
        });
        TopicModel {
            ident: &input.ident,
            vis: &input.vis,
            krate: krate(attrs),
            type_name: input.ident.unraw().to_string(),
            key: attrs
                .key
                .as_ref()
                .map(|k| field_refs(fields, &k.value))
                .unwrap_or_default(),
            codec: attrs.codec.as_ref().map(|c| codec(&c.value)),
            direction,
            group: attrs.group.as_ref().map(|g| g.value.value()),
            partitions: int(&attrs.partitions, PARTITIONS, i32::MAX as u64).map(|n| n as i32),
            replication: int(&attrs.replication, REPLICATION, i16::MAX as u64).map(|n| n as i32),
            outbox: attrs.outbox.as_ref().map(|o| {
                let (table, table_span) = table(&o.value.table, &o.path, "_outbox");
                Outbox { table, table_span }
            }),
            inbox: attrs.inbox.as_ref().map(|i| {
                let (table, table_span) = table(&i.value.table, &i.path, "_inbox");
                Inbox {
                    table,
                    table_span,
                    dedup: i
                        .value
                        .dedup
                        .as_ref()
                        .map(|d| field_refs(fields, &d.value))
                        .unwrap_or_default(),
                    retention_secs: i
                        .value
                        .retention
                        .as_ref()
                        .map_or(check::DEFAULT_RETENTION_SECS, |r| {
                            check::retention_secs(&r.value).expect(CHECKED)
                        }),
                }
            }),
            retry: attrs.retry.as_ref().map(|r| {
                let ms = |s: &Option<crate::attr::Setting<syn::LitStr>>, default| {
                    s.as_ref()
                        .map_or(default, |s| check::duration_ms(&s.value).expect(CHECKED))
                };
                Retry {
                    attempts: int(&r.value.attempts, ATTEMPTS, u64::from(u32::MAX))
                        .map_or(DEFAULT_ATTEMPTS, |n| n as u32),
                    backoff_ms: ms(&r.value.backoff, DEFAULT_BACKOFF_MS),
                    max_backoff_ms: ms(&r.value.max_backoff, DEFAULT_MAX_BACKOFF_MS),
                }
            }),
            retry_topics: attrs.retry_topics.is_some(),
            dlq,
            name,
        }
    }
}

fn field_refs<'a>(fields: &'a FieldsNamed, list: &FieldList) -> Vec<FieldRef<'a>> {
    list.fields
        .iter()
        .map(|lit| {
            let field = check::find_field(fields, &lit.value()).expect(CHECKED);
            let name = field
                .ident
                .as_ref()
                .expect("named field")
                .unraw()
                .to_string();
            FieldRef { name, field }
        })
        .collect()
}

fn codec(parsed: &Parsed<Type>) -> Codec<'_> {
    Codec {
        ty: &parsed.parsed,
        text: parsed.lit.value().split_whitespace().collect(),
    }
}
