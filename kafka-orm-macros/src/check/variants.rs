//! A topic's message types and their stable names: a struct's one (`type_name = ".."` or
//! its name), or a topic enum's variants, each holding one message struct under a name
//! no other variant has.

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{DataEnum, DeriveInput, Fields, LitStr, Type};

use crate::attr::{self, Attrs, Setting};
use crate::ctxt::Ctxt;
use crate::model::{Messages, Variant};
use crate::naming;

/// The message types of `input`, checked; `None` after an error (or for a shape that is
/// neither a struct nor an enum, reported by `shape.rs`).
pub fn messages<'a>(cx: &Ctxt, input: &'a DeriveInput, attrs: &Attrs) -> Option<Messages<'a>> {
    match &input.data {
        syn::Data::Struct(_) => {
            let name = match &attrs.type_name {
                Some(given) => checked_name(cx, given)?,
                None => input.ident.unraw().to_string(),
            };
            Some(Messages::Struct { name })
        }
        syn::Data::Enum(data) => {
            if let Some(given) = &attrs.type_name {
                cx.error_spanned_by(
                    &given.path,
                    "`type_name` names one message type, and a topic enum has one per variant: put it on the variant, `#[topic(type_name = \"order.created\")] Created(OrderCreated)`",
                );
            }
            variants(cx, input, data).filter(|_| attrs.type_name.is_none())
        }
        syn::Data::Union(_) => None,
    }
}

/// The variants of a topic enum, each `Name(Struct)`, their names distinct.
fn variants<'a>(cx: &Ctxt, input: &'a DeriveInput, data: &'a DataEnum) -> Option<Messages<'a>> {
    if data.variants.is_empty() {
        cx.error_spanned_by(
            &input.ident,
            format!(
                "a topic enum needs at least one variant, each holding one message struct: `enum {} {{ Created(OrderCreated) }}`",
                input.ident
            ),
        );
        return None;
    }
    // Every variant that checked, for the distinctness of the later ones.
    let mut seen: Vec<Variant> = Vec::new();
    let mut ok = true;
    for variant in &data.variants {
        let given = attr::parse_variant(cx, &variant.attrs);
        let checked = held_type(cx, variant).and_then(|ty| {
            let name = match &given {
                Some(given) => checked_name(cx, given)?,
                None => default_name(cx, variant, ty)?,
            };
            Some(Variant {
                ident: &variant.ident,
                ty,
                name,
            })
        });
        match checked {
            Some(v) if distinct(cx, &seen, &v, &given) => seen.push(v),
            _ => ok = false,
        }
    }
    ok.then_some(Messages::Enum(seen))
}

/// The one struct a variant holds: `Created(OrderCreated)`.
fn held_type<'a>(cx: &Ctxt, variant: &'a syn::Variant) -> Option<&'a Type> {
    let name = &variant.ident;
    let msg = match &variant.fields {
        Fields::Unnamed(f) if f.unnamed.len() == 1 => return f.unnamed.first().map(|f| &f.ty),
        Fields::Unnamed(_) => format!(
            "a variant of a topic enum holds exactly one message struct: write `{name}(OrderCreated)`, with the fields in the struct"
        ),
        Fields::Named(_) => format!(
            "a variant of a topic enum holds one message struct, not fields of its own: move them into a struct, `struct {name} {{ .. }}`, and write `{name}({name})`"
        ),
        Fields::Unit => format!(
            "a variant of a topic enum holds one message struct: write `{name}(OrderCreated)` (a struct without fields is `struct {name} {{}}`)"
        ),
    };
    cx.error_spanned_by(variant, msg);
    None
}

/// The default stable name of a variant: the last segment of its type's path.
fn default_name(cx: &Ctxt, variant: &syn::Variant, ty: &Type) -> Option<String> {
    let segment = match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    };
    match segment {
        Some(s) if s.arguments.is_empty() => Some(s.ident.unraw().to_string()),
        _ => {
            let ty = ty.to_token_stream().to_string().replace(' ', "");
            cx.error_spanned_by(
                &variant.fields,
                format!(
                    "`{ty}` has no plain name to send as its message type: name it, `#[topic(type_name = \"..\")] {}({ty})`",
                    variant.ident
                ),
            );
            None
        }
    }
}

/// A `type_name = ".."` that is a valid stable name.
fn checked_name(cx: &Ctxt, given: &Setting<LitStr>) -> Option<String> {
    let value = given.value.value();
    match naming::check_type_name(&value) {
        Ok(()) => Some(value),
        Err(msg) => {
            cx.error_spanned_by(&given.value, msg);
            None
        }
    }
}

/// Whether `v` differs from every earlier variant in its type and its stable name (an
/// error on `v` otherwise: two variants of one type would make two `From` impls, and two
/// of one name could not be told apart on the wire).
fn distinct(cx: &Ctxt, earlier: &[Variant], v: &Variant, given: &Option<Setting<LitStr>>) -> bool {
    let text = |ty: &Type| ty.to_token_stream().to_string();
    if let Some(first) = earlier.iter().find(|e| text(e.ty) == text(v.ty)) {
        cx.error_spanned_by(
            v.ty,
            format!(
                "`{}` is already the struct of variant `{}`: each message type is one variant",
                text(v.ty).replace(' ', ""),
                first.ident
            ),
        );
        return false;
    }
    if let Some(first) = earlier.iter().find(|e| e.name == v.name) {
        let msg = format!(
            "variants `{}` and `{}` have one message type name, `{}`, so their messages could not be told apart; give one of them another with `#[topic(type_name = \"..\")]`",
            first.ident, v.ident, v.name
        );
        match given {
            Some(given) => cx.error_spanned_by(&given.value, msg),
            None => cx.error_spanned_by(v.ty, msg),
        }
        return false;
    }
    true
}
