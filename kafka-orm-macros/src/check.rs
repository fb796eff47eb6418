//! Checks of what `#[topic(..)]` means: the type's shape, names, field references and
//! their types, value ranges, and settings that contradict each other. Every check
//! records its error and carries on.
//!
//! The `pub(crate)` helpers that turn a raw value into a checked one are pure; `model.rs`
//! calls them again, after `Ctxt::check`, where they cannot fail.

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Field, Fields, FieldsNamed, LitInt, LitStr, Path, Type};

use crate::attr::{Attrs, FieldList, Setting};
use crate::ctxt::Ctxt;
use crate::symbol::*;
use crate::{duration, naming, suggest};

/// Default in-place retry policy, also used by `model.rs`.
pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const DEFAULT_BACKOFF_MS: u64 = 100;
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 30_000;
/// Default inbox retention: 7 days.
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// Runs every check on the type and its parsed attributes.
pub fn check(cx: &Ctxt, input: &DeriveInput, attrs: &Attrs) {
    let fields = check_shape(cx, input);
    check_field_attrs(cx, input);
    let topic = check_topic_name(cx, input, attrs);
    if let Some(key) = &attrs.key {
        check_field_list(cx, fields, key, Role::Key);
    }
    if let Some(outbox) = &attrs.outbox {
        let table = outbox.value.table.as_ref();
        check_table(
            cx,
            input,
            table,
            &outbox.path,
            "_outbox",
            "outbox(table = \"..\")",
        );
    }
    if let Some(inbox) = &attrs.inbox {
        let table = inbox.value.table.as_ref();
        check_table(
            cx,
            input,
            table,
            &inbox.path,
            "_inbox",
            "inbox(table = \"..\")",
        );
        if let Some(outbox) = &attrs.outbox {
            check_distinct_tables(cx, input, &outbox.value, &inbox.value);
        }
        if let Some(dedup) = &inbox.value.dedup {
            check_field_list(cx, fields, dedup, Role::Dedup);
        }
        if let Some(retention) = &inbox.value.retention
            && let Err(msg) = retention_secs(&retention.value)
        {
            cx.error_spanned_by(&retention.value, msg);
        }
    }
    if let Some(group) = &attrs.group
        && let Err(msg) = check_group(&group.value.value())
    {
        cx.error_spanned_by(&group.value, msg);
    }
    check_format(cx, attrs);
    for (setting, key, max) in [
        (&attrs.partitions, PARTITIONS, i32::MAX as u64),
        (&attrs.replication, REPLICATION, i16::MAX as u64),
    ] {
        if let Some(s) = setting
            && let Err(msg) = positive_int(&s.value, key, max)
        {
            cx.error_spanned_by(&s.value, msg);
        }
    }
    check_retry(cx, attrs);
    check_dlq(cx, attrs, topic.as_deref());
    check_direction(cx, attrs);
}

/// A struct with named fields, or an error saying why the shape is not supported.
fn check_shape<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Option<&'a FieldsNamed> {
    let generics = &input.generics;
    if generics.type_params().next().is_some() || generics.const_params().next().is_some() {
        cx.error_spanned_by(
            generics,
            "a topic type must be concrete: generics are not supported because the registry needs one type per topic",
        );
    } else if generics.lifetimes().next().is_some() {
        cx.error_spanned_by(
            generics,
            "a topic type must own its data: lifetime parameters are not supported because consumers decode each message into an owned value; use owned fields like `String` instead of `&str`",
        );
    }
    let ident = &input.ident;
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => return Some(named),
            Fields::Unnamed(unnamed) => cx.error_spanned_by(
                unnamed,
                format!(
                    "`#[derive(Topic)]` needs a struct with named fields: `key` and `dedup` refer to fields by name, and a tuple struct's fields have no names; write `struct {ident} {{ .. }}`"
                ),
            ),
            Fields::Unit => cx.error_spanned_by(
                ident,
                format!(
                    "`#[derive(Topic)]` needs a struct with named fields: a unit struct carries no data; write `struct {ident} {{}}` for a message without fields"
                ),
            ),
        },
        Data::Enum(data) => cx.error_spanned_by(
            data.enum_token,
            "`#[derive(Topic)]` needs a struct with named fields, not an enum: `key` and `dedup` refer to fields by name; put the enum in a field of a struct",
        ),
        Data::Union(data) => cx.error_spanned_by(
            data.union_token,
            "`#[derive(Topic)]` needs a struct with named fields, not a union: `key` and `dedup` refer to fields by name, and a union cannot be encoded safely",
        ),
    }
    None
}

