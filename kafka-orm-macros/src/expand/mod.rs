//! Code generation. Runs only on a checked [`TopicModel`] and never fails.

mod accessors;
pub(crate) mod entity;
mod register;
mod topic_impl;
mod variants;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::check::Role;
use crate::ctxt::Ctxt;
use crate::model::{FieldRef, FieldType, TopicModel};
use crate::{attr, check, fallback};

/// `#[derive(Topic)]`: parse → check (which builds the model) → expand; on errors, the
/// errors and a stub impl so that code using the type does not fail too.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = attr::parse(&cx, &input.attrs);
    let model = check::check(&cx, input, &attrs);
    let errors = match (cx.check(), model) {
        (Ok(()), Some(model)) => return expand(&model),
        (Err(errors), _) => errors,
        (Ok(()), None) => syn::Error::new(
            Span::call_site(),
            "kafka-orm bug: `#[derive(Topic)]` found no error but built no model; please report it",
        ),
    };
    let errors = errors.to_compile_error();
    let stub = fallback::expand(input, &attrs);
    quote! {
        #errors
        #stub
    }
}

/// The code of a checked topic.
fn expand(model: &TopicModel) -> TokenStream {
    let topic = topic_impl::expand(model);
    let register = register::expand(model);
    let consts = wrap_in_const(quote! {
        #topic
        #register
    });
    let entities = entity::expand(model);
    quote! {
        #consts
        #entities
    }
}

/// Keeps the impls and the registration out of the user's namespace (serde's
/// `dummy.rs::wrap_in_const`).
/// `impl Member<topic> for ty` (its `TYPE_NAME` and `peel`; `wrap` builds `topic::ident`)
/// and `impl From<ty> for topic`: a topic enum's variant `ident` holding a `ty`.
pub(crate) fn member_impls(
    p: &TokenStream,
    topic: &syn::Ident,
    ident: &syn::Ident,
    ty: &syn::Type,
    type_name: &TokenStream,
    peel: &TokenStream,
) -> TokenStream {
    quote! {
        #[automatically_derived]
        impl #p::Member<#topic> for #ty {
            const TYPE_NAME: &'static str = #type_name;
            #peel
            fn wrap(self) -> #topic {
                #topic::#ident(self)
            }
        }
        #[automatically_derived]
        impl #p::From<#ty> for #topic {
            fn from(value: #ty) -> Self {
                #topic::#ident(value)
            }
        }
    }
}

pub(crate) fn wrap_in_const(code: TokenStream) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications, clippy::absolute_paths)]
        const _: () = {
            #code
        };
    }
}

/// The column type of a key or dedup field, a `ColumnKind` constant expression:
/// `<ty as KeyPart>::COLUMN` (or `DedupPart`) spanned on the field's type, so that a type
/// without the trait is reported at the field; for a topic enum, the first variant's
/// field's, through a closure that names it (spanned on that variant's type).
pub(crate) fn column_type(p: &TokenStream, field: &FieldRef, role: Role) -> TokenStream {
    let (part, of) = match role {
        Role::Key => (quote!(KeyPart), quote!(key_column)),
        Role::Dedup => (quote!(DedupPart), quote!(dedup_column)),
    };
    match &field.ty {
        FieldType::Declared(ty) => quote_spanned!(ty.span()=> <#ty as #p::#part>::COLUMN),
        FieldType::OfVariants { first } => {
            let mut ident = field.ident.clone();
            ident.set_span(type_span(first));
            let of = respan(quote!(#p::message_type::#of), type_span(first));
            quote_spanned!(type_span(first)=> #of(|__kafka_orm_v: &#first| &__kafka_orm_v.#ident))
        }
        FieldType::MessageType => quote!(#p::key::ColumnKind::Text),
    }
}

/// Where errors about a variant's struct point: the struct's name (the last segment of
/// its path; stable Rust cannot join a path's spans), or the whole type.
pub(crate) fn type_span(ty: &syn::Type) -> Span {
    match ty {
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| ty.span(), |s| s.ident.span()),
        _ => ty.span(),
    }
}

/// `tokens` with every token (inside groups too) at `span`, so that a compiler error
/// about them points at user code.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut new =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tt = TokenTree::Group(new);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

#[cfg(test)]
mod tests;
