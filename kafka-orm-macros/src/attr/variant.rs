//! `#[topic(type_name = "..")]` on a variant of a topic enum, its one key. The topic's
//! settings go on the enum; a key of theirs written on a variant says so.

use syn::{Attribute, LitStr, Meta};

use super::{At, Keys, Setting};
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// The `type_name` of one variant, if its `#[topic(..)]` attributes give one.
pub fn parse_variant(cx: &Ctxt, attrs: &[Attribute]) -> Option<Setting<LitStr>> {
    let mut out = None;
    let mut seen = Vec::new();
    for attr in attrs.iter().filter(|a| a.path() == TOPIC) {
        if !matches!(attr.meta, Meta::List(_)) {
            cx.error_spanned_by(
                attr,
                "on a variant, `#[topic]` takes its one setting in parentheses: `#[topic(type_name = \"order.created\")]`",
            );
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if let Some(key) = TOPIC_KEYS
                .iter()
                .find(|k| meta.path == **k && **k != TYPE_NAME)
            {
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "`{key}` belongs on the enum, not on a variant: it is a setting of the whole topic; on a variant `#[topic(..)]` takes only `type_name`"
                    ),
                );
                return super::value::skip_value(meta.input);
            }
            let mut keys = Keys {
                known: VARIANT_KEYS,
                seen: &mut seen,
                within: "`#[topic(..)]` on a variant",
                top: false,
            };
            if let Some(key) = keys.claim(cx, &meta)? {
                let at = At {
                    cx,
                    meta: &meta,
                    key,
                    order: 0,
                };
                out = at.set(at.string("type_name = \"order.created\"")?);
            }
            Ok(())
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    out
}
