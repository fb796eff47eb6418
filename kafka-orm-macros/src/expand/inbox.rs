//! The inbox table's SeaORM entity: the columns of `inbox::create_table_sql`, with one
//! typed `dedup_<field>` column per dedup field (or `message_id` for a bare `inbox`).

use proc_macro2::TokenStream;
use quote::quote;

use super::entity::{Entity, typed_columns};
use crate::check::Role;
use crate::model::TopicModel;

pub fn expand(model: &TopicModel) -> TokenStream {
    let Some(inbox) = &model.inbox else {
        return TokenStream::new();
    };
    let (mut dedup, aliases) = typed_columns(
        &model.krate,
        &inbox.table,
        "dedup",
        &inbox.dedup,
        Role::Dedup,
    );
    if inbox.dedup.is_empty() {
        dedup.push(quote!(pub message_id: String));
    }
    Entity {
        krate: &model.krate,
        vis: model.vis,
        ident: model.ident,
        what: "inbox",
        table: &inbox.table,
        table_span: inbox.table_span,
        fields: fields(dedup),
        aliases,
    }
    .expand()
}

/// The columns after `id`, with `dedup` (the dedup key's columns) in their place.
pub fn fields(dedup: Vec<TokenStream>) -> Vec<TokenStream> {
    let mut fields = vec![quote!(pub consumer_group: String)];
    fields.extend(dedup);
    fields.extend([
        quote!(pub topic: String),
        quote!(pub kafka_partition: i32),
        quote!(pub kafka_offset: i64),
        quote!(pub processed_at: i64),
    ]);
    fields
}
