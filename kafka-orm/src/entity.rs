//! The hooks `#[derive(Topic)]` emits its SeaORM entity modules through (STYLE.md §5):
//! the derive always emits `__private::outbox_entity! { .. }` / `inbox_entity! { .. }`
//! with what differs per topic (module, visibility, table, typed key or dedup columns),
//! and the `entities` feature decides what they expand to: the module, or nothing at all.
//!
//! The input is
//! `$vis mod $module for $topic, table "$table" { $(typed columns,)* } $(type $alias = $ty;)*`;
//! each alias (the column type of a field type not known by name) is placed next to the
//! topic type and imported into the module. (The aliases come last: before `$vis`, which
//! may be empty, `type` would be ambiguous to `macro_rules!`.)
//!
//! The fixed columns are not written here: the hook asks the runtime's description of the
//! table (`__outbox_columns!` / `__inbox_columns!`, the lists the runtime's DDL and
//! statements are built from) to call `__entity!` with its columns, so
//! a `Model` has exactly the columns of the table kafka-orm creates.

/// The outbox entity: the columns of the runtime's outbox description, the typed
/// `key_<field>` columns in their place.
#[cfg(feature = "entities")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_entity {
    (
        $vis:vis mod $module:ident for $topic:ident, table $table:literal { $($typed:tt)* }
        $(type $alias:ident = $aty:ty;)*
    ) => {
        $crate::__private::outbox_columns! {
            [$crate::__entity]
            "outbox"; $vis mod $module for $topic, table $table { $($typed)* }
            $(type $alias = $aty;)*
        }
    };
}

/// The inbox entity: the columns of the runtime's inbox description, the typed
/// `dedup_<field>` columns in their place (for a bare `inbox`, its `message_id`).
#[cfg(feature = "entities")]
#[doc(hidden)]
#[macro_export]
macro_rules! __inbox_entity {
    (
        $vis:vis mod $module:ident for $topic:ident, table $table:literal { $($typed:tt)* }
        $(type $alias:ident = $aty:ty;)*
    ) => {
        $crate::__private::inbox_columns! {
            [$crate::__entity]
            "inbox"; $vis mod $module for $topic, table $table { $($typed)* }
            $(type $alias = $aty;)*
        }
    };
}

/// One entity module, from a description (`{ id: i64, name: Type, .., ..prefix
/// (else bare: Type), name: Type, .. }`, defaults `= n` ignored: kafka-orm writes the
/// rows) and a hook's input: `Model` with the row id as primary key, the fixed fields,
/// the typed ones (or the bare one when there are none) in their place; SeaORM's derives.
#[cfg(feature = "entities")]
#[doc(hidden)]
#[macro_export]
macro_rules! __entity {
    (
        {
            id: i64,
            $($h:ident : $hty:ident $(<$ha:ident>)? $(= $hd:literal)?,)*
            ..$prefix:ident $(else $bare:ident : $bty:ident)?
            $(, $($t:ident : $tty:ident $(<$ta:ident>)? $(= $td:literal)?),+)? $(,)?
        }
        $what:literal; $vis:vis mod $module:ident for $topic:ident, table $table:literal {
            $($typed:tt)*
        }
        $(type $alias:ident = $aty:ty;)*
    ) => {
        $crate::__entity! {
            @fields [$(pub $h: $hty $(<$ha>)?,)*] [$($typed)*] [$(pub $bare: $bty,)?]
            [$($(pub $t: $tty $(<$ta>)?,)+)?]
            $what; $vis mod $module for $topic, table $table; $(type $alias = $aty;)*
        }
    };
    // No typed columns: the bare one (if any) in their place.
    (@fields [$($h:tt)*] [] [$($bare:tt)*] [$($t:tt)*] $($rest:tt)*) => {
        $crate::__entity! { @module [$($h)* $($bare)* $($t)*] $($rest)* }
    };
    (@fields [$($h:tt)*] [$($typed:tt)+] [$($bare:tt)*] [$($t:tt)*] $($rest:tt)*) => {
        $crate::__entity! { @module [$($h)* $($typed)+ $($t)*] $($rest)* }
    };
    (
        @module [$($fields:tt)*]
        $what:literal; $vis:vis mod $module:ident for $topic:ident, table $table:literal;
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
                $($fields)*
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
