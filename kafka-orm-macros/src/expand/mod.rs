//! Code generation. Runs only on a checked [`TopicModel`] and never fails.

pub(crate) mod entity;
mod register;
mod topic_impl;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::check::Role;
use crate::ctxt::Ctxt;
use crate::model::TopicModel;
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
pub(crate) fn wrap_in_const(code: TokenStream) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications, clippy::absolute_paths)]
        const _: () = {
            #code
        };
    }
}

/// `<ty as KeyPart>::COLUMN` or `<ty as DedupPart>::COLUMN`, spanned on the type, so that a
/// type without the trait is reported at the field.
pub(crate) fn column_type(p: &TokenStream, ty: &syn::Type, role: Role) -> TokenStream {
    let part = match role {
        Role::Key => quote!(KeyPart),
        Role::Dedup => quote!(DedupPart),
    };
    quote_spanned!(ty.span()=> <#ty as #p::#part>::COLUMN)
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
