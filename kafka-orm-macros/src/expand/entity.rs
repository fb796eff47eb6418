//! The SeaORM entity module of an outbox or inbox table (STYLE.md §4): data only, for
//! users to query the table with SeaORM. The runtime owns the DDL and every statement it
//! runs; the columns here mirror `outbox::create_table_sql` / `inbox::create_table_sql`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Path, Type, Visibility};

use crate::check::Role;
use crate::model::FieldRef;

/// Where and how to emit one entity module.
pub struct Entity<'a> {
    pub krate: &'a Path,
    pub vis: &'a Visibility,
    /// The topic type, for the module's doc.
    pub ident: &'a Ident,
    /// `"outbox"` or `"inbox"`, for the module's doc.
    pub what: &'static str,
    pub table: &'a str,
    pub table_span: Span,
    /// The `Model` fields after `id`, in the table's column order.
    pub fields: Vec<TokenStream>,
    /// Type aliases the fields use (typed columns of types not known by name): each
    /// definition, placed next to the topic type, and its name, imported into the module.
    pub aliases: Vec<(TokenStream, Ident)>,
}

impl Entity<'_> {
    pub fn expand(self) -> TokenStream {
        let krate = self.krate;
        let vis = self.vis;
        let table = self.table;
        let module = module_ident(table, self.table_span);
        let doc = format!(
            " SeaORM entity of `{table}`, the {} table of `{}` (data only: kafka-orm creates the table and writes its rows).",
            self.what, self.ident
        );
        // What the module needs from the type's module is resolved there, next to the
        // type, and imported by name: a glob import of the parent would let the user's
        // names (e.g. a `type Result<T> = ..` alias) shadow the ones SeaORM's derives use.
        let relative_krate = krate.leading_colon.is_none()
            && krate.segments.first().is_none_or(|s| s.ident != "crate");
        let (krate_outside, krate_inside) = if relative_krate {
            let alias = format_ident!("__kafka_orm_{}_crate", table);
            (
                quote! {
                    #[doc(hidden)]
                    #[allow(unused_imports, non_camel_case_types)]
                    use #krate as #alias;
                },
                quote!(super::#alias),
            )
        } else {
            (quote!(), quote!(#krate))
        };
        let fields = self.fields;
        let (aliases, alias_names): (Vec<_>, Vec<_>) = self.aliases.into_iter().unzip();
        quote! {
            #krate_outside
            #(#aliases)*
            #[doc = #doc]
            #[allow(missing_docs)]
            #vis mod #module {
                // The standard prelude, by name: derive output in a module resolves plain
                // names like `String` or `Result` as the parent module would (the
                // `proc_macro_derive_resolution_fallback` lint), where the user may have
                // shadowed them.
                #[allow(unused_imports)]
                use #krate_inside::__private::prelude::*;
                use #krate_inside::__private::sea_orm;
                // Names SeaORM's derives use unqualified.
                use sea_orm::entity::prelude::{DerivePrimaryKey, EntityTrait, EnumIter, PrimaryKeyTrait};
                #(use super::#alias_names;)*
                #[derive(Clone, Debug, PartialEq, Eq, sea_orm::DeriveEntityModel)]
                #[sea_orm(table_name = #table)]
                pub struct Model {
                    #[sea_orm(primary_key)]
                    pub id: i64,
                    #(#fields,)*
                }
                #[derive(Clone, Copy, Debug, sea_orm::EnumIter, sea_orm::DeriveRelation)]
                pub enum Relation {}
                impl sea_orm::ActiveModelBehavior for ActiveModel {}
            }
        }
    }
}

/// The module is named after the table; a table named like a keyword gets `r#`
/// (`check.rs` rejects the few that cannot be raw).
fn module_ident(table: &str, span: Span) -> Ident {
    syn::parse_str::<Ident>(table)
        .map(|mut ident| {
            ident.set_span(span);
            ident
        })
        .unwrap_or_else(|_| Ident::new_raw(table, span))
}

/// The `Model` fields of the typed columns of `fields` in `table`, and the aliases they need.
pub fn typed_columns(
    krate: &Path,
    table: &str,
    prefix: &str,
    fields: &[FieldRef],
    role: Role,
) -> (Vec<TokenStream>, Vec<(TokenStream, Ident)>) {
    let mut columns = Vec::with_capacity(fields.len());
    let mut aliases = Vec::new();
    for field in fields {
        let (column, alias) = typed_column(krate, table, prefix, field, role);
        columns.push(column);
        aliases.extend(alias);
    }
    (columns, aliases)
}

/// The `Model` field of a typed key (`key_<field>`) or dedup (`dedup_<field>`) column of
/// `table`, and the type alias (definition and name) it needs when the field's type is not
/// known by name.
fn typed_column(
    krate: &Path,
    table: &str,
    prefix: &str,
    field: &FieldRef,
    role: Role,
) -> (TokenStream, Option<(TokenStream, Ident)>) {
    // Unquoted in the DDL, so PostgreSQL folds the column name to lowercase.
    let column = format!("{prefix}_{}", field.name.to_ascii_lowercase());
    let name = format_ident!("{}", column, span = field.ident().span());
    // SeaORM derives the column name from the field name; where its case conversion
    // would change the name, say it.
    let rename = (column.contains("__") || column.ends_with('_') || !column.is_ascii())
        .then(|| quote!(#[sea_orm(column_name = #column)]));
    let (ty, alias) = match known_type(&field.field.ty, role) {
        Some(ty) => (ty, None),
        None => {
            let ty = &field.field.ty;
            let alias = format_ident!("__kafka_orm_{}_{}", table, column);
            let p = quote!(#krate::__private);
            let column = match role {
                Role::Key => quote_spanned!(ty.span()=> <#ty as #p::KeyPart>::COLUMN),
                Role::Dedup => quote_spanned!(ty.span()=> <#ty as #p::DedupPart>::COLUMN),
            };
            let def = quote! {
                #[doc(hidden)]
                #[allow(non_camel_case_types)]
                type #alias = #p::ColumnType<{ #column as u8 }>;
            };
            (quote!(#alias), Some((def, alias)))
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
