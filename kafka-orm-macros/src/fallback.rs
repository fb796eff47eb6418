//! The stub emitted next to errors (thiserror's `fallback.rs`, clap's `dummies.rs`):
//! `impl Topic` and every marker, with `unreachable!()` bodies (and for a topic enum each
//! variant's `Member` and `From`), so that code using the
//! type (`orm.topic::<T>()`, `publish`, `handle`) type-checks and the only errors shown
//! are the ones about the attribute. The outbox and inbox entities are emitted too, with
//! their fixed columns only (a bare `inbox`'s), so that queries through them do not fail
//! either.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::DeriveInput;
use syn::ext::IdentExt;

use crate::attr::Attrs;
use crate::check::{self, Role, Table, usable_table};
use crate::expand::entity::Entity;
use crate::expand::{member_impls, respan, wrap_in_const};

pub fn expand(input: &DeriveInput, attrs: &Attrs) -> TokenStream {
    // A generic type cannot implement `Topic` at all (it is `'static` and concrete), and
    // serde cannot encode a union; a stub would only add errors.
    if !input.generics.params.is_empty() || matches!(input.data, syn::Data::Union(_)) {
        return TokenStream::new();
    }
    let krate = check::krate(attrs);
    let p = quote!(#krate::__private);
    let ident = &input.ident;
    let type_name = format!("::{}", ident.unraw());
    // The user's codec when it parsed, so that a topic without serde derives does not
    // also get a "missing `Serialize`" error.
    let codec = match (&attrs.codec, &input.data) {
        (_, syn::Data::Enum(_)) => respan(quote!(#p::Variants), ident.span()),
        (Some(codec), _) => {
            let ty = &codec.value.parsed;
            quote!(#ty)
        }
        (None, _) => respan(quote!(#p::Json), ident.span()),
    };
    let members = members(input, &p);
    let entities = entities(input, attrs);
    let stub = wrap_in_const(quote! {
        #[automatically_derived]
        impl #p::Topic for #ident {
            const SPEC: &'static #p::TopicSpec =
                &#p::TopicSpec::new(#p::concat!(#p::module_path!(), #type_name), "");
            type Codec = #codec;
            fn key(&self) -> #p::Option<#p::KeyBytes> {
                ::core::unreachable!()
            }
            fn dedup_key(&self) -> #p::Vec<#p::DedupValue> {
                ::core::unreachable!()
            }
        }
        #[automatically_derived]
        impl #p::Producible for #ident {}
        #[automatically_derived]
        impl #p::Consumable for #ident {}
        #[automatically_derived]
        impl #p::OutboxTopic for #ident {}
        #[automatically_derived]
        impl #p::InboxTopic for #ident {}
        #members
    });
    quote! {
        #stub
        #entities
    }
}

/// For a topic enum, `Member` and `From` of each variant that holds one struct, so that
/// `.on::<Struct>(..)` and `.into()` do not fail too.
fn members(input: &DeriveInput, p: &TokenStream) -> TokenStream {
    let syn::Data::Enum(data) = &input.data else {
        return TokenStream::new();
    };
    let topic = &input.ident;
    let mut seen = Vec::new();
    let impls = data.variants.iter().filter_map(|v| {
        let syn::Fields::Unnamed(fields) = &v.fields else {
            return None;
        };
        let [field] = fields.unnamed.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        // One impl per struct: a second variant of it is an error of its own.
        let text = quote!(#field).to_string();
        if seen.contains(&text) {
            return None;
        }
        seen.push(text);
        let (ident, ty) = (&v.ident, &field.ty);
        let peel = quote! {
            fn peel(_: &#topic) -> #p::Option<&Self> {
                ::core::unreachable!()
            }
        };
        Some(member_impls(p, topic, ident, ty, &quote!(""), &peel))
    });
    quote!(#(#impls)*)
}

/// The entity modules of the outbox and inbox whose table names are usable, without
/// typed columns.
fn entities(input: &DeriveInput, attrs: &Attrs) -> TokenStream {
    let krate = check::krate(attrs);
    let entity = |(table, table_span): (String, Span), role| {
        Entity {
            krate: &krate,
            vis: &input.vis,
            ident: &input.ident,
            table: &table,
            table_span,
            role,
            fields: &[],
        }
        .expand()
    };
    let outbox = attrs
        .outbox
        .as_ref()
        .and_then(|o| usable_table(input, &o.path, &o.value.table, Table::Outbox));
    let inbox = attrs
        .inbox
        .as_ref()
        .and_then(|i| usable_table(input, &i.path, &i.value.table, Table::Inbox))
        .filter(|(name, _)| outbox.as_ref().is_none_or(|(o, _)| o != name));
    let outbox = outbox.map(|table| entity(table, Role::Key));
    let inbox = inbox.map(|table| entity(table, Role::Dedup));
    quote!(#outbox #inbox)
}
