//! What `#[topic(..)]` means, checked and resolved into the [`TopicModel`]: the type's
//! shape (`shape.rs`), its message types and their stable names (`variants.rs`), the
//! fields `key` and `dedup` name and their types (`fields.rs`),
//! topic and table names (`names.rs`), value ranges, the retry policy and settings that
//! contradict each other (`policy.rs`).
//!
//! Every check records its errors and carries on, and returns what it resolved (`None`
//! after an error), so one pass both reports every mistake and builds the model, as
//! serde's `Container::from_ast` does. The model is assembled only when every part of it
//! resolved.

mod fields;
mod names;
mod policy;
mod shape;
mod variants;

use syn::ext::IdentExt;
use syn::{DeriveInput, Path, parse_quote};

use crate::attr::Attrs;
use crate::ctxt::Ctxt;
use crate::model::{
    Codec, FieldRef, FieldType, Inbox, MESSAGE_TYPE_FIELD, Messages, Outbox, TopicModel,
};

use fields::Source;
pub(crate) use fields::{Role, type_text};
pub(crate) use names::{Table, usable_table};

/// Runs every check on the type and its parsed attributes; the model when they all pass.
pub fn check<'a>(cx: &Ctxt, input: &'a DeriveInput, attrs: &'a Attrs) -> Option<TopicModel<'a>> {
    let concrete = shape::concrete(cx, input);
    let fields = shape::fields(cx, input);
    let field_attrs = shape::field_attrs(cx, input);
    let messages = variants::messages(cx, input, attrs);
    let source = match (&input.data, &messages) {
        (syn::Data::Enum(_), Some(Messages::Enum(variants))) => {
            Source::Variants(variants.first().map(|v| v.ty))
        }
        (syn::Data::Enum(_), _) => Source::Variants(None),
        _ => Source::Struct(fields),
    };
    let name = names::topic(cx, input, attrs);
    let key = optional(&attrs.key, |k| fields::list(cx, source, k, Role::Key));
    let outbox = optional(&attrs.outbox, |o| {
        let (table, table_span) = names::table(cx, input, &o.path, &o.value.table, Table::Outbox)?;
        Some(Outbox { table, table_span })
    });
    let inbox = optional(&attrs.inbox, |i| {
        let table = names::table(cx, input, &i.path, &i.value.table, Table::Inbox);
        let outbox = outbox.as_ref().and_then(Option::as_ref);
        let distinct = names::distinct_tables(cx, attrs, outbox, table.as_ref());
        let dedup = optional(&i.value.dedup, |d| {
            let fields = fields::list(cx, source, d, Role::Dedup)?;
            Some(with_message_type(source, fields))
        });
        let retention = optional(&i.value.retention, |r| policy::retention_secs(cx, &r.value));
        let (table, table_span) = table.filter(|_| distinct)?;
        Some(Inbox {
            table,
            table_span,
            dedup: dedup?.unwrap_or_default(),
            retention_secs: retention?,
        })
    });
    let group = optional(&attrs.group, |g| names::group(cx, &g.value));
    let format = policy::format(cx, attrs);
    let partitions = optional(&attrs.partitions, |p| policy::partitions(cx, &p.value));
    let replication = optional(&attrs.replication, |r| policy::replication(cx, &r.value));
    let retry = optional(&attrs.retry, |r| policy::retry(cx, &r.value));
    let dlq = names::dlq(cx, attrs, name.as_deref());
    let direction = policy::direction(cx, attrs);
    let shaped = fields.is_some() || matches!(input.data, syn::Data::Enum(_));
    if !concrete || !field_attrs || !shaped {
        return None;
    }
    format?;
    Some(TopicModel {
        ident: &input.ident,
        vis: &input.vis,
        krate: krate(attrs),
        type_name: input.ident.unraw().to_string(),
        messages: messages?,
        name: name?,
        key: key?.unwrap_or_default(),
        codec: attrs.codec.as_ref().map(|c| Codec {
            ty: &c.value.parsed,
            text: c.value.lit.value().split_whitespace().collect(),
        }),
        direction: direction?,
        group: group?,
        partitions: partitions?,
        replication: replication?,
        outbox: outbox?,
        inbox: inbox?,
        retry: retry?.flatten(),
        retry_topics: attrs.retry_topics.is_some(),
        dlq: dlq?,
    })
}

/// The checked value of an optional setting: `Some(None)` when it is absent, `None` after
/// an error.
fn optional<S, T>(setting: &Option<S>, check: impl FnOnce(&S) -> Option<T>) -> Option<Option<T>> {
    match setting {
        None => Some(None),
        Some(setting) => check(setting).map(Some),
    }
}

/// A topic enum's dedup fields after its message type (see [`FieldType::MessageType`]).
fn with_message_type<'a>(source: Source<'a>, fields: Vec<FieldRef<'a>>) -> Vec<FieldRef<'a>> {
    let Source::Variants(_) = source else {
        return fields;
    };
    let message_type = FieldRef {
        name: MESSAGE_TYPE_FIELD.to_owned(),
        ident: syn::Ident::new(MESSAGE_TYPE_FIELD, proc_macro2::Span::call_site()),
        ty: FieldType::MessageType,
    };
    std::iter::once(message_type).chain(fields).collect()
}

/// `::kafka_orm`, or the path given with `crate = ".."`.
pub fn krate(attrs: &Attrs) -> Path {
    match &attrs.krate {
        Some(k) => k.value.parsed.clone(),
        None => parse_quote!(::kafka_orm),
    }
}

#[cfg(test)]
mod tests;
