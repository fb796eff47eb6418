//! What a topic enum adds: `key()`, `dedup_key()` and `key_values()` as a `match self`
//! over its variants, each variant's message type, its payload encoded and decoded with
//! the codec of the struct it holds, a `Member` and a `From` impl per variant, and
//! assertions that the variants' key and dedup fields agree on their column types.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::accessors::{self, Receiver};
use super::{column_type, member_impls, respan, topic_impl, type_span};
use crate::check::Role;
use crate::model::{FieldRef, FieldType, TopicModel, Variant};

/// The methods of `impl Topic` for a topic enum.
pub fn methods(model: &TopicModel, p: &TokenStream, variants: &[Variant]) -> TokenStream {
    let arms = |body: &dyn Fn(&Receiver) -> TokenStream| {
        let arms = variants.iter().map(|v| {
            let ident = v.ident;
            let body = body(&Receiver::Variant(v));
            quote!(Self::#ident(__kafka_orm_v) => #body,)
        });
        quote!(match self { #(#arms)* })
    };
    let key = match model.key.is_empty() {
        true => quote!(#p::None),
        false => arms(&|r| accessors::key(model, p, r)),
    };
    let dedup = match model.inbox.as_ref().is_none_or(|i| i.dedup.is_empty()) {
        true => quote!(#p::Vec::new()),
        false => arms(&|r| accessors::dedup(model, p, r)),
    };
    let key_values = (model.outbox.is_some() && !model.key.is_empty())
        .then(|| arms(&|r| accessors::key_values(model, p, r)));
    let key_methods =
        topic_impl::key_methods(p, &key, &dedup, &topic_impl::values_method(p, key_values));
    let codec = codec_of(model, p);
    let idents = variants.iter().map(|v| v.ident);
    let names = variants.iter().map(|v| &v.name);
    // `variant_codec::<C, M>()` requires `C: Codec<M>`: spanned on the variant's type, a
    // missing bound is reported there, once for encoding and decoding.
    let variant_codec = |v: &Variant| {
        let (ty, codec) = (v.ty, codec(v));
        let path = respan(quote!(#p::message_type::variant_codec), type_span(ty));
        quote_spanned!(type_span(ty)=> #path::<#codec, #ty>())
    };
    let encode = variants.iter().map(|v| {
        let (ident, codec) = (v.ident, variant_codec(v));
        quote!(Self::#ident(__kafka_orm_v) => #codec.encode(__kafka_orm_v, out),)
    });
    let decode = variants.iter().map(|v| {
        let (ident, name, codec) = (v.ident, &v.name, variant_codec(v));
        quote!(#p::Some(#name) => #codec.decode(payload, Self::#ident),)
    });
    quote! {
        #key_methods
        fn message_type(&self) -> &'static str {
            match self { #(Self::#idents(_) => #names,)* }
        }
        fn encode_payload(&self, out: &mut #p::Vec<u8>) -> #p::Result<(), #p::CodecError> {
            match self { #(#encode)* }
        }
        fn decode_payload(
            message_type: #p::Option<&str>,
            payload: &[u8],
        ) -> #p::Result<Self, #p::DecodeError> {
            match message_type {
                #(#decode)*
                _ => #p::Result::Err(#p::DecodeError::UnknownType),
            }
        }
    }
}

/// The codec of each variant's struct: the enum's `codec = ".."`, or JSON spanned on the
/// variant's type (so that a missing `Serialize` is reported there).
fn codec_of<'a>(
    model: &'a TopicModel,
    p: &'a TokenStream,
) -> impl Fn(&Variant) -> TokenStream + 'a {
    move |v| match &model.codec {
        Some(codec) => {
            let ty = codec.ty;
            quote!(#ty)
        }
        None => respan(quote!(#p::Json), type_span(v.ty)),
    }
}

/// Per variant: `impl Member<Enum> for Struct` and `impl From<Struct> for Enum`; then the
/// column-type assertions.
pub fn members(model: &TopicModel, p: &TokenStream, variants: &[Variant]) -> TokenStream {
    let topic = model.ident;
    let impls = variants.iter().map(|v| {
        let (ident, ty, name) = (v.ident, v.ty, &v.name);
        let peel = quote! {
            fn peel(event: &#topic) -> #p::Option<&Self> {
                #[allow(unreachable_patterns)]
                match event {
                    #topic::#ident(__kafka_orm_v) => #p::Some(__kafka_orm_v),
                    _ => #p::None,
                }
            }
        };
        member_impls(p, topic, ident, ty, &quote!(#name), &peel)
    });
    let agreement = agreement(model, p, variants);
    quote! {
        #(#impls)*
        #agreement
    }
}

/// For each typed column (the outbox's key fields, the inbox's dedup fields), an
/// assertion that every variant's field has the first variant's column type, spanned on
/// the variant that differs.
fn agreement(model: &TopicModel, p: &TokenStream, variants: &[Variant]) -> TokenStream {
    let Some((first, rest)) = variants.split_first() else {
        return TokenStream::new();
    };
    let mut columns: Vec<(&FieldRef, Role, &str)> = Vec::new();
    if let Some(outbox) = &model.outbox {
        columns.extend(
            model
                .key
                .iter()
                .map(|f| (f, Role::Key, outbox.table.as_str())),
        );
    }
    if let Some(inbox) = &model.inbox {
        columns.extend(
            inbox
                .dedup
                .iter()
                .map(|f| (f, Role::Dedup, inbox.table.as_str())),
        );
    }
    let mut out = TokenStream::new();
    for (field, role, table) in columns {
        if !matches!(field.ty, FieldType::OfVariants { .. }) {
            continue;
        }
        let expected = column_type(p, field, role);
        for v in rest {
            let this = FieldRef {
                name: field.name.clone(),
                ident: field.ident.clone(),
                ty: FieldType::OfVariants { first: v.ty },
            };
            let actual = column_type(p, &this, role);
            let msg = format!(
                "the field `{}` of `{}` (variant `{}`) has another column type than the one of `{}` (variant `{}`): `{table}` stores it in one column for all variants; give the fields types with one column type (see `kafka_orm::ColumnKind`)",
                field.name,
                type_text(v.ty),
                v.ident,
                type_text(first.ty),
                first.ident,
            );
            let assert = respan(quote!(#p::assert), type_span(v.ty));
            out.extend(quote_spanned! {type_span(v.ty)=>
                const _: () = #assert!(#p::message_type::same_column(#expected, #actual), #msg);
            });
        }
    }
    out
}

fn type_text(ty: &syn::Type) -> String {
    crate::check::type_text(ty)
}
