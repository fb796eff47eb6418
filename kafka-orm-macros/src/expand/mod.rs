//! Code generation. Runs only on a checked [`TopicModel`] and never fails.

pub(crate) mod entity;
pub(crate) mod inbox;
pub(crate) mod outbox;
mod register;
mod topic_impl;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote;
use syn::DeriveInput;

use crate::ctxt::Ctxt;
use crate::model::TopicModel;
use crate::{attr, check, fallback};

/// `#[derive(Topic)]`: parse → check → model → expand; on errors, the errors and a
/// stub impl so that code using the type does not fail too.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = attr::parse(&cx, &input.attrs);
    check::check(&cx, input, &attrs);
    match cx.check() {
        Ok(()) => {
            let model = TopicModel::new(input, &attrs);
            let topic = topic_impl::expand(&model);
            let register = register::expand(&model);
            let consts = wrap_in_const(quote! {
                #topic
                #register
            });
            // Users name the entities, so they go outside the const block.
            let outbox = outbox::expand(&model);
            let inbox = inbox::expand(&model);
            quote! {
                #consts
                #outbox
                #inbox
            }
        }
        Err(errors) => {
            let errors = errors.to_compile_error();
            let stub = fallback::expand(input, &attrs);
            quote! {
                #errors
                #stub
            }
        }
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
