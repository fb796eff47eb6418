//! The stub emitted next to errors (thiserror's `fallback.rs`, clap's `dummies.rs`):
//! `impl Topic` and every marker, with `unreachable!()` bodies, so that code using the
//! type (`orm.topic::<T>()`, `publish`, `handle`) type-checks and the only errors shown
//! are the ones about the attribute.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;
use syn::ext::IdentExt;

use crate::attr::Attrs;
use crate::expand::{respan, wrap_in_const};
use crate::model;

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
    wrap_in_const(quote! {
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
    })
}
