//! The outbox tables: a topic's outbox table (the description's columns, then the topic's
//! typed key columns) and its DDL, and the names of the relay's lease tables. Below the
//! context: `schema::migrate` builds every table from here.

use sea_orm::DatabaseBackend;
use sea_orm::sea_query::{Expr, ExprTrait, IntoIden};

use super::{Column, OUTBOX, ddl};
use crate::ident;
use crate::key::ColumnKind;
use crate::topic::TopicSpec;

/// Number of key-hash buckets; relay instances own buckets, never single rows.
pub const BUCKETS: i32 = 64;

/// Table holding the bucket leases of relay instances (PostgreSQL).
pub const LEASE_TABLE: &str = "kafka_orm_relay_leases";

/// Table where live relay instances announce themselves, so that each can compute its
/// fair share of buckets (PostgreSQL).
pub const MEMBER_TABLE: &str = "kafka_orm_relay_members";

/// The outbox table of `spec` (its `outbox(table = ..)`, else the topic name).
pub(crate) fn table_of(spec: &'static TopicSpec) -> &'static str {
    spec.outbox.map(|o| o.table).unwrap_or(spec.name)
}

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
}
