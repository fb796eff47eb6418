//! `impl Topic` (the spec as one constant expression, the codec, two accessors) and the
//! marker impls.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::respan;
use crate::model::{Direction, FieldRef, TopicModel};

pub fn expand(model: &TopicModel) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let ident = model.ident;
    let spec = spec(model, &p);
    let codec = match &model.codec {
        // Spanned on the string, so "not a codec" errors point at it.
        Some(codec) => {
            let ty = codec.ty;
            quote!(#ty)
        }
        // Spanned on the type name, so a missing `Serialize` points at the type.
        None => respan(quote!(#p::Json), ident.span()),
    };
    let key = key(model, &p);
    let dedup = dedup(model, &p);
    let markers = markers(model, &p);
    let key_values = key_values(model, &p);
    quote! {
        #[automatically_derived]
        impl #p::Topic for #ident {
            const SPEC: &'static #p::TopicSpec = &#spec;
            type Codec = #codec;
            fn key(&self) -> #p::Option<#p::KeyBytes> {
                #key
            }
            fn dedup_key(&self) -> #p::Vec<#p::DedupValue> {
                #dedup
            }
            #key_values
        }
        #markers
    }
}

/// `TopicSpec::new(..)` and one const builder call per setting that differs from the default.
fn spec(model: &TopicModel, p: &TokenStream) -> TokenStream {
    let type_name = format!("::{}", model.type_name);
    let name = &model.name;
    let mut spec = quote! {
        #p::TopicSpec::new(#p::concat!(#p::module_path!(), #type_name), #name)
    };
    if !model.key.is_empty() {
        let fields = model.key.iter().map(|f| &f.name);
        spec.extend(quote!(.key_fields(&[#(#fields),*])));
    }
    if let Some(codec) = &model.codec {
        let text = &codec.text;
        spec.extend(quote!(.format(#text)));
    }
    match model.direction {
        Direction::Both => {}
        Direction::ProduceOnly => spec.extend(quote!(.direction(#p::Direction::ProduceOnly))),
        Direction::ConsumeOnly => spec.extend(quote!(.direction(#p::Direction::ConsumeOnly))),
    }
    if let Some(group) = &model.group {
        spec.extend(quote!(.group(#group)));
    }
    if let Some(n) = model.partitions {
        let n = Literal::i32_unsuffixed(n);
        spec.extend(quote!(.partitions(#n)));
    }
    if let Some(n) = model.replication {
        let n = Literal::i32_unsuffixed(n);
        spec.extend(quote!(.replication(#n)));
    }
    if let Some(outbox) = &model.outbox {
        let table = &outbox.table;
        let mut outbox_spec = quote!(#p::OutboxSpec::new(#table));
        if !model.key.is_empty() {
            // Each key field's column type, checked (and reported) at the field's type.
            let columns = model.key.iter().map(|f| {
                let ty = &f.field.ty;
                quote_spanned!(ty.span()=> <#ty as #p::KeyPart>::COLUMN)
            });
            outbox_spec.extend(quote!(.columns(&[#(#columns),*])));
        }
        spec.extend(quote!(.outbox(#outbox_spec)));
    }
    if let Some(inbox) = &model.inbox {
        let table = &inbox.table;
        let fields = inbox.dedup.iter().map(|f| &f.name);
        let retention = Literal::u64_unsuffixed(inbox.retention_secs);
        let mut inbox_spec = quote!(#p::InboxSpec::new(#table, &[#(#fields),*], #retention));
        if !inbox.dedup.is_empty() {
            // Each dedup field's column type, checked (and reported) at the field's type.
            let columns = inbox.dedup.iter().map(|f| {
                let ty = &f.field.ty;
                quote_spanned!(ty.span()=> <#ty as #p::DedupPart>::COLUMN)
            });
            inbox_spec.extend(quote!(.columns(&[#(#columns),*])));
        }
        spec.extend(quote!(.inbox(#inbox_spec)));
    }
    if let Some(retry) = &model.retry {
        let attempts = Literal::u32_unsuffixed(retry.attempts);
        let backoff = Literal::u64_unsuffixed(retry.backoff_ms);
        let max_backoff = Literal::u64_unsuffixed(retry.max_backoff_ms);
        spec.extend(quote!(.retry(#p::RetrySpec::new(#attempts, #backoff, #max_backoff))));
    }
    if model.retry_topics {
        spec.extend(quote!(.retry_topics()));
    }
    if let Some(dlq) = &model.dlq {
        spec.extend(quote!(.dlq(#p::DlqSpec::new(#dlq))));
    }
    spec
}

/// `&self.field`, spanned on the field's type so that a missing `KeyPart` / `DedupPart`
/// impl is reported at the field.
fn field_expr(field: &FieldRef) -> (TokenStream, proc_macro2::Span) {
    let span = field.field.ty.span();
    let ident = field.ident();
    (quote_spanned!(span=> &self.#ident), span)
}

fn key(model: &TopicModel, p: &TokenStream) -> TokenStream {
    match model.key.as_slice() {
        [] => quote!(#p::None),
        [one] => {
            let (expr, span) = field_expr(one);
            let single = respan(quote!(#p::key::single), span);
            quote!(#p::Some(#single(#expr)))
        }
        many => {
            let pushes = many.iter().map(|f| {
                let (expr, span) = field_expr(f);
                quote_spanned!(span=> .push(#expr))
            });
            quote!(#p::Some(#p::key::Composite::new() #(#pushes)* .finish()))
        }
    }
}

/// `key_values()` for an outbox topic with a key: the typed key columns' values.
fn key_values(model: &TopicModel, p: &TokenStream) -> TokenStream {
    if model.outbox.is_none() || model.key.is_empty() {
        return TokenStream::new();
    }
    let values = model.key.iter().map(|f| {
        let (expr, span) = field_expr(f);
        let key_value = respan(quote!(#p::KeyPart::key_value), span);
        quote!(#key_value(#expr))
    });
    quote! {
        fn key_values(&self) -> #p::Vec<#p::sea_orm::Value> {
            #p::Vec::from([#(#values),*])
        }
    }
}

fn dedup(model: &TopicModel, p: &TokenStream) -> TokenStream {
    let fields = model.inbox.as_ref().map_or(&[][..], |i| &i.dedup[..]);
    if fields.is_empty() {
        return quote!(#p::Vec::new());
    }
    let values = fields.iter().map(|f| {
        let (expr, span) = field_expr(f);
        let dedup_value = respan(quote!(#p::DedupPart::dedup_value), span);
        quote!(#dedup_value(#expr))
    });
    quote!(#p::Vec::from([#(#values),*]))
}

fn markers(model: &TopicModel, p: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let mut markers = Vec::new();
    if model.direction != Direction::ConsumeOnly {
        markers.push(quote!(Producible));
    }
    if model.direction != Direction::ProduceOnly {
        markers.push(quote!(Consumable));
    }
    if model.outbox.is_some() {
        markers.push(quote!(OutboxTopic));
    }
    if model.inbox.is_some() {
        markers.push(quote!(InboxTopic));
    }
    quote! {
        #(
            #[automatically_derived]
            impl #p::#markers for #ident {}
        )*
    }
}
