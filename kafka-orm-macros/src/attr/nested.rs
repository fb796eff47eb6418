//! The keys that are a flag or a nested list: `outbox(..)`, `inbox(..)`, `retry(..)`.

use syn::meta::ParseNestedMeta;
use syn::{LitInt, LitStr};

use super::value::{FieldList, flag_or_list};
use super::{At, Keys, Setting};
use crate::ctxt::Ctxt;
use crate::symbol::*;

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

/// A nested list: its keys, how messages name it, and an example of it.
struct List {
    known: &'static [Symbol],
    within: &'static str,
    example: &'static str,
}

const OUTBOX_LIST: List = List {
    known: OUTBOX_KEYS,
    within: "`outbox(..)`",
    example: "outbox(table = \"order_outbox\")",
};
const INBOX_LIST: List = List {
    known: INBOX_KEYS,
    within: "`inbox(..)`",
    example: "inbox(dedup = \"order_id\")",
};
const RETRY_LIST: List = List {
    known: RETRY_KEYS,
    within: "`retry(..)`",
    example: "retry(attempts = 5, backoff = \"100ms\")",
};

/// Parses `key` or `key(..)` into `T`, calling `set` for each known key of the list
/// (unknown and duplicate keys are reported and skipped). A syntax error inside the
/// parentheses is recorded and the rest of them skipped.
fn flag_or_nested<T: Default>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    list: &List,
    mut set: impl FnMut(&mut T, At) -> syn::Result<()>,
) -> syn::Result<Option<T>> {
    let Some(has_list) = flag_or_list(cx, meta, list.example)? else {
        return Ok(None);
    };
    let mut out = T::default();
    if has_list {
        let mut seen = Vec::new();
        let mut keys = Keys {
            known: list.known,
            seen: &mut seen,
            within: list.within,
            top: false,
        };
        let result = meta.parse_nested_meta(|m| match keys.claim(cx, &m)? {
            Some(key) => set(
                &mut out,
                At {
                    cx,
                    meta: &m,
                    key,
                    order: 0,
                },
            ),
            None => Ok(()),
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    Ok(Some(out))
}

pub fn outbox(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Outbox>> {
    flag_or_nested(cx, meta, &OUTBOX_LIST, |out: &mut Outbox, at| {
        // `table`, the one key.
        out.table = at.set(at.string("table = \"order_outbox\"")?);
        Ok(())
    })
}

pub fn inbox(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Inbox>> {
    const DEDUP_EXAMPLE: &str = "dedup = \"order_id\"` or `dedup = [\"tenant\", \"order_id\"]";
    flag_or_nested(cx, meta, &INBOX_LIST, |out: &mut Inbox, at| {
        match at.key {
            DEDUP => out.dedup = at.set(at.fields(DEDUP_EXAMPLE)?),
            RETENTION => out.retention = at.set(at.string("retention = \"7d\"")?),
            TABLE => out.table = at.set(at.string("table = \"order_inbox\"")?),
            _ => unreachable!("every key of INBOX_KEYS is handled"),
        }
        Ok(())
    })
}

pub fn retry(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Retry>> {
    flag_or_nested(cx, meta, &RETRY_LIST, |out: &mut Retry, at| {
        match at.key {
            ATTEMPTS => out.attempts = at.set(at.integer("attempts = 5")?),
            BACKOFF => out.backoff = at.set(at.string("backoff = \"100ms\"")?),
            MAX_BACKOFF => out.max_backoff = at.set(at.string("max_backoff = \"30s\"")?),
            _ => unreachable!("every key of RETRY_KEYS is handled"),
        }
        Ok(())
    })
}
