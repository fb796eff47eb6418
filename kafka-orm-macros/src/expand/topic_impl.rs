//! `impl Topic` (the spec as one constant expression, the codec, two accessors) and the
//! marker impls.

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use super::{column_type, respan};
use crate::check::Role;
use crate::model::{Direction, FieldRef, Inbox, Retry, RetryDuration, TopicModel};

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
    let retry_assertion = retry_assertion(model, &p);
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
        #retry_assertion
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
        let columns = columns(p, &model.key, Role::Key);
        spec.extend(quote!(.outbox(#p::OutboxSpec::new(#table) #columns)));
    }
    if let Some(inbox) = &model.inbox {
        spec.extend(inbox_spec(inbox, p));
    }
    if let Some(retry) = &model.retry {
        spec.extend(retry_spec(retry, p));
    }
    if model.retry_topics {
        spec.extend(quote!(.retry_topics()));
    }
    if let Some(dlq) = &model.dlq {
        spec.extend(quote!(.dlq(#p::DlqSpec::new(#dlq))));
    }
    spec
}

/// `.inbox(InboxSpec::new(..))`, the retention the runtime's default unless given.
fn inbox_spec(inbox: &Inbox, p: &TokenStream) -> TokenStream {
    let table = &inbox.table;
    let fields = inbox.dedup.iter().map(|f| &f.name);
    let retention = match inbox.retention_secs {
        Some(secs) => Literal::u64_unsuffixed(secs).into_token_stream(),
        None => quote!(#p::defaults::INBOX_RETENTION.as_secs()),
    };
    let columns = columns(p, &inbox.dedup, Role::Dedup);
    quote!(.inbox(#p::InboxSpec::new(#table, &[#(#fields),*], #retention) #columns))
}

/// `.columns(&[..])`: each key or dedup field's column type, checked (and reported) at
/// the field's type; nothing for no fields.
fn columns(p: &TokenStream, fields: &[FieldRef], role: Role) -> TokenStream {
    if fields.is_empty() {
        return TokenStream::new();
    }
    let columns = fields.iter().map(|f| column_type(p, f.ty, role));
    quote!(.columns(&[#(#columns),*]))
}

/// `.retry(RetrySpec::new(..))`, what is left out taken from the runtime's defaults.
fn retry_spec(retry: &Retry, p: &TokenStream) -> TokenStream {
    let attempts = match retry.attempts {
        Some(n) => Literal::u32_unsuffixed(n).into_token_stream(),
        None => quote!(#p::defaults::RETRY_ATTEMPTS),
    };
    let duration = |d: &Option<RetryDuration>, default: TokenStream| match d {
        Some(d) => {
            let ms = Literal::u64_unsuffixed(d.ms);
            quote!(#p::Duration::from_millis(#ms))
        }
        None => quote!(#p::defaults::#default),
    };
    let backoff = duration(&retry.backoff, quote!(RETRY_BACKOFF));
    let max_backoff = duration(&retry.max_backoff, quote!(RETRY_MAX_BACKOFF));
    quote!(.retry(#p::RetrySpec::new(#attempts, #backoff, #max_backoff)))
}

/// A `backoff` without `max_backoff` (or the other way round) against the default of the
/// other, which only the runtime knows: a compile-time assertion, spanned on the string.
/// (`check/policy.rs` compares two given values itself.)
fn retry_assertion(model: &TopicModel, p: &TokenStream) -> TokenStream {
    let Some(retry) = &model.retry else {
        return TokenStream::new();
    };
    let (lit, ms, condition, msg) = match (&retry.backoff, &retry.max_backoff) {
        (Some(b), None) => (
            &b.lit,
            Literal::u64_unsuffixed(b.ms),
            quote!(<= #p::defaults::RETRY_MAX_BACKOFF.as_millis()),
            format!(
                "`backoff` (`{}`) is longer than the default `max_backoff` (`kafka_orm::defaults::RETRY_MAX_BACKOFF`); the backoff starts at `backoff` and doubles up to `max_backoff`: set `max_backoff` too, or a shorter `backoff`",
                b.lit.value()
            ),
        ),
        (None, Some(m)) => (
            &m.lit,
            Literal::u64_unsuffixed(m.ms),
            quote!(>= #p::defaults::RETRY_BACKOFF.as_millis()),
            format!(
                "`max_backoff` (`{}`) is shorter than the default `backoff` (`kafka_orm::defaults::RETRY_BACKOFF`); the backoff starts at `backoff` and doubles up to `max_backoff`: set `backoff` too, or a longer `max_backoff`",
                m.lit.value()
            ),
        ),
        _ => return TokenStream::new(),
    };
    // Spanned on the string throughout, so that the error points at it.
    respan(
        quote!(const _: () = #p::assert!(#ms #condition, #msg);),
        lit.span(),
    )
}

/// `&self.field`, spanned on the field's type so that a missing `KeyPart` / `DedupPart`
/// impl is reported at the field.
fn field_expr(field: &FieldRef) -> (TokenStream, proc_macro2::Span) {
    let span = field.ty.span();
    let ident = field.ident;
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
