//! The bodies of `key()`, `dedup_key()` and `key_values()` for one message struct: the
//! topic's own fields (`&self.customer_id`), or, in a topic enum's `match self` arms, the
//! fields of the struct a variant holds (`&__kafka_orm_v.order_id`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{respan, type_span};
use crate::model::{FieldRef, FieldType, TopicModel, Variant};

/// Whose fields an accessor reads.
pub enum Receiver<'a> {
    /// `self`, a struct: errors point at each field's type.
    Struct,
    /// The struct a variant holds, bound as `__kafka_orm_v`: errors (a missing field, a
    /// type without `KeyPart`) point at the variant's type.
    Variant(&'a Variant<'a>),
}

impl Receiver<'_> {
    /// `&self.field` or `&__kafka_orm_v.field`, and the span errors about it get.
    fn field(&self, field: &FieldRef) -> (TokenStream, Span) {
        match self {
            Receiver::Struct => {
                let span = field
                    .ty
                    .declared()
                    .map_or(field.ident.span(), Spanned::span);
                let ident = &field.ident;
                (quote_spanned!(span=> &self.#ident), span)
            }
            Receiver::Variant(variant) => {
                let span = type_span(variant.ty);
                let mut ident = field.ident.clone();
                ident.set_span(span);
                (quote_spanned!(span=> &__kafka_orm_v.#ident), span)
            }
        }
    }
}

/// The body of `key()`.
pub fn key(model: &TopicModel, p: &TokenStream, recv: &Receiver) -> TokenStream {
    match model.key.as_slice() {
        [] => quote!(#p::None),
        [one] => {
            let (expr, span) = recv.field(one);
            let single = respan(quote!(#p::key::single), span);
            quote!(#p::Some(#single(#expr)))
        }
        many => {
            let pushes = many.iter().map(|f| {
                let (expr, span) = recv.field(f);
                quote_spanned!(span=> .push(#expr))
            });
            quote!(#p::Some(#p::key::Composite::new() #(#pushes)* .finish()))
        }
    }
}

/// The body of `key_values()` (outbox topics with a key): the typed key columns' values.
pub fn key_values(model: &TopicModel, p: &TokenStream, recv: &Receiver) -> TokenStream {
    let values = model.key.iter().map(|f| {
        let (expr, span) = recv.field(f);
        let key_value = respan(quote!(#p::KeyPart::key_value), span);
        quote!(#key_value(#expr))
    });
    quote!(#p::Vec::from([#(#values),*]))
}

/// The body of `dedup_key()`; a topic enum's starts with the variant's message type.
pub fn dedup(model: &TopicModel, p: &TokenStream, recv: &Receiver) -> TokenStream {
    let fields = model.inbox.as_ref().map_or(&[][..], |i| &i.dedup[..]);
    if fields.is_empty() {
        return quote!(#p::Vec::new());
    }
    let values = fields.iter().map(|f| match (&f.ty, recv) {
        (FieldType::MessageType, Receiver::Variant(v)) => {
            let name = &v.name;
            quote!(#p::message_type::dedup_value(#name))
        }
        _ => {
            let (expr, span) = recv.field(f);
            let dedup_value = respan(quote!(#p::DedupPart::dedup_value), span);
            quote!(#dedup_value(#expr))
        }
    });
    quote!(#p::Vec::from([#(#values),*]))
}
