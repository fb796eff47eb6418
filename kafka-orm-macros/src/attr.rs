//! `#[topic(..)]` → raw settings. This pass checks syntax and the kind of each value
//! (string, integer, list, flag), flags unknown and duplicate keys, and nothing else:
//! what the values mean is checked in `check.rs`.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, LitInt, LitStr, Meta, Path, Token, token};

use crate::ctxt::Ctxt;
use crate::suggest;
use crate::symbol::*;

/// One setting as written: the key (for error spans), its position among all keys of
/// all `#[topic]` attributes (to blame the later of two contradicting keys), and its value.
pub struct Setting<T> {
    pub path: Path,
    pub order: usize,
    pub value: T,
}

/// `key = "a"` or `key = ["a", "b"]` (also `dedup = ..`).
pub struct FieldList {
    /// The whole value, for errors about the list itself.
    pub tokens: TokenStream,
    pub fields: Vec<LitStr>,
}

/// `outbox` or `outbox(table = "..")`.
#[derive(Default)]
pub struct Outbox {
    pub table: Option<Setting<LitStr>>,
}

/// `inbox` or `inbox(dedup = .., retention = "..", table = "..")`.
#[derive(Default)]
pub struct Inbox {
    pub dedup: Option<Setting<FieldList>>,
    pub retention: Option<Setting<LitStr>>,
    pub table: Option<Setting<LitStr>>,
}

/// `retry` or `retry(attempts = .., backoff = "..", max_backoff = "..")`.
#[derive(Default)]
pub struct Retry {
    pub attempts: Option<Setting<LitInt>>,
    pub backoff: Option<Setting<LitStr>>,
    pub max_backoff: Option<Setting<LitStr>>,
}

/// A string holding a path or type, and what it parsed to (tokens spanned on the string).
pub struct Parsed<T> {
    pub lit: LitStr,
    pub parsed: T,
}

/// Everything `#[topic(..)]` says; `None` where a key is absent (or its value was invalid,
/// which has already been reported).
#[derive(Default)]
pub struct Attrs {
    pub name: Option<Setting<LitStr>>,
    pub key: Option<Setting<FieldList>>,
    pub outbox: Option<Setting<Outbox>>,
    pub inbox: Option<Setting<Inbox>>,
    pub group: Option<Setting<LitStr>>,
    pub format: Option<Setting<LitStr>>,
    pub codec: Option<Setting<Parsed<syn::Type>>>,
    pub partitions: Option<Setting<LitInt>>,
    pub replication: Option<Setting<LitInt>>,
    pub retry: Option<Setting<Retry>>,
    pub retry_topics: Option<Setting<()>>,
    pub dlq: Option<Setting<Option<LitStr>>>,
    pub produce_only: Option<Setting<()>>,
    pub consume_only: Option<Setting<()>>,
    pub krate: Option<Setting<Parsed<Path>>>,
}

/// Claims `key` (written at `path`); claiming it again is a duplicate-key error on the
/// second occurrence, whose value the caller then skips.
fn claim(cx: &Ctxt, seen: &mut Vec<Symbol>, key: Symbol, path: &Path, within: &str) -> bool {
    if seen.contains(&key) {
        cx.error_spanned_by(path, format!("duplicate `{key}` in {within}"));
        return false;
    }
    seen.push(key);
    true
}

