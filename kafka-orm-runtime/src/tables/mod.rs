//! The tables kafka-orm owns, each described once: the outbox and inbox table of a topic,
//! the relay's lease and member tables (PostgreSQL).
//!
//! A description ([`TableDef`]) lists a table's columns in order, each with its name, its
//! SQL type per backend ([`SqlType`]), whether it is nullable and its default, and, for a
//! topic's table, where the typed key or dedup columns go. Everything else is derived from
//! it: the DDL ([`ddl`], through sea-query), the column lists of the runtime's statements
//! (checked against the description at compile time, see [`TableDef::names`]), the
//! migration check of [`crate::schema::migrate`], and the SeaORM entities
//! `#[derive(Topic)]` generates.
//!
//! The outbox and inbox descriptions are written as the column lists of two exported
//! macros, `__outbox_columns!` and `__inbox_columns!` ([`described`]), in the form of a
//! SeaORM model (`name: RustType`, `= default`). Each passes its list to a callback macro:
//! here [`table_def!`](table_def) turns it into the `const` description, and the facade's
//! entity hook turns the same tokens into the entity's `Model` fields, so an entity
//! cannot have a column the DDL lacks, or the other way round.

pub(crate) mod ddl;
pub(crate) mod described;
pub(crate) mod outbox;
pub(crate) mod replays;

use std::borrow::Cow;

use sea_orm::DatabaseBackend;
use sea_orm::sea_query::{DynIden, IntoIden};

use crate::key::ColumnKind;

pub(crate) use described::{INBOX, LEASES, MEMBERS, OUTBOX};

/// The SQL type of a column, named per backend by [`SqlType::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    /// `BIGINT` (Rust `i64`).
    BigInt,
    /// `INTEGER` (Rust `i32`).
    Int,
    /// `TEXT` (Rust `String`).
    Text,
    /// `BYTEA` on PostgreSQL, `BLOB` on SQLite (Rust `Vec<u8>`).
    Bytes,
    /// `UUID` on PostgreSQL, a 16-byte `BLOB` on SQLite (Rust `uuid::Uuid`).
    Uuid,
    /// `BOOLEAN` (Rust `bool`).
    Bool,
}

impl SqlType {
    /// The type's name in DDL on `backend`.
    pub(crate) const fn name(self, backend: DatabaseBackend) -> &'static str {
        let postgres = matches!(backend, DatabaseBackend::Postgres);
        match self {
            SqlType::BigInt => "BIGINT",
            SqlType::Int => "INTEGER",
            SqlType::Text => "TEXT",
            SqlType::Bytes if postgres => "BYTEA",
            SqlType::Uuid if postgres => "UUID",
            SqlType::Bytes | SqlType::Uuid => "BLOB",
            SqlType::Bool => "BOOLEAN",
        }
    }
}

impl From<ColumnKind> for SqlType {
    fn from(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::BigInt => SqlType::BigInt,
            ColumnKind::Text => SqlType::Text,
            ColumnKind::Uuid => SqlType::Uuid,
            ColumnKind::Bool => SqlType::Bool,
        }
    }
}

/// The SQL type of a description's Rust type (`name: i64` is a `BIGINT NOT NULL`,
/// `name: Option<String>` a `TEXT NULL`).
pub(crate) trait Stored {
    /// The column's SQL type.
    const SQL: SqlType;
    /// Whether the column is nullable.
    const NULLABLE: bool = false;
}

impl Stored for i64 {
    const SQL: SqlType = SqlType::BigInt;
}
impl Stored for i32 {
    const SQL: SqlType = SqlType::Int;
}
impl Stored for String {
    const SQL: SqlType = SqlType::Text;
}
impl Stored for Vec<u8> {
    const SQL: SqlType = SqlType::Bytes;
}
impl<T: Stored> Stored for Option<T> {
    const SQL: SqlType = T::SQL;
    const NULLABLE: bool = true;
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// The column name (a typed column's is built from its field, hence the `Cow`).
    pub name: Cow<'static, str>,
    /// Its SQL type.
    pub sql: SqlType,
    /// The Rust type of its field in the generated entity (for the docs' tables).
    pub rust: &'static str,
    /// `NULL` rather than `NOT NULL`.
    pub nullable: bool,
    /// Its `DEFAULT`, if any.
    pub default: Option<i64>,
}

