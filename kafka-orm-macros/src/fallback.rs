//! The stub emitted next to errors (thiserror's `fallback.rs`, clap's `dummies.rs`):
//! `impl Topic` and every marker, with `unreachable!()` bodies, so that code using the
//! type (`orm.topic::<T>()`, `publish`, `handle`) type-checks and the only errors shown
//! are the ones about the attribute. The outbox and inbox entities are emitted too, with
//! their fixed columns only, so that queries through them do not fail either.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::attr::{Attrs, Setting};
use crate::check;
use crate::expand::entity::Entity;
use crate::expand::{inbox, outbox, respan, wrap_in_const};
use crate::model;
use crate::naming;

pub fn expand(input: &DeriveInput, attrs: &Attrs) -> TokenStream {
    // A generic type cannot implement `Topic` at all (it is `'static` and concrete), and
    // serde cannot encode a union; a stub would only add errors.
    if !input.generics.params.is_empty() || matches!(input.data, syn::Data::Union(_)) {
        return TokenStream::new();
    }
    let krate = model::krate(attrs);
    let p = quote!(#krate::__private);
    let ident = &input.ident;
    let type_name = format!("::{}", ident.unraw());
    // The user's codec when it parsed, so that a topic without serde derives does not
    // also get a "missing `Serialize`" error.
    let codec = match &attrs.codec {
        Some(codec) => {
            let ty = &codec.value.parsed;
            quote!(#ty)
        }
        None => respan(quote!(#p::Json), ident.span()),
    };
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
    });
    quote! {
        #stub
        #entities
    }
}

/// The entity modules of the outbox and inbox whose table names are usable.
fn entities(input: &DeriveInput, attrs: &Attrs) -> TokenStream {
    let krate = model::krate(attrs);
    let table = |t: &Option<Setting<syn::LitStr>>, flag: &syn::Path, suffix| {
        let (name, span) = match t {
            Some(t) => (t.value.value(), t.value.span()),
            None => (check::default_table(input, suffix), flag.span()),
        };
        naming::check_table_name(&name)
            .and_then(|()| naming::check_module_name(&name))
            .ok()
            .map(|()| (name, span))
    };
    let entity = |what, (table, table_span): (String, proc_macro2::Span), fields| {
        Entity {
            krate: &krate,
            vis: &input.vis,
            ident: &input.ident,
            what,
            table: &table,
            table_span,
            fields,
            aliases: Vec::new(),
        }
        .expand()
    };
    let outbox_table = attrs
        .outbox
        .as_ref()
        .and_then(|o| table(&o.value.table, &o.path, "_outbox"));
    let inbox_table = attrs
        .inbox
        .as_ref()
        .and_then(|i| table(&i.value.table, &i.path, "_inbox"))
        .filter(|(name, _)| outbox_table.as_ref().is_none_or(|(o, _)| o != name));
    let mut out = TokenStream::new();
    if let Some(table) = outbox_table {
        out.extend(entity("outbox", table, outbox::fixed_fields()));
    }
    if let Some(table) = inbox_table {
        // A bare `inbox` dedups on the message id; typed dedup columns are left out.
        let bare = attrs
            .inbox
            .as_ref()
            .is_some_and(|i| i.value.dedup.is_none());
        let dedup = if bare {
            vec![quote!(pub message_id: String)]
        } else {
            Vec::new()
        };
        out.extend(entity("inbox", table, inbox::fields(dedup)));
    }
    out
}