/// `#[topic]` on a field (or an enum variant) is a mistake, not something to ignore.
fn check_field_attrs(cx: &Ctxt, input: &DeriveInput) {
    let misplaced = |attrs: &[syn::Attribute], what: &str| {
        for attr in attrs.iter().filter(|a| a.path() == TOPIC) {
            cx.error_spanned_by(
                attr,
                format!("`#[topic]` belongs on the struct, not on {what}"),
            );
        }
    };
    let fields = |fields: &Fields| {
        for field in fields {
            misplaced(&field.attrs, "a field");
        }
    };
    match &input.data {
        Data::Struct(data) => fields(&data.fields),
        Data::Enum(data) => {
            for variant in &data.variants {
                misplaced(&variant.attrs, "a variant");
                fields(&variant.fields);
            }
        }
        Data::Union(data) => {
            for field in &data.fields.named {
                misplaced(&field.attrs, "a field");
            }
        }
    }
}

/// The default topic name: kebab-case of the type name.
pub(crate) fn default_topic_name(input: &DeriveInput) -> String {
    naming::kebab_case(&input.ident.unraw().to_string())
}

/// The default table name: snake_case of the type name and a suffix.
pub(crate) fn default_table(input: &DeriveInput, suffix: &str) -> String {
    naming::snake_case(&input.ident.unraw().to_string()) + suffix
}

/// The topic name, explicit or default, when it is valid.
fn check_topic_name(cx: &Ctxt, input: &DeriveInput, attrs: &Attrs) -> Option<String> {
    let (name, result) = match &attrs.name {
        Some(name) => {
            let value = name.value.value();
            let result = naming::check_topic_name(&value).map_err(|msg| (msg, &name.value));
            (value, result)
        }
        None => {
            let value = default_topic_name(input);
            let result = naming::check_topic_name(&value).map_err(|msg| {
                cx.error_spanned_by(
                    &input.ident,
                    format!(
                        "the default topic name `{value}` (from the type name) is invalid: {msg}; set `#[topic(name = \"..\")]`"
                    ),
                );
            });
            return result.ok().map(|()| value);
        }
    };
    match result {
        Ok(()) => Some(name),
        Err((msg, lit)) => {
            cx.error_spanned_by(lit, msg);
            None
        }
    }
}

/// What a list of fields is used for.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Key,
    Dedup,
}

impl Role {
    fn key(self) -> &'static str {
        match self {
            Role::Key => "key",
            Role::Dedup => "dedup",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Role::Key => "a message key",
            Role::Dedup => "part of an inbox dedup key",
        }
    }
}

/// A named field of the struct, matched the way users write it: field `r#type` is
/// `"type"` (or `"r#type"`).
pub(crate) fn find_field<'a>(fields: &'a FieldsNamed, name: &str) -> Option<&'a Field> {
    let name = name.strip_prefix("r#").unwrap_or(name);
    fields
        .named
        .iter()
        .find(|f| f.ident.as_ref().is_some_and(|i| i.unraw() == name))
}

fn check_field_list(
    cx: &Ctxt,
    fields: Option<&FieldsNamed>,
    list: &Setting<FieldList>,
    role: Role,
) {
    let key = role.key();
    if list.value.fields.is_empty() {
        let msg = match role {
            Role::Key => {
                "`key` names no field; name at least one, like `key = [\"tenant\", \"customer_id\"]`, or remove `key` for messages without a key"
            }
            Role::Dedup => {
                "`dedup` names no field; name at least one, like `dedup = [\"tenant\", \"order_id\"]`, or write `inbox` alone to deduplicate on the message id"
            }
        };
        cx.error_spanned_by(&list.value.tokens, msg);
        return;
    }
    let mut seen: Vec<String> = Vec::new();
    for lit in &list.value.fields {
        let name = lit.value();
        if seen.contains(&name) {
            cx.error_spanned_by(lit, format!("field `{name}` appears twice in `{key}`"));
            continue;
        }
        seen.push(name.clone());
        // Without named fields the shape error already says what is wrong.
        let Some(fields) = fields else { continue };
        match find_field(fields, &name) {
            Some(field) => check_field_type(cx, field, role),
            None => {
                let names: Vec<String> = fields
                    .named
                    .iter()
                    .filter_map(|f| f.ident.as_ref().map(|i| i.unraw().to_string()))
                    .collect();
                let hint = if names.is_empty() {
                    "; the struct has no fields".to_owned()
                } else {
                    suggest::hint(&name, names.iter().map(String::as_str))
                };
                cx.error_spanned_by(lit, format!("unknown field `{name}` in `{key}`{hint}"));
            }
        }
    }
}