impl Column {
    /// A typed key or dedup column: `NOT NULL`, no default.
    pub(crate) fn typed(name: String, kind: ColumnKind) -> Self {
        Column {
            name: Cow::Owned(name),
            sql: kind.into(),
            rust: kind.rust(),
            nullable: false,
            default: None,
        }
    }

    /// The column's name as a sea-query identifier (quoted when a statement is built).
    pub(crate) fn iden(&self) -> DynIden {
        match &self.name {
            Cow::Borrowed(name) => name.into_iden(),
            Cow::Owned(name) => name.clone().into(),
        }
    }
}

/// A table's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrimaryKey {
    /// The first column, `id`: an auto-incremented `BIGINT` (`BIGSERIAL` on PostgreSQL,
    /// SQLite's `INTEGER PRIMARY KEY AUTOINCREMENT`, which is 64-bit too).
    RowId,
    /// These columns.
    Columns(&'static [&'static str]),
}

/// Where a topic's table has its typed columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Typed {
    /// `key` or `dedup`: the columns are `<prefix>_<field>` (see
    /// [`crate::ident::typed_column`]).
    pub prefix: &'static str,
    /// The column in their place when the topic has no typed fields (a bare `inbox`'s
    /// `message_id`); `None`: nothing.
    pub bare: Option<Column>,
}

/// One table's description (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableDef {
    /// What the table is, for messages (`outbox`, `inbox`, ..).
    pub what: &'static str,
    /// Its primary key.
    pub primary_key: PrimaryKey,
    /// The columns before the typed ones (all of them when there are none).
    pub head: &'static [Column],
    /// The typed columns' place, in a topic's table.
    pub typed: Option<Typed>,
    /// The columns after the typed ones.
    pub tail: &'static [Column],
}

impl TableDef {
    /// Every column of the table, with `typed` (`(field, kind)`, in order) in their place
    /// (see [`TableDef::typed_columns`]).
    pub(crate) fn columns<'a>(
        &self,
        typed: impl IntoIterator<Item = (&'a str, ColumnKind)>,
    ) -> Vec<Column> {
        let mut columns = self.head.to_vec();
        columns.extend(self.typed_columns(typed));
        columns.extend_from_slice(self.tail);
        columns
    }

    /// The typed columns of `typed` (`(field, kind)`, in order): `<prefix>_<field>`, or
    /// the bare column when `typed` is empty; none for a table without typed columns.
    pub(crate) fn typed_columns<'a>(
        &self,
        typed: impl IntoIterator<Item = (&'a str, ColumnKind)>,
    ) -> Vec<Column> {
        let Some(slot) = &self.typed else {
            return Vec::new();
        };
        let columns: Vec<Column> = typed
            .into_iter()
            .map(|(field, kind)| {
                Column::typed(crate::ident::typed_column(slot.prefix, field), kind)
            })
            .collect();
        if columns.is_empty() {
            slot.bare.iter().cloned().collect()
        } else {
            columns
        }
    }

