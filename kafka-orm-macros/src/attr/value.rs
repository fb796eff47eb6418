//! The kinds of value a key takes: a string, an integer, a field list, a flag, a flag or
//! a nested list, and the strings that hold a type or a path. Each returns `None` after
//! recording an error, having skipped the rest of the value.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{LitInt, LitStr, Path, Token, token};

use crate::ctxt::Ctxt;
use crate::symbol::*;

/// `key = "a"` or `key = ["a", "b"]` (also `dedup = ..`).
pub struct FieldList {
    /// The whole value, for errors about the list itself.
    pub tokens: TokenStream,
    pub fields: Vec<LitStr>,
}

/// A string holding a path or type, and what it parsed to (tokens spanned on the string).
pub struct Parsed<T> {
    pub lit: LitStr,
    pub parsed: T,
}

pub fn path_text(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// Skips `= value` or `(..)` after a key, up to the next `,`.
pub fn skip_value(input: ParseStream) -> syn::Result<()> {
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

/// A literal value: `key = "..."` or `key = 6`.
pub trait Literal: syn::parse::Parse {
    /// What the key expects, for the error.
    const WHAT: &'static str;
}

impl Literal for LitStr {
    const WHAT: &'static str = "a string";
}

impl Literal for LitInt {
    const WHAT: &'static str = "an integer";
}

/// `key = <literal>`, of the kind the caller's slot holds.
pub fn literal<T: Literal>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: Symbol,
    example: &str,
) -> syn::Result<Option<T>> {
    let expected = || format!("`{key}` expects {}, like `{example}`", T::WHAT);
    let Some(tokens) = value_tokens(cx, meta, &expected)? else {
        return Ok(None);
    };
    match syn::parse2::<T>(tokens.clone()) {
        Ok(lit) => Ok(Some(lit)),
        Err(_) => {
            cx.error_spanned_by(tokens, expected());
            Ok(None)
        }
    }
}

/// `key = "field"` or `key = ["a", "b"]`.
pub fn field_list(
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
pub fn flag(cx: &Ctxt, meta: &ParseNestedMeta, key: Symbol) -> syn::Result<Option<()>> {
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
pub fn flag_or_list(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<bool>> {
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

/// `dlq` or `dlq = "name"`.
pub fn dlq(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Option<LitStr>>> {
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
    Ok(literal::<LitStr>(cx, meta, DLQ, "dlq = \"order-events.dlq\"")?.map(Some))
}

/// A string that must parse as `T` (a type or a path); `what` says what it is not.
fn parsed<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: Symbol,
    example: &str,
    parse: impl FnOnce(&LitStr) -> syn::Result<T>,
    not: &str,
) -> syn::Result<Option<Parsed<T>>> {
    let Some(lit) = literal::<LitStr>(cx, meta, key, example)? else {
        return Ok(None);
    };
    match parse(&lit) {
        Ok(parsed) => Ok(Some(Parsed { lit, parsed })),
        Err(_) => {
            let value = lit.value();
            cx.error_spanned_by(
                &lit,
                format!("`{key} = \"{value}\"` is not {not}, like `{example}`"),
            );
            Ok(None)
        }
    }
}

/// `codec = "path::MyCodec"`.
pub fn codec(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Parsed<syn::Type>>> {
    parsed(
        cx,
        meta,
        CODEC,
        "codec = \"crate::codecs::MyCodec\"",
        LitStr::parse::<syn::Type>,
        "a type; write the path of a type that implements `kafka_orm::Codec<Self>`",
    )
}

/// `crate = "my_reexport::kafka_orm"`.
pub fn crate_path(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Parsed<Path>>> {
    parsed(
        cx,
        meta,
        CRATE,
        "crate = \"my_reexport::kafka_orm\"",
        |lit| lit.parse_with(Path::parse_mod_style),
        "a path; write the path kafka-orm is reachable at",
    )
}
