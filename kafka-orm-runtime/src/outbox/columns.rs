//! The `INSERT` [`publish`](super::publish) runs into a topic's outbox table (its columns
//! and DDL are in `tables/outbox.rs`).

use sea_orm::Value;
use sea_orm::sea_query::{Expr, InsertStatement, IntoIden, Query};

use super::NewRow;
use crate::key::ColumnKind;
use crate::tables::OUTBOX;

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

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;

    use super::*;

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