    /// `names`, once each is known to be a fixed column of this table: a statement's
    /// column list, checked when the `const` it initializes is evaluated (at compile
    /// time), so that it cannot name a column the table lacks.
    pub(crate) const fn names<const N: usize>(
        &self,
        names: [&'static str; N],
    ) -> [&'static str; N] {
        let mut i = 0;
        while i < N {
            assert!(
                self.has(names[i]),
                "a statement names a column its table's description lacks"
            );
            i += 1;
        }
        names
    }

    /// `name`, once it is known to be a fixed column of this table (see
    /// [`TableDef::names`]).
    pub(crate) const fn name(&self, name: &'static str) -> &'static str {
        self.names([name])[0]
    }

    /// The fixed column `name`.
    pub(crate) fn column(&self, name: &str) -> Option<&'static Column> {
        let (head, tail) = (self.head, self.tail);
        head.iter().chain(tail).find(|c| c.name == name)
    }

    /// Whether `name` is one of the fixed columns.
    const fn has(&self, name: &str) -> bool {
        contains(self.head, name) || contains(self.tail, name)
    }

    /// The fixed columns every insert must give a value: `NOT NULL`, no default, not the
    /// row id.
    #[cfg(test)]
    pub(crate) fn required(&self) -> Vec<&'static str> {
        let row_id = matches!(self.primary_key, PrimaryKey::RowId);
        self.head
            .iter()
            .skip(usize::from(row_id))
            .chain(self.tail)
            .filter(|c| !c.nullable && c.default.is_none())
            .filter_map(|c| match c.name {
                Cow::Borrowed(name) => Some(name),
                Cow::Owned(_) => None,
            })
            .collect()
    }
}

const fn contains(columns: &[Column], name: &str) -> bool {
    let mut i = 0;
    while i < columns.len() {
        if let Cow::Borrowed(column) = &columns[i].name
            && same(column.as_bytes(), name.as_bytes())
        {
            return true;
        }
        i += 1;
    }
    false
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `Some(..)` of its input, or `None` when it is empty.
macro_rules! some_or_none {
    () => {
        None
    };
    ($($x:tt)+) => {
        Some($($x)+)
    };
}

/// A [`Column`] from a description's `name: RustType` (`= default`).
macro_rules! column {
    ($name:ident : $ty:ident $(<$arg:ident>)? $(= $default:literal)?) => {
        Column {
            name: ::std::borrow::Cow::Borrowed(stringify!($name)),
            sql: <$ty $(<$arg>)? as Stored>::SQL,
            rust: concat!(stringify!($ty) $(, "<", stringify!($arg), ">")?),
            nullable: <$ty $(<$arg>)? as Stored>::NULLABLE,
            default: some_or_none!($($default)?),
        }
    };
}

/// The `const` [`TableDef`] of a description: a topic's table (it starts with the row id
/// `id: i64` and has a `..prefix` place for the typed columns, with an optional
/// `else bare: Type` column for when there are none), or a table with a named primary key.
macro_rules! table_def {
    (
        {
            id: i64,
            $($h:ident : $hty:ident $(<$ha:ident>)? $(= $hd:literal)?,)*
            ..$prefix:ident $(else $bare:ident : $bty:ident)?
            $(, $($t:ident : $tty:ident $(<$ta:ident>)? $(= $td:literal)?),+)? $(,)?
        }
        $(#[$doc:meta])* $vis:vis const $name:ident: $what:literal;
    ) => {
        $(#[$doc])*
        $vis const $name: TableDef = TableDef {
            what: $what,
            primary_key: PrimaryKey::RowId,
            head: &[column!(id: i64), $(column!($h: $hty $(<$ha>)? $(= $hd)?)),*],
            typed: Some(Typed {
                prefix: stringify!($prefix),
                bare: some_or_none!($(column!($bare: $bty))?),
            }),
            tail: &[$($(column!($t: $tty $(<$ta>)? $(= $td)?)),+)?],
        };
    };
    (
        { $($c:ident : $cty:ident $(<$ca:ident>)? $(= $cd:literal)?),+ $(,)? }
        primary key ($($pk:ident),+)
        $(#[$doc:meta])* $vis:vis const $name:ident: $what:literal;
    ) => {
        $(#[$doc])*
        $vis const $name: TableDef = TableDef {
            what: $what,
            primary_key: PrimaryKey::Columns(&[$(stringify!($pk)),+]),
            head: &[$(column!($c: $cty $(<$ca>)? $(= $cd)?)),+],
            typed: None,
            tail: &[],
        };
    };
}
use {column, some_or_none, table_def};

#[cfg(test)]
mod tests;
