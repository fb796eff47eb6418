//! DDL from a [`TableDef`], built with sea-query (identifiers quoted, a quote inside one
//! doubled), idempotent: `IF NOT EXISTS` everywhere.

use sea_orm::DatabaseBackend;
use sea_orm::sea_query::{
    ColumnDef, ColumnType, ConditionalStatement, DynIden, Expr, Index, IndexCreateStatement, Table,
};

use super::{Column, PrimaryKey, TableDef};

/// `CREATE TABLE IF NOT EXISTS` of `table`, described by `def`, with `columns` (its
/// columns for one topic, see [`TableDef::columns`]).
pub(crate) fn create_table(
    def: &TableDef,
    table: &str,
    columns: &[Column],
    backend: DatabaseBackend,
) -> String {
    let mut create = Table::create();
    create.table(table.to_string()).if_not_exists();
    for (i, column) in columns.iter().enumerate() {
        let row_id = i == 0 && def.primary_key == PrimaryKey::RowId;
        create.col(column_def(column, row_id, backend));
    }
    if let PrimaryKey::Columns(names) = def.primary_key {
        let mut key = Index::create();
        for name in names {
            key.col(*name);
        }
        create.primary_key(&mut key);
    }
    backend.build(&create).sql
}

/// `ALTER TABLE .. ADD COLUMN IF NOT EXISTS` (PostgreSQL): a column that came after the
/// table.
pub(crate) fn add_column(table: &str, column: &Column, backend: DatabaseBackend) -> String {
    let alter = Table::alter()
        .table(table.to_string())
        .add_column_if_not_exists(column_def(column, false, backend))
        .to_owned();
    backend.build(&alter).sql
}

fn column_def(column: &Column, row_id: bool, backend: DatabaseBackend) -> ColumnDef {
    let sql = match (row_id, backend) {
        (true, DatabaseBackend::Postgres) => "BIGSERIAL",
        // The rowid alias; 64-bit, and AUTOINCREMENT never reuses an id.
        (true, _) => "INTEGER",
        (false, _) => column.sql.name(backend),
    };
    let mut def = ColumnDef::new_with_type(column.iden(), ColumnType::custom(sql));
    if row_id {
        // `NOT NULL` as the entity has it: SQLite's rowid alias would report a nullable
        // column otherwise (it never holds a NULL: an insert without it gets a new id).
        def.not_null().primary_key();
        if backend != DatabaseBackend::Postgres {
            def.auto_increment();
        }
    } else if column.nullable {
        def.null();
    } else {
        def.not_null();
    }
    if let Some(default) = column.default {
        def.default(default);
    }
    def
}

/// An index of `table` (unique or not) on `columns`, named `<table>_<suffix>` (see
/// [`crate::ident::index_name`]), partial when `filter` is given.
pub(crate) fn create_index(
    table: &str,
    suffix: &str,
    columns: Vec<DynIden>,
    unique: bool,
    filter: Option<Expr>,
    backend: DatabaseBackend,
) -> String {
    // sea-query writes an index name as it is: double its quotes (the name comes from a
    // table name, which the spec check allows no quote in; this is defence in depth).
    let name = crate::ident::index_name(table, suffix).replace('"', "\"\"");
    let mut index: IndexCreateStatement = Index::create();
    index.if_not_exists().name(name).table(table.to_string());
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    if let Some(filter) = filter {
        index.and_where(filter);
    }
    backend.build(&index).sql
}
