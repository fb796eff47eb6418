//! The outbox table of one topic: its columns (the description's, with the topic's typed
//! key columns last), its DDL, and the `INSERT` [`publish`](super::publish) runs.

use sea_orm::DatabaseBackend;
use sea_orm::Value;
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, IntoIden, Query};

use super::{NewRow, table_of};
use crate::ident;
use crate::key::ColumnKind;
use crate::tables::{Column, OUTBOX, ddl};
use crate::topic::TopicSpec;

/// The typed key columns of `spec`'s outbox table: `key_<field>` (ASCII-lowercased, see
/// [`ident::typed_column`]; quote it with [`ident::quoted`] in SQL) and its type, in key
/// order (none when the spec gives no column types).
pub(crate) fn key_columns(spec: &TopicSpec) -> Vec<(String, ColumnKind)> {
    let columns = spec.outbox.map_or(&[][..], |o| o.key_columns);
    spec.key_fields
        .iter()
        .zip(columns)
        .map(|(field, column)| (ident::typed_column("key", field), *column))
        .collect()
}

/// Every column of `spec`'s outbox table, the typed key columns last (see
/// [`crate::tables`]).
pub(crate) fn columns(spec: &TopicSpec) -> Vec<Column> {
    let kinds = spec.outbox.map_or(&[][..], |o| o.key_columns);
    OUTBOX.columns(spec.key_fields.iter().copied().zip(kinds.iter().copied()))
}

/// The columns `publish` writes, in [`NewRow`]'s order; the typed key columns follow.
const PUBLISHED: [&str; 6] = OUTBOX.names([
    "message_id",
    "message_key",
    "bucket",
    "payload",
    "headers",
    "created_at",
]);

/// One `INSERT` of `rows` into `table`, whose typed key columns are `columns`.
pub(super) fn insert_statement(
    table: &'static str,
    columns: &[(String, ColumnKind)],
    rows: Vec<NewRow>,
    created_at: i64,
) -> Result<InsertStatement, sea_orm::sea_query::error::Error> {
    let mut insert = Query::insert();
    insert.into_table(table).columns(
        PUBLISHED
            .into_iter()
            .map(IntoIden::into_iden)
            .chain(columns.iter().map(|(name, _)| name.clone().into_iden())),
    );
    for row in rows {
        let fixed: [Value; 6] = [
            row.message_id.into(),
            row.key.into(),
            row.bucket.into(),
            row.payload.into(),
            row.headers.into(),
            created_at.into(),
        ];
        insert.values(fixed.into_iter().chain(row.key_values).map(Expr::from))?;
    }
    Ok(insert)
}

/// The DDL of `spec`'s outbox table on `backend`.
pub fn create_table_sql(spec: &'static TopicSpec, backend: DatabaseBackend) -> Vec<String> {
    let table = table_of(spec);
    let [message_key, attempts] = FAILING_INDEX;
    vec![
        ddl::create_table(&OUTBOX, table, &columns(spec), backend),
        // The relay walks the primary key; only rows that failed need an index, to find
        // the keys that are backing off.
        ddl::create_index(
            table,
            "failing",
            vec![message_key.into_iden()],
            false,
            Some(Expr::col(attempts).gt(0)),
            backend,
        ),
    ]
}

/// The column of the index of failed rows, and the one its filter reads.
const FAILING_INDEX: [&str; 2] = OUTBOX.names(["message_key", "attempts"]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::OutboxSpec;

    #[test]
    fn typed_key_columns_follow_the_fixed_ones() {
        static SPEC: TopicSpec = TopicSpec::new("t::T", "t")
            .key_fields(&["tenant", "order_id", "ref"])
            .outbox(OutboxSpec::new("t_outbox").columns(&[
                ColumnKind::Text,
                ColumnKind::BigInt,
                ColumnKind::Uuid,
            ]));
        let pg = &create_table_sql(&SPEC, DatabaseBackend::Postgres)[0];
        assert!(
            pg.ends_with(
                "\"last_error\" TEXT NULL, \"key_tenant\" TEXT NOT NULL, \"key_order_id\" BIGINT NOT NULL, \"key_ref\" UUID NOT NULL )"
            ),
            "{pg}"
        );
        let sqlite = &create_table_sql(&SPEC, DatabaseBackend::Sqlite)[0];
        assert!(sqlite.contains("\"key_ref\" BLOB NOT NULL"), "{sqlite}");
        static UNTYPED: TopicSpec = TopicSpec::new("t::U", "u")
            .key_fields(&["id"])
            .outbox(OutboxSpec::new("u_outbox"));
        let pg = &create_table_sql(&UNTYPED, DatabaseBackend::Postgres)[0];
        assert!(pg.ends_with("\"last_error\" TEXT NULL )"), "{pg}");
    }

    #[test]
    fn a_hostile_table_name_stays_one_quoted_identifier() {
        // `schema::statements` refuses this spec; the DDL is quoted even so.
        static HOSTILE: TopicSpec = TopicSpec::new("t::H", "h").outbox(OutboxSpec::new(
            "x\" (id INT); DROP TABLE y; CREATE TABLE \"w",
        ));
        let pg = &create_table_sql(&HOSTILE, DatabaseBackend::Postgres)[0];
        assert!(
            pg.starts_with(
                "CREATE TABLE IF NOT EXISTS \"x\"\" (id INT); DROP TABLE y; CREATE TABLE \"\"w\" ( "
            ),
            "{pg}"
        );
    }

    #[test]
    fn publish_writes_every_column_that_needs_a_value() {
        let mut published = PUBLISHED.to_vec();
        published.sort_unstable();
        for column in OUTBOX.required() {
            assert!(published.binary_search(&column).is_ok(), "{column}");
        }
    }

    #[test]
    fn one_insert_for_all_rows_with_the_typed_columns_last() {
        let row = |id: &str| NewRow {
            message_id: id.into(),
            key: Some("k".into()),
            bucket: 3,
            payload: vec![1],
            headers: vec![],
            key_values: vec![Value::String(Some("k".into()))],
        };
        let columns = [("key_id".to_string(), ColumnKind::Text)];
        let insert = insert_statement("t_outbox", &columns, vec![row("a"), row("b")], 7).unwrap();
        let stmt = DatabaseBackend::Postgres.build(&insert);
        assert_eq!(
            stmt.sql,
            "INSERT INTO \"t_outbox\" (\"message_id\", \"message_key\", \"bucket\", \"payload\", \"headers\", \"created_at\", \"key_id\") \
             VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)"
        );
        assert_eq!(stmt.values.map(|v| v.0.len()), Some(14));
        let sqlite = DatabaseBackend::Sqlite.build(&insert).sql;
        assert!(
            sqlite.ends_with("VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)"),
            "{sqlite}"
        );
    }
}