/// Parses every `#[topic(..)]` attribute of the type. Several attributes merge.
pub fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Attrs {
    let mut out = Attrs::default();
    // Keys claimed so far, valid value or not (an invalid value still counts for duplicates).
    let mut seen: Vec<Symbol> = Vec::new();
    let mut order = 0;
    for attr in attrs.iter().filter(|a| a.path() == TOPIC) {
        match &attr.meta {
            // `#[topic]` alone: nothing to set.
            Meta::Path(_) => continue,
            Meta::NameValue(nv) => {
                cx.error_spanned_by(
                    nv,
                    "`#[topic]` takes its settings in parentheses, like `#[topic(name = \"order-events\")]`",
                );
                continue;
            }
            Meta::List(_) => {}
        }
        let result = attr.parse_nested_meta(|meta| {
            order += 1;
            parse_key(cx, &meta, &mut out, &mut seen, order)
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    out
}

fn setting<T>(meta: &ParseNestedMeta, order: usize, value: T) -> Setting<T> {
    Setting {
        path: meta.path.clone(),
        order,
        value,
    }
}

/// Sets `$slot` from the value parsed by `$parse`, unless `$key` was already seen in this
/// list (then the duplicate is reported and its value skipped).
macro_rules! set_once {
    ($cx:expr, $seen:expr, $meta:expr, $path:expr, $order:expr, $within:expr, $slot:expr, $key:expr, $parse:expr) => {{
        if claim($cx, $seen, $key, $path, $within) {
            if let Some(v) = $parse {
                $slot = Some(setting($meta, $order, v));
            }
        } else {
            skip_value($meta.input)?;
        }
    }};
}

fn parse_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    out: &mut Attrs,
    seen: &mut Vec<Symbol>,
    order: usize,
) -> syn::Result<()> {
    const WITHIN: &str = "#[topic(..)]";
    let path = &meta.path;
    macro_rules! value {
        ($field:ident, $key:expr, $parse:expr) => {
            set_once!(
                cx, seen, meta, path, order, WITHIN, out.$field, $key, $parse
            )
        };
    }

    if meta.path == NAME {
        value!(
            name,
            NAME,
            string(cx, meta, NAME, "name = \"order-events\"")?
        )
    } else if meta.path == KEY {
        value!(
            key,
            KEY,
            field_list(
                cx,
                meta,
                KEY,
                "key = \"customer_id\"` or `key = [\"tenant\", \"customer_id\"]"
            )?
        )
    } else if meta.path == OUTBOX {
        value!(outbox, OUTBOX, outbox(cx, meta)?)
    } else if meta.path == INBOX {
        value!(inbox, INBOX, inbox(cx, meta)?)
    } else if meta.path == GROUP {
        value!(
            group,
            GROUP,
            string(cx, meta, GROUP, "group = \"order-processor\"")?
        )
    } else if meta.path == FORMAT {
        value!(
            format,
            FORMAT,
            string(cx, meta, FORMAT, "format = \"json\"")?
        )
    } else if meta.path == CODEC {
        value!(codec, CODEC, codec(cx, meta)?)
    } else if meta.path == PARTITIONS {
        value!(
            partitions,
            PARTITIONS,
            integer(cx, meta, PARTITIONS, "partitions = 6")?
        )
    } else if meta.path == REPLICATION {
        value!(
            replication,
            REPLICATION,
            integer(cx, meta, REPLICATION, "replication = 3")?
        )
    } else if meta.path == RETRY {
        value!(retry, RETRY, retry(cx, meta)?)
    } else if meta.path == RETRY_TOPICS {
        value!(retry_topics, RETRY_TOPICS, flag(cx, meta, RETRY_TOPICS)?)
    } else if meta.path == DLQ {
        value!(dlq, DLQ, dlq(cx, meta)?)
    } else if meta.path == PRODUCE_ONLY {
        value!(produce_only, PRODUCE_ONLY, flag(cx, meta, PRODUCE_ONLY)?)
    } else if meta.path == CONSUME_ONLY {
        value!(consume_only, CONSUME_ONLY, flag(cx, meta, CONSUME_ONLY)?)
    } else if meta.path == CRATE {
        value!(krate, CRATE, crate_path(cx, meta)?)
    } else if let Some(msg) = misplaced_nested_key(&meta.path) {
        cx.error_spanned_by(&meta.path, msg);
        skip_value(meta.input)?;
    } else {
        unknown_key(cx, meta, TOPIC_KEYS, WITHIN)?;
    }
    Ok(())
}

/// A key of `outbox(..)`, `inbox(..)` or `retry(..)` written at the top level (or a
/// spelling of it that other libraries use), and where it goes instead.
fn misplaced_nested_key(path: &Path) -> Option<String> {
    let ident = path.get_ident()?.to_string();
    let (inside, example, renamed) = match ident.as_str() {
        "dedup" => ("inbox", "inbox(dedup = \"order_id\")", false),
        "retention" => ("inbox", "inbox(retention = \"7d\")", false),
        "inbox_table" => ("inbox", "inbox(table = \"order_inbox\")", true),
        "outbox_table" => ("outbox", "outbox(table = \"order_outbox\")", true),
        "attempts" | "backoff" | "max_backoff" => {
            ("retry", "retry(attempts = 5, backoff = \"100ms\")", false)
        }
        "table" => {
            return Some(
                "`table` belongs inside `outbox(..)` or `inbox(..)`, like `outbox(table = \"order_outbox\")`"
                    .to_owned(),
            );
        }
        _ => return None,
    };
    let what = if renamed {
        format!("`{ident}` is written `table` and belongs")
    } else {
        format!("`{ident}` belongs")
    };
    Some(format!("{what} inside `{inside}(..)`: write `{example}`"))
}

/// Records an unknown key (with a suggestion) and skips its value, so the keys after it
/// are still checked.
fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    known: &[Symbol],
    within: &str,
) -> syn::Result<()> {
    let typed = path_text(&meta.path);
    let hint = suggest::hint(&typed, known.iter().map(|s| s.0));
    cx.error_spanned_by(
        &meta.path,
        format!("unknown key `{typed}` in {within}{hint}"),
    );
    skip_value(meta.input)
}

fn path_text(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// Skips `= value` or `(..)` after a key, up to the next `,`.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    take_until_comma(input).map(drop)
}

fn take_until_comma(input: ParseStream) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

/// The tokens after `key =`, or `None` (error recorded) when the key has no `= value`.
fn value_tokens(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    expected: &dyn Fn() -> String,
) -> syn::Result<Option<TokenStream>> {
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(&meta.path, expected());
        skip_value(meta.input)?;
        return Ok(None);
    }
    meta.input.parse::<Token![=]>()?;
    let tokens = take_until_comma(meta.input)?;
    if tokens.is_empty() {
        cx.error_spanned_by(&meta.path, expected());
        return Ok(None);
    }
    Ok(Some(tokens))
}

