//! `#[topic(..)]` → raw settings. This pass checks syntax and the kind of each value
//! (string, integer, list, flag), flags unknown and duplicate keys, and nothing else:
//! what the values mean is checked in `check/`.
//!
//! `mod.rs` holds the settings and the top-level keys, `nested.rs` the keys inside
//! `outbox(..)`, `inbox(..)` and `retry(..)`, `variant.rs` the one key of a topic enum's
//! variants, `value.rs` the value kinds.

mod nested;
mod value;
mod variant;

use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitInt, LitStr, Meta, Path};

use crate::ctxt::Ctxt;
use crate::suggest;
use crate::symbol::*;
use value::{path_text, skip_value};

pub use nested::{Inbox, Outbox, Retry};
pub use value::{FieldList, Parsed};
pub use variant::parse_variant;

/// One setting as written: the key (for error spans), its position among all keys of
/// all `#[topic]` attributes (to blame the later of two contradicting keys), and its value.
pub struct Setting<T> {
    pub path: Path,
    pub order: usize,
    pub value: T,
}

/// Everything `#[topic(..)]` says; `None` where a key is absent (or its value was invalid,
/// which has already been reported).
#[derive(Default)]
pub struct Attrs {
    pub name: Option<Setting<LitStr>>,
    pub type_name: Option<Setting<LitStr>>,
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

/// The keys of one list (`#[topic(..)]` or a nested one): which are known, which were
/// seen, and how the list is named in messages.
pub(crate) struct Keys<'a> {
    pub known: &'static [Symbol],
    pub seen: &'a mut Vec<Symbol>,
    pub within: &'static str,
    /// Whether this is `#[topic(..)]`, where nested keys written outside their list get
    /// a message saying where they go.
    pub top: bool,
}

impl Keys<'_> {
    /// The known key `meta` names, claimed; `None` when it is unknown (reported, with a
    /// suggestion) or a duplicate (reported on the second occurrence). Either way the value
    /// of a key that is not returned has been skipped.
    pub fn claim(&mut self, cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Symbol>> {
        let Some(&key) = self.known.iter().find(|k| meta.path == **k) else {
            match misplaced_nested_key(&meta.path).filter(|_| self.top) {
                Some(msg) => cx.error_spanned_by(&meta.path, msg),
                None => self.unknown(cx, &meta.path),
            }
            skip_value(meta.input)?;
            return Ok(None);
        };
        if self.seen.contains(&key) {
            cx.error_spanned_by(&meta.path, format!("duplicate `{key}` in {}", self.within));
            skip_value(meta.input)?;
            return Ok(None);
        }
        self.seen.push(key);
        Ok(Some(key))
    }

    /// Records an unknown key, with the closest known one or the list of them.
    fn unknown(&self, cx: &Ctxt, path: &Path) {
        let typed = path_text(path);
        let hint = suggest::hint(&typed, self.known.iter().map(|s| s.0));
        cx.error_spanned_by(
            path,
            format!("unknown key `{typed}` in {}{hint}", self.within),
        );
    }
}

/// A known key being parsed: where it was written (which its setting records) and how
/// to read its value.
#[derive(Clone, Copy)]
pub(crate) struct At<'a, 'b> {
    pub cx: &'a Ctxt,
    pub meta: &'a ParseNestedMeta<'b>,
    pub key: Symbol,
    pub order: usize,
}

impl At<'_, '_> {
    /// The value `parsed` as the setting of the key (`None` after an error).
    pub fn set<T>(self, parsed: Option<T>) -> Option<Setting<T>> {
        parsed.map(|value| Setting {
            path: self.meta.path.clone(),
            order: self.order,
            value,
        })
    }

    /// `key = "..."`; the error shows `example`.
    pub fn string(self, example: &str) -> syn::Result<Option<LitStr>> {
        value::literal(self.cx, self.meta, self.key, example)
    }

    /// `key = 6`.
    pub fn integer(self, example: &str) -> syn::Result<Option<LitInt>> {
        value::literal(self.cx, self.meta, self.key, example)
    }

    /// `key = "field"` or `key = ["a", "b"]`.
    pub fn fields(self, example: &str) -> syn::Result<Option<FieldList>> {
        value::field_list(self.cx, self.meta, self.key, example)
    }

    /// A key without a value.
    pub fn flag(self) -> syn::Result<Option<()>> {
        value::flag(self.cx, self.meta, self.key)
    }
}

fn parse_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    out: &mut Attrs,
    seen: &mut Vec<Symbol>,
    order: usize,
) -> syn::Result<()> {
    const KEY_EXAMPLE: &str = "key = \"customer_id\"` or `key = [\"tenant\", \"customer_id\"]";
    let mut keys = Keys {
        known: TOPIC_KEYS,
        seen,
        within: "#[topic(..)]",
        top: true,
    };
    let Some(key) = keys.claim(cx, meta)? else {
        return Ok(());
    };
    let at = At {
        cx,
        meta,
        key,
        order,
    };
    match key {
        NAME => out.name = at.set(at.string("name = \"order-events\"")?),
        TYPE_NAME => out.type_name = at.set(at.string("type_name = \"order.created\"")?),
        KEY => out.key = at.set(at.fields(KEY_EXAMPLE)?),
        OUTBOX => out.outbox = at.set(nested::outbox(cx, meta)?),
        INBOX => out.inbox = at.set(nested::inbox(cx, meta)?),
        GROUP => out.group = at.set(at.string("group = \"order-processor\"")?),
        FORMAT => out.format = at.set(at.string("format = \"json\"")?),
        CODEC => out.codec = at.set(value::codec(cx, meta)?),
        PARTITIONS => out.partitions = at.set(at.integer("partitions = 6")?),
        REPLICATION => out.replication = at.set(at.integer("replication = 3")?),
        RETRY => out.retry = at.set(nested::retry(cx, meta)?),
        RETRY_TOPICS => out.retry_topics = at.set(at.flag()?),
        DLQ => out.dlq = at.set(value::dlq(cx, meta)?),
        PRODUCE_ONLY => out.produce_only = at.set(at.flag()?),
        CONSUME_ONLY => out.consume_only = at.set(at.flag()?),
        CRATE => out.krate = at.set(value::crate_path(cx, meta)?),
        _ => unreachable!("every key of TOPIC_KEYS is handled"),
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

#[cfg(test)]
mod tests;
