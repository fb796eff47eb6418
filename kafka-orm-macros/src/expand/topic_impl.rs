//! `impl Topic` (the spec as one constant expression, the codec, the accessors of
//! `accessors.rs`, and for a topic enum the methods of `variants.rs`) and the marker impls.

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote};

use super::accessors::{self, Receiver};
use super::{column_type, respan, variants};
use crate::check::Role;
use crate::model::{Direction, FieldRef, Inbox, Messages, Retry, RetryDuration, TopicModel};

pub fn expand(model: &TopicModel) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let ident = model.ident;
    let spec = spec(model, &p);
    let (codec, methods, members) = match &model.messages {
        Messages::Struct { .. } => (codec(model, &p), struct_methods(model, &p), quote!()),
        Messages::Enum(variants) => (
            respan(quote!(#p::Variants), ident.span()),
            variants::methods(model, &p, variants),
            variants::members(model, &p, variants),
        ),
    };
    let markers = markers(model, &p);
    let retry_assertion = retry_assertion(model, &p);
    quote! {
        #[automatically_derived]
        impl #p::Topic for #ident {
            const SPEC: &'static #p::TopicSpec = &#spec;
            type Codec = #codec;
            #methods
        }
        #members
        #markers
        #retry_assertion
    }
}

/// The codec of a struct's payload: the user's, or JSON.
pub(super) fn codec(model: &TopicModel, p: &TokenStream) -> TokenStream {
    match &model.codec {
        // Spanned on the string, so "not a codec" errors point at it.
        Some(codec) => {
            let ty = codec.ty;
            quote!(#ty)
        }
        // Spanned on the type name, so a missing `Serialize` points at the type.
        None => respan(quote!(#p::Json), model.ident.span()),
    }
}

/// `key()`, `dedup_key()` and, for an outbox topic with a key, `key_values()` of a struct.
fn struct_methods(model: &TopicModel, p: &TokenStream) -> TokenStream {
    let key = accessors::key(model, p, &Receiver::Struct);
    let dedup = accessors::dedup(model, p, &Receiver::Struct);
    let key_values = (model.outbox.is_some() && !model.key.is_empty())
        .then(|| accessors::key_values(model, p, &Receiver::Struct));
    key_methods(p, &key, &dedup, &values_method(p, key_values))
}

/// `key()` and `dedup_key()` with these bodies, then `key_values` (empty or the method).
pub(super) fn key_methods(
    p: &TokenStream,
    key: &TokenStream,
    dedup: &TokenStream,
    key_values: &TokenStream,
) -> TokenStream {
    quote! {
        fn key(&self) -> #p::Option<#p::KeyBytes> {
            #key
        }
        fn dedup_key(&self) -> #p::Vec<#p::DedupValue> {
            #dedup
        }
        #key_values
    }
}

/// `key_values()` with this body, or nothing.
pub(super) fn values_method(p: &TokenStream, values: Option<TokenStream>) -> TokenStream {
    values
        .map(|values| {
            quote! {
                fn key_values(&self) -> #p::Vec<#p::sea_orm::Value> {
                    #values
                }
            }
        })
        .unwrap_or_default()
}

/// `TopicSpec::new(..)` and one const builder call per setting that differs from the default.
fn spec(model: &TopicModel, p: &TokenStream) -> TokenStream {
    let type_name = format!("::{}", model.type_name);
    let name = &model.name;
    let names: Vec<&str> = match &model.messages {
        Messages::Struct { name } => vec![name],
        Messages::Enum(variants) => variants.iter().map(|v| v.name.as_str()).collect(),
    };
    let mut spec = quote! {
        #p::TopicSpec::new(#p::concat!(#p::module_path!(), #type_name), #name)
            .message_types(&[#(#names),*])
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
    let columns = fields.iter().map(|f| column_type(p, f, role));
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
