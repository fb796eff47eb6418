//! Names: the topic, the outbox and inbox tables (which also name the entity modules),
//! the dead-letter topic and the consumer group, explicit or defaulted from the type name.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, LitStr, Path};

use crate::attr::{Attrs, Setting};
use crate::ctxt::Ctxt;
use crate::model::Outbox;
use crate::naming;

/// The two tables a topic may have.
#[derive(Copy, Clone)]
pub enum Table {
    Outbox,
    Inbox,
}

impl Table {
    /// The default table name: snake_case of the type name and a suffix.
    pub fn default_name(self, input: &DeriveInput) -> String {
        let suffix = match self {
            Table::Outbox => "_outbox",
            Table::Inbox => "_inbox",
        };
        naming::snake_case(&input.ident.unraw().to_string()) + suffix
    }

    fn example(self) -> &'static str {
        match self {
            Table::Outbox => "outbox(table = \"..\")",
            Table::Inbox => "inbox(table = \"..\")",
        }
    }
}

/// The topic name, explicit or the kebab-case of the type name, when it is valid.
pub fn topic(cx: &Ctxt, input: &DeriveInput, attrs: &Attrs) -> Option<String> {
    let Some(name) = &attrs.name else {
        let value = naming::kebab_case(&input.ident.unraw().to_string());
        return match naming::check_topic_name(&value) {
            Ok(()) => Some(value),
            Err(msg) => {
                cx.error_spanned_by(
                    &input.ident,
                    format!(
                        "the default topic name `{value}` (from the type name) is invalid: {msg}; set `#[topic(name = \"..\")]`"
                    ),
                );
                None
            }
        };
    };
    let value = name.value.value();
    match naming::check_topic_name(&value) {
        Ok(()) => Some(value),
        Err(msg) => {
            cx.error_spanned_by(&name.value, msg);
            None
        }
    }
}

/// The name of a table and the span its entity module gets: the `table = ".."` string, or
/// the `outbox` / `inbox` flag for the default name.
pub fn table(
    cx: &Ctxt,
    input: &DeriveInput,
    flag: &Path,
    table: &Option<Setting<LitStr>>,
    which: Table,
) -> Option<(String, Span)> {
    let Some(table) = table else {
        let name = which.default_name(input);
        return match naming::check_table_name(&name) {
            Ok(()) => Some((name, flag.span())),
            Err(msg) => {
                let example = which.example();
                cx.error_spanned_by(
                    flag,
                    format!("the default table name does not work: {msg}; name the table with `{example}`"),
                );
                None
            }
        };
    };
    let name = table.value.value();
    match naming::check_table_name(&name).and_then(|()| naming::check_module_name(&name)) {
        Ok(()) => Some((name, table.value.span())),
        Err(msg) => {
            cx.error_spanned_by(&table.value, msg);
            None
        }
    }
}

/// The table of `which`, with its span, when it is usable: for the stub emitted next to
/// errors, which checks nothing.
pub fn usable_table(
    input: &DeriveInput,
    flag: &Path,
    table: &Option<Setting<LitStr>>,
    which: Table,
) -> Option<(String, Span)> {
    let (name, span) = match table {
        Some(t) => (t.value.value(), t.value.span()),
        None => (which.default_name(input), flag.span()),
    };
    naming::check_table_name(&name)
        .and_then(|()| naming::check_module_name(&name))
        .ok()
        .map(|()| (name, span))
}

/// One table cannot be both the outbox and the inbox (nor the module of both entities).
/// `false` after the error.
pub fn distinct_tables(
    cx: &Ctxt,
    attrs: &Attrs,
    outbox: Option<&Outbox>,
    inbox: Option<&(String, Span)>,
) -> bool {
    let (Some(outbox), Some((inbox, _))) = (outbox, inbox) else {
        return true;
    };
    if outbox.table != *inbox {
        return true;
    }
    // At least one of them is explicit: the defaults differ.
    let inbox_lit = attrs.inbox.as_ref().and_then(|i| i.value.table.as_ref());
    let outbox_lit = attrs.outbox.as_ref().and_then(|o| o.value.table.as_ref());
    if let Some(Setting { value: lit, .. }) = inbox_lit.or(outbox_lit) {
        cx.error_spanned_by(
            lit,
            format!(
                "the outbox and the inbox cannot share the table `{inbox}`; name them differently"
            ),
        );
    }
    false
}

/// The dead-letter topic: `dlq = ".."`, or `<topic>.dlq` for a bare `dlq`.
pub fn dlq(cx: &Ctxt, attrs: &Attrs, topic: Option<&str>) -> Option<Option<String>> {
    let Some(dlq) = &attrs.dlq else {
        return Some(None);
    };
    let Some(lit) = &dlq.value else {
        // Without a valid topic name the error about it says enough.
        let name = format!("{}.dlq", topic?);
        if let Err(msg) = naming::check_topic_name(&name) {
            cx.error_spanned_by(
                &dlq.path,
                format!("the default dead-letter topic `{name}` does not work: {msg}; name it with `dlq = \"..\"`"),
            );
            return None;
        }
        return Some(Some(name));
    };
    let name = lit.value();
    if let Err(msg) = naming::check_topic_name(&name) {
        cx.error_spanned_by(lit, msg);
        return None;
    }
    if topic == Some(name.as_str()) {
        cx.error_spanned_by(
            lit,
            format!(
                "the dead-letter topic must differ from the topic itself; write `dlq` alone to use `{name}.dlq`"
            ),
        );
        return None;
    }
    Some(Some(name))
}

/// The consumer group, which cannot be empty or padded.
pub fn group(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let group = lit.value();
    let msg = if group.is_empty() {
        "the consumer group cannot be empty; remove `group` to use the context's default group"
            .to_owned()
    } else if group.trim() != group {
        format!("the consumer group `{group}` has leading or trailing whitespace; remove it")
    } else {
        return Some(group);
    };
    cx.error_spanned_by(lit, msg);
    None
}
