//! The type's shape: a struct with named fields, or an enum of message structs
//! (`variants.rs`), with no generic parameters and no `#[topic]` on fields.

use syn::{Data, DeriveInput, Fields, FieldsNamed};

use crate::ctxt::Ctxt;
use crate::symbol::TOPIC;

/// No generic parameters; `false` after the error.
pub fn concrete(cx: &Ctxt, input: &DeriveInput) -> bool {
    let generics = &input.generics;
    let msg = if generics.type_params().next().is_some() || generics.const_params().next().is_some()
    {
        "a topic type must be concrete: generics are not supported because the registry needs one type per topic"
    } else if generics.lifetimes().next().is_some() {
        "a topic type must own its data: lifetime parameters are not supported because consumers decode each message into an owned value; use owned fields like `String` instead of `&str`"
    } else {
        return true;
    };
    cx.error_spanned_by(generics, msg);
    false
}

/// A struct's named fields, or an error saying why the shape is not supported; `None`
/// without an error for an enum, whose variants `variants.rs` checks.
pub fn fields<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Option<&'a FieldsNamed> {
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
        Data::Enum(_) => {}
        Data::Union(data) => cx.error_spanned_by(
            data.union_token,
            "`#[derive(Topic)]` needs a struct with named fields or an enum of message structs, not a union: `key` and `dedup` refer to fields by name, and a union cannot be encoded safely",
        ),
    }
    None
}

/// `#[topic]` on a field is a mistake, not something to ignore; `false` after an error.
/// (On a topic enum's variant it takes `type_name`: `variants.rs`.)
pub fn field_attrs(cx: &Ctxt, input: &DeriveInput) -> bool {
    let ok = std::cell::Cell::new(true);
    let misplaced = |attrs: &[syn::Attribute], what: &str| {
        for attr in attrs.iter().filter(|a| a.path() == TOPIC) {
            cx.error_spanned_by(
                attr,
                format!("`#[topic]` belongs on the struct or enum, not on {what}"),
            );
            ok.set(false);
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
                fields(&variant.fields);
            }
        }
        Data::Union(data) => {
            for field in &data.fields.named {
                misplaced(&field.attrs, "a field");
            }
        }
    }
    ok.get()
}