/// Syntactic early errors for types that can never be a key; every other type is checked
/// by the `KeyPart` / `DedupPart` bounds in the generated code, pointing at the field.
fn check_field_type(cx: &Ctxt, field: &Field, role: Role) {
    if let Some(reason) = bad_key_type(&field.ty, role) {
        let ty = type_text(&field.ty);
        cx.error_spanned_by(
            &field.ty,
            format!("`{ty}` cannot be {}: {reason}", role.what()),
        );
    }
}

/// Why `ty` can never be a key or dedup part, if it clearly cannot.
fn bad_key_type(ty: &Type, role: Role) -> Option<String> {
    let list_hint = match role {
        Role::Key => "`key = [\"a\", \"b\"]`",
        Role::Dedup => "`dedup = [\"a\", \"b\"]`",
    };
    match ty {
        Type::Paren(inner) => bad_key_type(&inner.elem, role),
        Type::Group(inner) => bad_key_type(&inner.elem, role),
        Type::Reference(inner) => bad_key_type(&inner.elem, role),
        Type::Slice(_) | Type::Array(_) => Some(format!(
            "a key is one value, not a collection; name several fields with {list_hint} for a composite key"
        )),
        Type::Tuple(_) => Some(format!(
            "a key is one value, not a tuple; name several fields with {list_hint} for a composite key"
        )),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            let name = last.ident.to_string();
            match name.as_str() {
                "f32" | "f64" => {
                    Some("floats don't compare exactly; use an integer or a string".into())
                }
                "Option" => {
                    Some("a key cannot be absent; use a field that is not an `Option`".into())
                }
                "Vec" | "VecDeque" | "LinkedList" | "HashMap" | "BTreeMap" | "HashSet"
                | "BTreeSet" | "BinaryHeap" => Some(format!(
                    "a key is one value, not a collection; name several fields with {list_hint} for a composite key"
                )),
                "u64" | "u128" | "i128" | "usize" | "isize" if role == Role::Dedup => {
                    Some("it does not fit a BIGINT column; use `i64` or a smaller integer".into())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A type as the user would write it: `Vec<String>`, not `Vec < String >`.
pub(crate) fn type_text(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = if i > 0 { chars[i - 1] } else { ' ' };
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            let word = |c: char| c.is_alphanumeric() || c == '_';
            let keep = prev == ','
                || prev == ';'
                || (word(prev) && (word(next) || matches!(next, '\'' | '(' | '[' | '&')));
            if !keep {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn check_table(
    cx: &Ctxt,
    input: &DeriveInput,
    table: Option<&Setting<LitStr>>,
    flag: &Path,
    suffix: &str,
    example: &str,
) {
    match table {
        Some(table) => {
            let name = table.value.value();
            if let Err(msg) =
                naming::check_table_name(&name).and_then(|()| naming::check_module_name(&name))
            {
                cx.error_spanned_by(&table.value, msg);
            }
        }
        None => {
            let name = default_table(input, suffix);
            if let Err(msg) = naming::check_table_name(&name) {
                cx.error_spanned_by(
                    flag,
                    format!("the default table name does not work: {msg}; name the table with `{example}`"),
                );
            }
        }
    }
}

/// One table cannot be both the outbox and the inbox (nor the module of both entities).
fn check_distinct_tables(
    cx: &Ctxt,
    input: &DeriveInput,
    outbox: &crate::attr::Outbox,
    inbox: &crate::attr::Inbox,
) {
    let name = |t: &Option<Setting<LitStr>>, suffix| match t {
        Some(t) => t.value.value(),
        None => default_table(input, suffix),
    };
    let table = name(&outbox.table, "_outbox");
    if table == name(&inbox.table, "_inbox") {
        // At least one of them is explicit: the defaults differ.
        let lit = inbox.table.as_ref().or(outbox.table.as_ref());
        if let Some(lit) = lit {
            cx.error_spanned_by(
                &lit.value,
                format!("the outbox and the inbox cannot share the table `{table}`; name them differently"),
            );
        }
    }
}

fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() {
        return Err(
            "the consumer group cannot be empty; remove `group` to use the context's default group"
                .into(),
        );
    }
    if group.trim() != group {
        return Err(format!(
            "the consumer group `{group}` has leading or trailing whitespace; remove it"
        ));
    }
    Ok(())
}

fn check_format(cx: &Ctxt, attrs: &Attrs) {
    if let (Some(format), Some(codec)) = (&attrs.format, &attrs.codec) {
        let later = later_path(format, codec);
        cx.error_spanned_by(
            later,
            "`format` and `codec` contradict each other: a `codec` replaces the format; keep one of them",
        );
    }
    if let Some(format) = &attrs.format {
        let value = format.value.value();
        if value != "json" {
            cx.error_spanned_by(
                &format.value,
                format!(
                    "unknown format `{value}`; the built-in format is `json`; for another encoding implement `kafka_orm::Codec` and write `codec = \"path::to::YourCodec\"`"
                ),
            );
        }
    }
}

/// An integer setting in `1..=max`.
pub(crate) fn positive_int(lit: &LitInt, key: Symbol, max: u64) -> Result<u64, String> {
    let value: i128 = lit
        .base10_parse()
        .map_err(|_| format!("`{key}` must be at most {max}"))?;
    if value < 1 {
        let why = if key == ATTEMPTS {
            " (the first attempt counts)"
        } else {
            ""
        };
        return Err(format!("`{key}` must be at least 1{why}"));
    }
    if value > i128::from(max) {
        return Err(format!("`{key}` must be at most {max}"));
    }
    Ok(value as u64)
}

/// A duration setting, in milliseconds.
pub(crate) fn duration_ms(lit: &LitStr) -> Result<u64, String> {
    let text = lit.value();
    duration::parse_ms(&text)
        .map_err(|err| format!("invalid duration `{text}`: {err}; {}", duration::EXPECTED))
}

/// The inbox retention, in whole seconds, at least one.
pub(crate) fn retention_secs(lit: &LitStr) -> Result<u64, String> {
    let ms = duration_ms(lit)?;
    if ms < 1000 {
        return Err("`retention` must be at least 1s".into());
    }
    if ms % 1000 != 0 {
        return Err(format!(
            "`retention` is kept in whole seconds, and `{}` is not",
            lit.value()
        ));
    }
    Ok(ms / 1000)
}

fn check_retry(cx: &Ctxt, attrs: &Attrs) {
    if let Some(retry_topics) = &attrs.retry_topics
        && attrs.retry.is_none()
    {
        cx.error_spanned_by(
            &retry_topics.path,
            "`retry_topics` needs `retry`: the retry topics carry the retry policy's attempts; add `retry` or `retry(attempts = ..)`",
        );
    }
    let Some(retry) = &attrs.retry else { return };
    if let Some(attempts) = &retry.value.attempts
        && let Err(msg) = positive_int(&attempts.value, ATTEMPTS, u64::from(u32::MAX))
    {
        cx.error_spanned_by(&attempts.value, msg);
    }
    /// `None` after an error; `Some(None)` when the setting is absent.
    fn duration<'a>(
        cx: &Ctxt,
        s: &'a Option<Setting<LitStr>>,
    ) -> Option<Option<(u64, &'a LitStr)>> {
        match s {
            None => Some(None),
            Some(s) => match duration_ms(&s.value) {
                Ok(ms) => Some(Some((ms, &s.value))),
                Err(msg) => {
                    cx.error_spanned_by(&s.value, msg);
                    None
                }
            },
        }
    }
    let (Some(backoff), Some(max_backoff)) = (
        duration(cx, &retry.value.backoff),
        duration(cx, &retry.value.max_backoff),
    ) else {
        return;
    };
    let b = backoff.map_or(DEFAULT_BACKOFF_MS, |(ms, _)| ms);
    let m = max_backoff.map_or(DEFAULT_MAX_BACKOFF_MS, |(ms, _)| ms);
    if b <= m {
        return;
    }
    let show = |d: Option<(u64, &LitStr)>, default: &str| match d {
        Some((_, lit)) => format!("`{}`", lit.value()),
        None => format!("`{default}` by default"),
    };
    let msg = format!(
        "`backoff` ({}) is longer than `max_backoff` ({}); the backoff starts at `backoff` and doubles up to `max_backoff`, so `backoff` cannot exceed it",
        show(backoff, "100ms"),
        show(max_backoff, "30s"),
    );
    match (backoff, max_backoff) {
        (_, Some((_, lit))) => cx.error_spanned_by(lit, msg),
        (Some((_, lit)), None) => cx.error_spanned_by(lit, msg),
        (None, None) => unreachable!("the defaults are ordered"),
    }
}

fn check_dlq(cx: &Ctxt, attrs: &Attrs, topic: Option<&str>) {
    let Some(dlq) = &attrs.dlq else { return };
    match &dlq.value {
        Some(lit) => {
            let name = lit.value();
            if let Err(msg) = naming::check_topic_name(&name) {
                cx.error_spanned_by(lit, msg);
            } else if topic == Some(name.as_str()) {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "the dead-letter topic must differ from the topic itself; write `dlq` alone to use `{name}.dlq`"
                    ),
                );
            }
        }
        None => {
            let Some(topic) = topic else { return };
            let name = format!("{topic}.dlq");
            if let Err(msg) = naming::check_topic_name(&name) {
                cx.error_spanned_by(
                    &dlq.path,
                    format!("the default dead-letter topic `{name}` does not work: {msg}; name it with `dlq = \"..\"`"),
                );
            }
        }
    }
}

fn later_path<'a, A, B>(a: &'a Setting<A>, b: &'a Setting<B>) -> &'a Path {
    if a.order > b.order { &a.path } else { &b.path }
}

/// `produce_only` / `consume_only` against each other and the settings of the other side.
fn check_direction(cx: &Ctxt, attrs: &Attrs) {
    /// `(order, path)` of a setting, whatever its value type.
    fn at<T>(s: &Option<Setting<T>>) -> Option<(usize, &Path)> {
        s.as_ref().map(|s| (s.order, &s.path))
    }
    let later = |a: (usize, &'_ Path), b: (usize, &'_ Path)| -> Path {
        if a.0 > b.0 { a.1.clone() } else { b.1.clone() }
    };
    let produce_only = at(&attrs.produce_only);
    let consume_only = at(&attrs.consume_only);
    if let (Some(p), Some(c)) = (produce_only, consume_only) {
        cx.error_spanned_by(
            later(p, c),
            "`produce_only` and `consume_only` contradict each other: the topic would be neither produced nor consumed; remove one of them",
        );
    }
    if let Some(p) = produce_only {
        let consumer_side = [
            (INBOX, at(&attrs.inbox)),
            (GROUP, at(&attrs.group)),
            (RETRY, at(&attrs.retry)),
            (RETRY_TOPICS, at(&attrs.retry_topics)),
            (DLQ, at(&attrs.dlq)),
        ];
        for (key, setting) in consumer_side {
            if let Some(s) = setting {
                cx.error_spanned_by(
                    later(p, s),
                    format!(
                        "`{key}` contradicts `produce_only`: `{key}` is a consumer setting and a `produce_only` topic is never consumed; remove one of them"
                    ),
                );
            }
        }
    }
    if let (Some(c), Some(o)) = (consume_only, at(&attrs.outbox)) {
        cx.error_spanned_by(
            later(c, o),
            "`outbox` contradicts `consume_only`: the outbox produces to the topic and a `consume_only` topic is never produced; remove one of them",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors(input: DeriveInput) -> Vec<String> {
        let cx = Ctxt::new();
        let attrs = crate::attr::parse(&cx, &input.attrs);
        check(&cx, &input, &attrs);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn valid_topic_has_no_errors() {
        let errs = errors(parse_quote! {
            #[topic(name = "orders", key = ["tenant", "r#type"], outbox, inbox(dedup = "id"),
                    retry(backoff = "1s", max_backoff = "1m"), retry_topics, dlq)]
            struct Order { tenant: String, r#type: String, id: i64 }
        });
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn shapes() {
        let tuple = errors(parse_quote!(
            struct T(i64);
        ));
        assert!(tuple[0].contains("tuple struct"), "{tuple:?}");
        let unit = errors(parse_quote!(
            struct U;
        ));
        assert!(unit[0].contains("unit struct"), "{unit:?}");
        let en = errors(parse_quote!(
            enum E {
                A,
            }
        ));
        assert!(en[0].contains("not an enum"), "{en:?}");
        let generic = errors(parse_quote!(
            struct G<T> {
                t: T,
            }
        ));
        assert!(generic[0].contains("must be concrete"), "{generic:?}");
        let lifetime = errors(parse_quote!(
            struct L<'a> {
                s: &'a str,
            }
        ));
        assert!(lifetime[0].contains("must own its data"), "{lifetime:?}");
        let konst = errors(parse_quote!(
            struct C<const N: usize> {
                a: [u8; N],
            }
        ));
        assert!(konst[0].contains("must be concrete"), "{konst:?}");
        let field_attr = errors(parse_quote!(
            struct F {
                #[topic(key)]
                id: i64,
            }
        ));
        assert_eq!(
            field_attr,
            ["`#[topic]` belongs on the struct, not on a field"]
        );
    }

    #[test]
    fn field_references() {
        let errs = errors(parse_quote! {
            #[topic(key = "custmer_id", inbox(dedup = ["order_id", "zzz", "order_id"]))]
            struct Order { order_id: i64, customer_id: String }
        });
        assert_eq!(
            errs,
            [
                "unknown field `custmer_id` in `key`; did you mean `customer_id`?",
                "unknown field `zzz` in `dedup`; expected one of: `order_id`, `customer_id`",
                "field `order_id` appears twice in `dedup`",
            ]
        );
        let empty = errors(parse_quote!(
            #[topic(key = [])]
            struct A {
                id: i64,
            }
        ));
        assert!(empty[0].starts_with("`key` names no field"), "{empty:?}");
    }

    #[test]
    fn bad_field_types() {
        let errs = errors(parse_quote! {
            #[topic(key = ["f", "v", "o", "t", "a"], inbox(dedup = ["u", "m", "ok"]))]
            struct A { f: f64, v: Vec<String>, o: Option<i64>, t: (i32, i32), a: [u8; 4],
                       u: u64, m: std::collections::HashMap<String, i64>, ok: i64 }
        });
        assert_eq!(
            errs,
            [
                "`f64` cannot be a message key: floats don't compare exactly; use an integer or a string",
                "`Vec<String>` cannot be a message key: a key is one value, not a collection; name several fields with `key = [\"a\", \"b\"]` for a composite key",
                "`Option<i64>` cannot be a message key: a key cannot be absent; use a field that is not an `Option`",
                "`(i32, i32)` cannot be a message key: a key is one value, not a tuple; name several fields with `key = [\"a\", \"b\"]` for a composite key",
                "`[u8; 4]` cannot be a message key: a key is one value, not a collection; name several fields with `key = [\"a\", \"b\"]` for a composite key",
                "`u64` cannot be part of an inbox dedup key: it does not fit a BIGINT column; use `i64` or a smaller integer",
                "`std::collections::HashMap<String, i64>` cannot be part of an inbox dedup key: a key is one value, not a collection; name several fields with `dedup = [\"a\", \"b\"]` for a composite key",
            ]
        );
        // u64 is a fine message key.
        assert!(
            errors(parse_quote!(
                #[topic(key = "u")]
                struct B {
                    u: u64,
                }
            ))
            .is_empty()
        );
    }

    #[test]
    fn values() {
        let errs = errors(parse_quote! {
            #[topic(name = "bad name", partitions = 0, replication = 40000, format = "avro",
                    group = " g", outbox(table = "order-outbox"),
                    retry(attempts = 0, backoff = "5", max_backoff = "1h"))]
            struct A { id: i64 }
        });
        assert_eq!(
            errs,
            [
                "invalid Kafka topic name `bad name`: a space is not allowed; a topic name uses only ASCII letters, digits, `.`, `_` and `-`",
                "invalid table name `order-outbox`: `-` is not allowed; a table name is ASCII letters, digits and `_`, not starting with a digit",
                "the consumer group ` g` has leading or trailing whitespace; remove it",
                "unknown format `avro`; the built-in format is `json`; for another encoding implement `kafka_orm::Codec` and write `codec = \"path::to::YourCodec\"`",
                "`partitions` must be at least 1",
                "`replication` must be at most 32767",
                "`attempts` must be at least 1 (the first attempt counts)",
                "invalid duration `5`: a number needs a unit (`ms`, `s`, `m`, `h` or `d`); expected a duration like `500ms`, `30s`, `5m`, `1h30m` or `7d`",
            ]
        );
    }

    #[test]
    fn backoff_order() {
        let both = errors(parse_quote!(
            #[topic(retry(backoff = "1m", max_backoff = "30s"))]
            struct A {}
        ));
        assert_eq!(
            both,
            [
                "`backoff` (`1m`) is longer than `max_backoff` (`30s`); the backoff starts at `backoff` and doubles up to `max_backoff`, so `backoff` cannot exceed it"
            ]
        );
        let default_max = errors(parse_quote!(
            #[topic(retry(backoff = "1m"))]
            struct A {}
        ));
        assert!(
            default_max[0].contains("(`30s` by default)"),
            "{default_max:?}"
        );
        let default_backoff = errors(parse_quote!(
            #[topic(retry(max_backoff = "10ms"))]
            struct A {}
        ));
        assert!(
            default_backoff[0].contains("(`100ms` by default)"),
            "{default_backoff:?}"
        );
    }

    #[test]
    fn contradictions() {
        let errs = errors(parse_quote! {
            #[topic(name = "t", produce_only, consume_only, inbox, outbox, retry_topics,
                    dlq = "t", format = "json", codec = "C")]
            struct A {}
        });
        assert_eq!(
            errs,
            [
                "`format` and `codec` contradict each other: a `codec` replaces the format; keep one of them",
                "`retry_topics` needs `retry`: the retry topics carry the retry policy's attempts; add `retry` or `retry(attempts = ..)`",
                "the dead-letter topic must differ from the topic itself; write `dlq` alone to use `t.dlq`",
                "`produce_only` and `consume_only` contradict each other: the topic would be neither produced nor consumed; remove one of them",
                "`inbox` contradicts `produce_only`: `inbox` is a consumer setting and a `produce_only` topic is never consumed; remove one of them",
                "`retry_topics` contradicts `produce_only`: `retry_topics` is a consumer setting and a `produce_only` topic is never consumed; remove one of them",
                "`dlq` contradicts `produce_only`: `dlq` is a consumer setting and a `produce_only` topic is never consumed; remove one of them",
                "`outbox` contradicts `consume_only`: the outbox produces to the topic and a `consume_only` topic is never produced; remove one of them",
            ]
        );
    }

    #[test]
    fn default_names_are_checked() {
        let errs = errors(parse_quote!(
            #[topic(dlq)]
            struct Ördér {}
        ));
        assert!(
            errs[0].starts_with("the default topic name `ördér`"),
            "{errs:?}"
        );
        let long = format!("T{}", "x".repeat(60));
        let input: DeriveInput =
            syn::parse_str(&format!("#[topic(outbox)] struct {long} {{}}")).unwrap();
        let errs = errors(input);
        assert!(
            errs[0].starts_with("the default table name does not work"),
            "{errs:?}"
        );
    }

    #[test]
    fn type_text_reads_like_source() {
        let t = |ty: Type| type_text(&ty);
        assert_eq!(t(parse_quote!(Vec<String>)), "Vec<String>");
        assert_eq!(
            t(parse_quote!(std::collections::HashMap<String, i64>)),
            "std::collections::HashMap<String, i64>"
        );
        assert_eq!(t(parse_quote!((i32, i32))), "(i32, i32)");
        assert_eq!(t(parse_quote!([u8; 4])), "[u8; 4]");
        assert_eq!(t(parse_quote!(&'static [u8])), "&'static [u8]");
        assert_eq!(t(parse_quote!(Option<Vec<u8>>)), "Option<Vec<u8>>");
    }
}
