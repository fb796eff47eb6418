//! The outbox table's SeaORM entity: the fixed columns of `outbox::create_table_sql`,
//! then one typed `key_<field>` column per key field.

use proc_macro2::TokenStream;
use quote::quote;

use super::entity::{Entity, typed_columns};
use crate::check::Role;
use crate::model::TopicModel;

pub fn expand(model: &TopicModel) -> TokenStream {
    let Some(outbox) = &model.outbox else {
        return TokenStream::new();
    };
    let (keys, aliases) = typed_columns(&model.krate, &outbox.table, "key", &model.key, Role::Key);
    let mut fields = fixed_fields();
    fields.extend(keys);
    Entity {
        krate: &model.krate,
        vis: model.vis,
        ident: model.ident,
        what: "outbox",
        table: &outbox.table,
        table_span: outbox.table_span,
        fields,
        aliases,
    }
    .expand()
}

/// Every column after `id` that every outbox table has.
pub fn fixed_fields() -> Vec<TokenStream> {
    vec![
        quote!(pub message_id: String),
        quote!(pub message_key: Option<String>),
        quote!(pub bucket: i32),
        quote!(pub payload: Vec<u8>),
        quote!(pub headers: Vec<u8>),
        quote!(pub created_at: i64),
        quote!(pub attempts: i32),
        quote!(pub next_attempt_at: i64),
        quote!(pub last_error: Option<String>),
    ]
}
