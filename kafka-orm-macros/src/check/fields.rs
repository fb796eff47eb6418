//! The fields `key` and `dedup` name: that they exist (with a suggestion when they do
//! not), appear once, and have a type that can be a key. A topic enum's fields are its
//! variants' structs', which the derive does not see: the compiler checks them in the
//! expansion, on each variant.

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{FieldsNamed, Type};

use crate::attr::{FieldList, Setting};
use crate::ctxt::Ctxt;
use crate::model::{FieldRef, FieldType};
use crate::suggest;

/// What a list of fields is used for.
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Role {
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

/// Where the fields a list names are.
#[derive(Copy, Clone)]
pub enum Source<'a> {
    /// A struct's named fields; `None` for a shape without them, whose error already says
    /// what is wrong.
    Struct(Option<&'a FieldsNamed>),
    /// A topic enum's variants' structs: the first one's type (`None` when the variants
    /// have errors of their own).
    Variants(Option<&'a Type>),
}

/// The fields of a `key` or `dedup` list, each once, each of a type that can be a key
/// (as far as its name tells). The list itself is checked whatever the source.
pub fn list<'a>(
    cx: &Ctxt,
    source: Source<'a>,
    list: &Setting<FieldList>,
    role: Role,
) -> Option<Vec<FieldRef<'a>>> {
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
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut refs = Some(Vec::new());
    for lit in &list.value.fields {
        let name = lit.value();
        if seen.contains(&name) {
            cx.error_spanned_by(lit, format!("field `{name}` appears twice in `{key}`"));
            refs = None;
            continue;
        }
        seen.push(name.clone());
        let checked = match source {
            Source::Struct(fields) => fields
                .and_then(|fields| find_field(cx, fields, lit, key))
                .filter(|field| check_field_type(cx, field, role)),
            Source::Variants(first) => variant_field(cx, lit, key, role).and_then(|ident| {
                Some(FieldRef {
                    name: ident.unraw().to_string(),
                    ident,
                    ty: FieldType::OfVariants { first: first? },
                })
            }),
        };
        match (checked, &mut refs) {
            (Some(field), Some(refs)) => refs.push(field),
            _ => refs = None,
        }
    }
    refs
}

/// The named field of the struct `lit` names, matched the way users write it: field
/// `r#type` is `"type"` (or `"r#type"`). An unknown name is an error with a suggestion.
fn find_field<'a>(
    cx: &Ctxt,
    fields: &'a FieldsNamed,
    lit: &syn::LitStr,
    key: &str,
) -> Option<FieldRef<'a>> {
    let typed = lit.value();
    let name = typed.strip_prefix("r#").unwrap_or(&typed);
    let found = fields.named.iter().find_map(|f| {
        let ident = f.ident.as_ref()?;
        (ident.unraw() == name).then(|| FieldRef {
            name: ident.unraw().to_string(),
            ident: ident.clone(),
            ty: FieldType::Declared(&f.ty),
        })
    });
    if found.is_none() {
        let names: Vec<String> = fields
            .named
            .iter()
            .filter_map(|f| f.ident.as_ref().map(|i| i.unraw().to_string()))
            .collect();
        let hint = if names.is_empty() {
            "; the struct has no fields".to_owned()
        } else {
            suggest::hint(&typed, names.iter().map(String::as_str))
        };
        cx.error_spanned_by(lit, format!("unknown field `{typed}` in `{key}`{hint}"));
    }
    found
}

/// The field of every variant's struct that `lit` names, as an identifier spanned on the
/// string (`"type"` is `r#type`); an error when it cannot be a field name at all, or is
/// the inbox's own type column.
fn variant_field(cx: &Ctxt, lit: &syn::LitStr, key: &str, role: Role) -> Option<syn::Ident> {
    let typed = lit.value();
    let name = typed.strip_prefix("r#").unwrap_or(&typed);
    let ident = syn::parse_str::<syn::Ident>(name)
        .ok()
        .or_else(|| syn::parse_str::<syn::Ident>(&format!("r#{name}")).ok());
    let Some(mut ident) = ident else {
        cx.error_spanned_by(
            lit,
            format!("`{typed}` in `{key}` is not a field name: name a field that every variant's struct has"),
        );
        return None;
    };
    if role == Role::Dedup && name == crate::model::MESSAGE_TYPE_FIELD {
        cx.error_spanned_by(
            lit,
            format!("`{name}` cannot be a dedup field of a topic enum: its inbox dedups on the message type first, in a column `dedup_{name}` of its own; name another field"),
        );
        return None;
    }
    ident.set_span(lit.span());
    Some(ident)
}

/// Syntactic early errors for types that can never be a key; every other type is checked
/// by the `KeyPart` / `DedupPart` bounds in the generated code, pointing at the field.
/// `false` after the error.
fn check_field_type(cx: &Ctxt, field: &FieldRef, role: Role) -> bool {
    let Some(declared) = field.ty.declared() else {
        return true;
    };
    let Some(reason) = bad_key_type(declared, role) else {
        return true;
    };
    let ty = type_text(declared);
    cx.error_spanned_by(
        declared,
        format!("`{ty}` cannot be {}: {reason}", role.what()),
    );
    false
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
pub fn type_text(ty: &Type) -> String {
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
