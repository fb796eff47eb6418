//! The hooks `#[derive(Topic)]` emits its SeaORM entity modules through (STYLE.md §5):
//! the derive always emits `__private::outbox_entity! { .. }` / `inbox_entity! { .. }`
//! with what differs per topic (module, visibility, table, typed key or dedup columns),
//! and the `entities` feature decides what they expand to: the module, with the fixed
//! columns and SeaORM's derives, or nothing at all.
//!
//! The input is
//! `$vis mod $module for $topic, table "$table" { $(typed columns,)* } $(type $alias = $ty;)*`;
//! each alias (the column type of a field type not known by name) is placed next to the
//! topic type and imported into the module. (The aliases come last: before `$vis`, which
//! may be empty, `type` would be ambiguous to `macro_rules!`.)

/// The outbox entity: the fixed columns of `kafka_orm::outbox`'s table, then the typed
/// `key_<field>` columns.
#[cfg(feature = "entities")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_entity {
    (
        $vis:vis mod $module:ident for $topic:ident, table $table:literal { $($keys:tt)* }
        $(type $alias:ident = $aty:ty;)*
    ) => {
        $crate::__entity! {
            "outbox"; $vis mod $module for $topic, table $table {
                pub message_id: String,
                pub message_key: Option<String>,
                pub bucket: i32,
                pub payload: Vec<u8>,
                pub headers: Vec<u8>,
                pub created_at: i64,
                pub attempts: i32,
                pub next_attempt_at: i64,
                pub last_error: Option<String>,
                $($keys)*
            }
            $(type $alias = $aty;)*
        }
    };
}

/// The inbox entity: the columns of `kafka_orm::inbox`'s table, with the typed
/// `dedup_<field>` columns after `consumer_group`, or `message_id` for a bare `inbox`.
#[cfg(feature = "entities")]
#[doc(hidden)]
#[macro_export]
macro_rules! __inbox_entity {
    (
        $vis:vis mod $module:ident for $topic:ident, table $table:literal {}
    ) => {
        $crate::__inbox_entity! {
            $vis mod $module for $topic, table $table {
                pub message_id: String,
            }
        }
    };
    (
        $vis:vis mod $module:ident for $topic:ident, table $table:literal { $($dedup:tt)+ }
        $(type $alias:ident = $aty:ty;)*
    ) => {
        $crate::__entity! {
            "inbox"; $vis mod $module for $topic, table $table {
                pub consumer_group: String,
                $($dedup)+
                pub topic: String,
                pub kafka_partition: i32,
                pub kafka_offset: i64,
                pub processed_at: i64,
            }
            $(type $alias = $aty;)*
        }
    };
}

/// One entity module: `Model` with `id` and `$columns`, and SeaORM's derives.
#[cfg(feature = "entities")]
#[doc(hidden)]
#[macro_export]
macro_rules! __entity {
    (
        $what:literal; $vis:vis mod $module:ident for $topic:ident, table $table:literal {
            $($columns:tt)*
        }
        $(type $alias:ident = $aty:ty;)*
    ) => {
        $(
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            type $alias = $aty;
        )*
        #[doc = ::core::concat!(
            " SeaORM entity of `", $table, "`, the ", $what, " table of `",
            ::core::stringify!($topic),
            "` (data only: kafka-orm creates the table and writes its rows).",
        )]
        #[allow(missing_docs)]
        $vis mod $module {
            // The standard prelude, by name: derive output in a module resolves plain
            // names like `String` or `Result` as the parent module would (the
            // `proc_macro_derive_resolution_fallback` lint), where the user may have
            // shadowed them.
            #[allow(unused_imports)]
            use $crate::__private::prelude::*;
            use $crate::__private::sea_orm;
            // Names SeaORM's derives use unqualified.
            use sea_orm::entity::prelude::{DerivePrimaryKey, EntityTrait, EnumIter, PrimaryKeyTrait};
            $(use super::$alias;)*
            #[derive(Clone, Debug, PartialEq, Eq, sea_orm::DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i64,
                $($columns)*
            }
            #[derive(Clone, Copy, Debug, sea_orm::EnumIter, sea_orm::DeriveRelation)]
            pub enum Relation {}
            impl sea_orm::ActiveModelBehavior for ActiveModel {}
        }
    };
}

/// Without the `entities` feature: no entity module.
#[cfg(not(feature = "entities"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_entity {
    ($($input:tt)*) => {};
}

/// Without the `entities` feature: no entity module.
#[cfg(not(feature = "entities"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __inbox_entity {
    ($($input:tt)*) => {};
}
