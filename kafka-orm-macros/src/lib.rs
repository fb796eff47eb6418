//! Implementation detail of `kafka-orm`: `#[derive(Topic)]`. Use it through
//! `kafka_orm::Topic`, whose documentation is the reference for `#[topic(..)]`.
//!
//! This file is the only one that uses `proc_macro`; everything else works on
//! `proc_macro2`, so it can be unit-tested. The derive runs in three passes, as
//! serde_derive and thiserror do: `attr/` (the raw settings) → `check/` (what they mean,
//! checked and resolved into the `model.rs` types; a model only when there is no error)
//! → `expand/` (code, which never fails). Errors are collected in `ctxt.rs` and emitted
//! together with the stub of `fallback.rs`.

mod attr;
mod check;
mod ctxt;
mod duration;
mod expand;
mod fallback;
mod model;
mod naming;
mod suggest;
mod symbol;

use proc_macro::TokenStream;

/// Derives `kafka_orm::Topic`; see its documentation for `#[topic(..)]`.
#[proc_macro_derive(Topic, attributes(topic))]
pub fn derive_topic(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