/// `key = "..."`.
fn string(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: Symbol,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let expected = || format!("`{key}` expects a string, like `{example}`");
    let Some(tokens) = value_tokens(cx, meta, &expected)? else {
        return Ok(None);
    };
    match syn::parse2::<LitStr>(tokens.clone()) {
        Ok(lit) => Ok(Some(lit)),
        Err(_) => {
            cx.error_spanned_by(tokens, expected());
            Ok(None)
        }
    }
}

/// `key = 6`.
fn integer(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: Symbol,
    example: &str,
) -> syn::Result<Option<LitInt>> {
    let expected = || format!("`{key}` expects an integer, like `{example}`");
    let Some(tokens) = value_tokens(cx, meta, &expected)? else {
        return Ok(None);
    };
    match syn::parse2::<LitInt>(tokens.clone()) {
        Ok(lit) => Ok(Some(lit)),
        Err(_) => {
            cx.error_spanned_by(tokens, expected());
            Ok(None)
        }
    }
}

/// `key = "field"` or `key = ["a", "b"]`.
fn field_list(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: Symbol,
    example: &str,
) -> syn::Result<Option<FieldList>> {
    let expected =
        || format!("`{key}` expects a field name or a list of field names, like `{example}`");
    let Some(tokens) = value_tokens(cx, meta, &expected)? else {
        return Ok(None);
    };
    let parsed = match tokens.clone().into_iter().next() {
        Some(TokenTree::Group(group))
            if group.delimiter() == Delimiter::Bracket
                && tokens.clone().into_iter().count() == 1 =>
        {
            Punctuated::<LitStr, Token![,]>::parse_terminated
                .parse2(group.stream())
                .map(|list| list.into_iter().collect())
        }
        _ => syn::parse2::<LitStr>(tokens.clone()).map(|lit| vec![lit]),
    };
    match parsed {
        Ok(fields) => Ok(Some(FieldList { tokens, fields })),
        Err(_) => {
            cx.error_spanned_by(tokens, expected());
            Ok(None)
        }
    }
}

/// A key that takes no value: `retry_topics`, `produce_only`, `consume_only`.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta, key: Symbol) -> syn::Result<Option<()>> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        return Ok(Some(()));
    }
    cx.error_spanned_by(
        &meta.path,
        format!("`{key}` is a flag and takes no value; write `{key}` alone"),
    );
    skip_value(meta.input)?;
    Ok(None)
}

/// A key that is either a bare flag or has nested settings: `outbox`, `inbox`, `retry`.
/// Returns whether there are nested settings to parse (`Some(true)`), or `None` after an
/// error (`outbox = ..`).
fn flag_or_list(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<bool>> {
    if meta.input.peek(token::Paren) {
        return Ok(Some(true));
    }
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        return Ok(Some(false));
    }
    let key = path_text(&meta.path);
    cx.error_spanned_by(
        &meta.path,
        format!("`{key}` takes no `= value`; write `{key}` alone or `{example}`"),
    );
    skip_value(meta.input)?;
    Ok(None)
}

