//! The SeaORM entity module of an outbox or inbox table (STYLE.md §4): data only, for
//! users to query the table with SeaORM. The runtime owns the DDL and every statement it
//! runs.
//!
//! The derive emits a call to a `macro_rules!` hook of the facade,
//! `__private::outbox_entity!` or `__private::inbox_entity!`, with what differs per topic:
//! the module's name and visibility, the table and its typed key or dedup columns. The hook
//! adds the fixed columns and the SeaORM boilerplate, or nothing at all when the facade's
//! `entities` feature is off (STYLE.md §5: no `cfg!(feature)` in the macro).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Ident, Path, Type, Visibility};

use super::column_type;
use crate::check::Role;
use crate::model::{FieldRef, FieldType, TopicModel};

/// The entity modules of the topic's outbox and inbox (users name them, so they go
/// outside the const block).
pub fn expand(model: &TopicModel) -> TokenStream {
    let entity = |table, table_span, role, fields| {
        Entity {
            krate: &model.krate,
            vis: model.vis,
            ident: model.ident,
            table,
            table_span,
            role,
            fields,
        }
        .expand()
    };
    let outbox = model
        .outbox
        .as_ref()
        .map(|o| entity(&o.table, o.table_span, Role::Key, &model.key));
    let inbox = model
        .inbox
        .as_ref()
        .map(|i| entity(&i.table, i.table_span, Role::Dedup, &i.dedup));
    quote!(#outbox #inbox)
}

/// One entity module, as a hook call.
pub struct Entity<'a> {
    pub krate: &'a Path,
    pub vis: &'a Visibility,
    /// The topic type, for the module's doc.
    pub ident: &'a Ident,
    pub table: &'a str,
    pub table_span: Span,
    /// Which table, and so which hook and fixed columns.
    pub role: Role,
    /// The typed key or dedup columns, in order; empty for a bare `inbox`, whose hook adds
    /// `message_id`.
    pub fields: &'a [FieldRef<'a>],
}

impl Entity<'_> {
    pub fn expand(self) -> TokenStream {
        let krate = self.krate;
        let p = quote!(#krate::__private);
        let hook = match self.role {
            Role::Key => quote!(#p::outbox_entity),
            Role::Dedup => quote!(#p::inbox_entity),
        };
        let prefix = match self.role {
            Role::Key => "key",
            Role::Dedup => "dedup",
        };
        let (columns, aliases): (Vec<_>, Vec<_>) = self
            .fields
            .iter()
            .map(|field| typed_column(&p, self.table, prefix, field, self.role))
            .unzip();
        let aliases = aliases.into_iter().flatten();
        let vis = self.vis;
        let module = module_ident(self.table, self.table_span);
        let ident = self.ident;
        let table = self.table;
        quote! {
            #hook! {
                #vis mod #module for #ident, table #table {
                    #(#columns,)*
                }
                #(#aliases)*
            }
        }
    }
}

/// The module is named after the table; a table named like a keyword gets `r#`
/// (`check/names.rs` rejects the few that cannot be raw).
fn module_ident(table: &str, span: Span) -> Ident {
    syn::parse_str::<Ident>(table)
        .map(|mut ident| {
            ident.set_span(span);
            ident
        })
        .unwrap_or_else(|_| Ident::new_raw(table, span))
}

/// The `Model` field of a typed key (`key_<field>`) or dedup (`dedup_<field>`) column of
/// `table`, and the type alias it needs when the field's type is not known by name, or is
/// a topic enum's variants' (the hook places it next to the topic type and imports it into
/// the module).
fn typed_column(
    p: &TokenStream,
    table: &str,
    prefix: &str,
    field: &FieldRef,
    role: Role,
) -> (TokenStream, Option<TokenStream>) {
    // Unquoted in the DDL, so PostgreSQL folds the column name to lowercase.
    let column = format!("{prefix}_{}", field.name.to_ascii_lowercase());
    let name = format_ident!("{}", column, span = field.ident.span());
    // SeaORM derives the column name from the field name; where its case conversion
    // would change the name, say it.
    let rename = (column.contains("__") || column.ends_with('_') || !column.is_ascii())
        .then(|| quote!(#[sea_orm(column_name = #column)]));
    let known = match &field.ty {
        FieldType::Declared(ty) => known_type(ty, role),
        FieldType::MessageType => Some(quote!(String)),
        FieldType::OfVariants { .. } => None,
    };
    let (ty, alias) = match known {
        Some(ty) => (ty, None),
        None => {
            let alias = format_ident!("__kafka_orm_{}_{}", table, column);
            let column = column_type(p, field, role);
            let def = quote!(type #alias = #p::ColumnType<{ #column as u8 }>;);
            (quote!(#alias), Some(def))
        }
    };
    (quote!(#rename pub #name: #ty), alias)
}

/// The Rust type of the column of a key or dedup field whose type is known by name: the
/// one its `KeyPart::COLUMN` / `DedupPart::COLUMN` implies. `None` for every other type
/// (an alias, a newtype), whose column type the trait gives at compile time.
fn known_type(ty: &Type, role: Role) -> Option<TokenStream> {
    let path = match ty {
        Type::Paren(inner) => return known_type(&inner.elem, role),
        Type::Group(inner) => return known_type(&inner.elem, role),
        // `KeyPart` is implemented for references; `DedupPart` is not.
        Type::Reference(inner) if role == Role::Key => return known_type(&inner.elem, role),
        Type::Path(path) if path.qself.is_none() => &path.path,
        _ => return None,
    };
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let last = path.segments.last()?;
    let generic = !last.arguments.is_empty();
    let key = role == Role::Key;
    let ty = match names.as_slice() {
        _ if generic => {
            // `Box<str>`.
            let boxed = matches!(
                names.as_slice(),
                ["Box"] | ["std" | "alloc", "boxed", "Box"]
            );
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            let str_arg = args.args.len() == 1
                && matches!(args.args.first(), Some(syn::GenericArgument::Type(Type::Path(p))) if p.qself.is_none() && p.path.is_ident("str"));
            return (boxed && str_arg).then(|| quote!(String));
        }
        ["i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32"] => quote!(i64),
        ["isize"] if key => quote!(i64),
        ["u64" | "u128" | "i128" | "usize" | "str" | "char"] if key => quote!(String),
        ["String"] | ["std" | "alloc", "string", "String"] => quote!(String),
        ["bool"] => quote!(bool),
        ["Uuid"] | ["uuid", "Uuid"] => quote!(sea_orm::prelude::Uuid),
        _ => return None,
    };
    Some(ty)
}
