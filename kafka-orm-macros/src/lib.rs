//! Implementation detail of `kafka-orm`: `#[derive(Topic)]`.
use proc_macro::TokenStream;

/// See `kafka_orm::Topic`.
#[proc_macro_derive(Topic, attributes(topic))]
pub fn derive_topic(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