/// Runs `f` on each nested key of `key(..)`, reporting unknown keys; a syntax error
/// inside the parentheses is recorded and the rest of them skipped.
fn nested(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    mut f: impl FnMut(&ParseNestedMeta) -> syn::Result<()>,
) -> syn::Result<()> {
    if let Err(err) = meta.parse_nested_meta(|m| f(&m)) {
        cx.syn_error(err);
    }
    Ok(())
}

fn outbox(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Outbox>> {
    const WITHIN: &str = "`outbox(..)`";
    let Some(has_list) = flag_or_list(cx, meta, "outbox(table = \"order_outbox\")")? else {
        return Ok(None);
    };
    let mut out = Outbox::default();
    let mut seen = Vec::new();
    if has_list {
        nested(cx, meta, |m| {
            if m.path == TABLE {
                if claim(cx, &mut seen, TABLE, &m.path, WITHIN) {
                    if let Some(v) = string(cx, m, TABLE, "table = \"order_outbox\"")? {
                        out.table = Some(setting(m, 0, v));
                    }
                } else {
                    skip_value(m.input)?;
                }
                Ok(())
            } else {
                unknown_key(cx, m, OUTBOX_KEYS, WITHIN)
            }
        })?;
    }
    Ok(Some(out))
}

fn inbox(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Inbox>> {
    const WITHIN: &str = "`inbox(..)`";
    let Some(has_list) = flag_or_list(cx, meta, "inbox(dedup = \"order_id\")")? else {
        return Ok(None);
    };
    let mut out = Inbox::default();
    let mut seen = Vec::new();
    if has_list {
        nested(cx, meta, |m| {
            macro_rules! value {
                ($field:ident, $key:expr, $parse:expr) => {
                    set_once!(
                        cx, &mut seen, m, &m.path, 0, WITHIN, out.$field, $key, $parse
                    )
                };
            }
            if m.path == DEDUP {
                value!(
                    dedup,
                    DEDUP,
                    field_list(
                        cx,
                        m,
                        DEDUP,
                        "dedup = \"order_id\"` or `dedup = [\"tenant\", \"order_id\"]"
                    )?
                )
            } else if m.path == RETENTION {
                value!(
                    retention,
                    RETENTION,
                    string(cx, m, RETENTION, "retention = \"7d\"")?
                )
            } else if m.path == TABLE {
                value!(
                    table,
                    TABLE,
                    string(cx, m, TABLE, "table = \"order_inbox\"")?
                )
            } else {
                unknown_key(cx, m, INBOX_KEYS, WITHIN)?
            }
            Ok(())
        })?;
    }
    Ok(Some(out))
}

fn retry(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Retry>> {
    const WITHIN: &str = "`retry(..)`";
    let Some(has_list) = flag_or_list(cx, meta, "retry(attempts = 5, backoff = \"100ms\")")? else {
        return Ok(None);
    };
    let mut out = Retry::default();
    let mut seen = Vec::new();
    if has_list {
        nested(cx, meta, |m| {
            macro_rules! value {
                ($field:ident, $key:expr, $parse:expr) => {
                    set_once!(
                        cx, &mut seen, m, &m.path, 0, WITHIN, out.$field, $key, $parse
                    )
                };
            }
            if m.path == ATTEMPTS {
                value!(
                    attempts,
                    ATTEMPTS,
                    integer(cx, m, ATTEMPTS, "attempts = 5")?
                )
            } else if m.path == BACKOFF {
                value!(
                    backoff,
                    BACKOFF,
                    string(cx, m, BACKOFF, "backoff = \"100ms\"")?
                )
            } else if m.path == MAX_BACKOFF {
                value!(
                    max_backoff,
                    MAX_BACKOFF,
                    string(cx, m, MAX_BACKOFF, "max_backoff = \"30s\"")?
                )
            } else {
                unknown_key(cx, m, RETRY_KEYS, WITHIN)?
            }
            Ok(())
        })?;
    }
    Ok(Some(out))
}

/// `dlq` or `dlq = "name"`.
fn dlq(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Option<LitStr>>> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        return Ok(Some(None));
    }
    if meta.input.peek(token::Paren) {
        cx.error_spanned_by(
            &meta.path,
            "`dlq` takes no parentheses; write `dlq` alone or `dlq = \"order-events.dlq\"`",
        );
        skip_value(meta.input)?;
        return Ok(None);
    }
    Ok(string(cx, meta, DLQ, "dlq = \"order-events.dlq\"")?.map(Some))
}

/// `codec = "path::MyCodec"`.
fn codec(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Parsed<syn::Type>>> {
    let Some(lit) = string(cx, meta, CODEC, "codec = \"crate::codecs::MyCodec\"")? else {
        return Ok(None);
    };
    match lit.parse::<syn::Type>() {
        Ok(parsed) => Ok(Some(Parsed { lit, parsed })),
        Err(_) => {
            cx.error_spanned_by(
                &lit,
                format!(
                    "`codec = \"{}\"` is not a type; write the path of a type that implements `kafka_orm::Codec<Self>`, like `codec = \"crate::codecs::MyCodec\"`",
                    lit.value()
                ),
            );
            Ok(None)
        }
    }
}

/// `crate = "my_reexport::kafka_orm"`.
fn crate_path(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Parsed<Path>>> {
    let Some(lit) = string(cx, meta, CRATE, "crate = \"my_reexport::kafka_orm\"")? else {
        return Ok(None);
    };
    match lit.parse_with(Path::parse_mod_style) {
        Ok(parsed) => Ok(Some(Parsed { lit, parsed })),
        Err(_) => {
            cx.error_spanned_by(
                &lit,
                format!(
                    "`crate = \"{}\"` is not a path; write the path kafka-orm is reachable at, like `crate = \"my_reexport::kafka_orm\"`",
                    lit.value()
                ),
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors(attrs: &[Attribute]) -> Vec<String> {
        let cx = Ctxt::new();
        let _ = parse(&cx, attrs);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn parsed(attrs: &[Attribute]) -> Attrs {
        let cx = Ctxt::new();
        let out = parse(&cx, attrs);
        cx.check().unwrap();
        out
    }

    #[test]
    fn full_attribute_parses() {
        let a = parsed(&[parse_quote! {
            #[topic(
                name = "order-events", key = ["tenant", "id"], outbox(table = "ob"),
                inbox(dedup = ["a", "b"], retention = "1d", table = "ib"), group = "g",
                format = "json", partitions = 6, replication = 3,
                retry(attempts = 5, backoff = "1s", max_backoff = "1m"), retry_topics,
                dlq = "x.dlq", produce_only, crate = "my::kafka_orm"
            )]
        }]);
        assert_eq!(a.name.unwrap().value.value(), "order-events");
        let key: Vec<String> = a
            .key
            .unwrap()
            .value
            .fields
            .iter()
            .map(LitStr::value)
            .collect();
        assert_eq!(key, ["tenant", "id"]);
        assert_eq!(a.outbox.unwrap().value.table.unwrap().value.value(), "ob");
        let inbox = a.inbox.unwrap().value;
        assert_eq!(inbox.dedup.unwrap().value.fields.len(), 2);
        assert_eq!(inbox.retention.unwrap().value.value(), "1d");
        assert_eq!(a.partitions.unwrap().value.base10_digits(), "6");
        assert_eq!(
            a.retry
                .unwrap()
                .value
                .attempts
                .unwrap()
                .value
                .base10_digits(),
            "5"
        );
        assert!(a.retry_topics.is_some());
        assert_eq!(a.dlq.unwrap().value.unwrap().value(), "x.dlq");
        assert!(a.produce_only.is_some() && a.consume_only.is_none());
        assert_eq!(a.krate.unwrap().value.parsed.segments.len(), 2);
    }

    #[test]
    fn bare_flags() {
        let a = parsed(&[parse_quote!(#[topic(outbox, inbox, retry, dlq)])]);
        assert!(a.outbox.unwrap().value.table.is_none());
        assert!(a.inbox.unwrap().value.dedup.is_none());
        assert!(a.retry.unwrap().value.attempts.is_none());
        assert!(a.dlq.unwrap().value.is_none());
        let empty = parsed(&[parse_quote!(#[topic]), parse_quote!(#[topic()])]);
        assert!(empty.name.is_none());
    }

    #[test]
    fn several_attributes_merge_and_keep_order() {
        let a = parsed(&[
            parse_quote!(#[topic(name = "a")]),
            parse_quote!(#[topic(key = "id", produce_only)]),
        ]);
        assert!(a.name.is_some() && a.key.is_some());
        assert_eq!(a.produce_only.unwrap().order, 3);
    }

    #[test]
    fn unknown_keys_are_reported_and_skipped() {
        let errs = errors(&[parse_quote!(#[topic(nmae = "a", bogus(x = 1), key = 5, whatever)])]);
        assert_eq!(
            errs,
            [
                "unknown key `nmae` in #[topic(..)]; did you mean `name`?",
                "unknown key `bogus` in #[topic(..)]; expected one of: `name`, `key`, `outbox`, `inbox`, `group`, `format`, `codec`, `partitions`, `replication`, `retry`, `retry_topics`, `dlq`, `produce_only`, `consume_only`, `crate`",
                "`key` expects a field name or a list of field names, like `key = \"customer_id\"` or `key = [\"tenant\", \"customer_id\"]`",
                "unknown key `whatever` in #[topic(..)]; expected one of: `name`, `key`, `outbox`, `inbox`, `group`, `format`, `codec`, `partitions`, `replication`, `retry`, `retry_topics`, `dlq`, `produce_only`, `consume_only`, `crate`",
            ]
        );
        let nested = errors(&[parse_quote!(#[topic(inbox(dedupe = "a"), retry(attempt = 1))])]);
        assert_eq!(
            nested,
            [
                "unknown key `dedupe` in `inbox(..)`; did you mean `dedup`?",
                "unknown key `attempt` in `retry(..)`; did you mean `attempts`?",
            ]
        );
    }

    #[test]
    fn nested_keys_at_the_top_level_say_where_they_go() {
        let errs = errors(&[
            parse_quote!(#[topic(dedup = "id", backoff = "1s", outbox_table = "t", table = "t")]),
        ]);
        assert_eq!(
            errs,
            [
                "`dedup` belongs inside `inbox(..)`: write `inbox(dedup = \"order_id\")`",
                "`backoff` belongs inside `retry(..)`: write `retry(attempts = 5, backoff = \"100ms\")`",
                "`outbox_table` is written `table` and belongs inside `outbox(..)`: write `outbox(table = \"order_outbox\")`",
                "`table` belongs inside `outbox(..)` or `inbox(..)`, like `outbox(table = \"order_outbox\")`",
            ]
        );
    }

    #[test]
    fn duplicates_across_attributes() {
        let errs = errors(&[
            parse_quote!(#[topic(name = "a")]),
            parse_quote!(#[topic(name = "b", inbox(table = "x", table = "y"))]),
        ]);
        assert_eq!(
            errs,
            [
                "duplicate `name` in #[topic(..)]",
                "duplicate `table` in `inbox(..)`"
            ]
        );
        // An invalid first value still makes the second one a duplicate.
        let errs = errors(&[parse_quote!(#[topic(partitions = "6", partitions = 6)])]);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[1], "duplicate `partitions` in #[topic(..)]");
    }

    #[test]
    fn wrong_value_kinds() {
        let errs = errors(&[parse_quote!(#[topic(
            partitions = "6", name = 5, outbox = true, retry_topics = true, name2, dlq(x),
            codec = "not a type", crate = "1x", group
        )])]);
        assert_eq!(
            errs,
            [
                "`partitions` expects an integer, like `partitions = 6`",
                "`name` expects a string, like `name = \"order-events\"`",
                "`outbox` takes no `= value`; write `outbox` alone or `outbox(table = \"order_outbox\")`",
                "`retry_topics` is a flag and takes no value; write `retry_topics` alone",
                "unknown key `name2` in #[topic(..)]; did you mean `name`?",
                "`dlq` takes no parentheses; write `dlq` alone or `dlq = \"order-events.dlq\"`",
                "`codec = \"not a type\"` is not a type; write the path of a type that implements `kafka_orm::Codec<Self>`, like `codec = \"crate::codecs::MyCodec\"`",
                "`crate = \"1x\"` is not a path; write the path kafka-orm is reachable at, like `crate = \"my_reexport::kafka_orm\"`",
                "`group` expects a string, like `group = \"order-processor\"`",
            ]
        );
    }

    #[test]
    fn name_value_form_is_rejected() {
        let errs = errors(&[parse_quote!(#[topic = "orders"])]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("in parentheses"), "{errs:?}");
    }
}
