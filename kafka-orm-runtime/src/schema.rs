//! The tables kafka-orm needs, created at `build()` (see
//! [`crate::KafkaOrmBuilder::migrate`]) or by your own migrations from [`statements`].

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};

use crate::error::{Error, Result};
use crate::ident;
use crate::outbox::relay::{LEASE_TABLE, MEMBER_TABLE};
use crate::outbox::{self, BUCKETS};
use crate::topic::TopicSpec;

/// Every DDL statement for `specs` on `backend`, idempotent (`IF NOT EXISTS`), in order.
///
/// For users of `sea-orm-migration`: run these in a migration's `up` with
/// `manager.get_connection().execute_unprepared(..)` and turn off
/// [`crate::KafkaOrmBuilder::migrate`].
///
/// Fails with [`Error::InvalidIdentifier`] when a spec's table or column name is not a
/// plain SQL identifier (only a hand-written `impl Topic` can give one), before any
/// statement is built.
pub fn statements(specs: &[&'static TopicSpec], backend: DatabaseBackend) -> Result<Vec<String>> {
    for spec in specs {
        ident::check_spec(spec)?;
    }
    let mut out = Vec::new();
    for spec in specs {
        out.extend(crate::inbox::create_table_sql(spec, backend));
    }
    let outboxes: Vec<_> = specs.iter().filter(|s| s.outbox.is_some()).collect();
    for spec in &outboxes {
        out.extend(outbox::create_table_sql(spec, backend));
    }
    if backend == DatabaseBackend::Postgres && !outboxes.is_empty() {
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
    outbox TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    owner TEXT NULL,
    expires_at BIGINT NOT NULL DEFAULT 0,
    epoch BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (outbox, bucket)
)"
        ));
        // The fencing epoch came after the table: add it to older ones.
        out.push(format!(
            "ALTER TABLE {LEASE_TABLE} ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0"
        ));
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {MEMBER_TABLE} (
    outbox TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (outbox, owner)
)"
        ));
        for spec in &outboxes {
            out.push(format!(
                "INSERT INTO {LEASE_TABLE} (outbox, bucket) \
                 SELECT {}, b FROM generate_series(0, {}) AS b ON CONFLICT DO NOTHING",
                ident::literal(outbox::table_of(spec)),
                BUCKETS - 1
            ));
        }
    }
    Ok(out)
}

/// Creates every table the registered topics need; safe to run again.
///
/// Tables are created with `IF NOT EXISTS` and never altered, so it then checks that each
/// outbox table has its typed key columns: a table created by an older kafka-orm is an
/// error here, at startup, rather than at the first `publish`.
pub async fn migrate(db: &DatabaseConnection, specs: &[&'static TopicSpec]) -> Result<()> {
    let backend = db.get_database_backend();
    for sql in statements(specs, backend)? {
        db.execute_unprepared(&sql)
            .await
            .map_err(|e| Error::db(format!("creating kafka-orm tables: `{sql}`"), e))?;
    }
    for spec in specs.iter().filter(|s| s.outbox.is_some()) {
        let columns = outbox::key_columns(spec);
        if columns.is_empty() {
            continue;
        }
        let table = outbox::table_of(spec);
        let quoted: Vec<String> = columns
            .iter()
            .map(|(name, _)| ident::quoted(backend, name))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE 1 = 0",
            quoted.join(", "),
            ident::quoted(backend, table)
        );
        let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
        let names = names.join(", ");
        db.execute_unprepared(&sql).await.map_err(|e| {
            Error::db(
                format!(
                    "checking the outbox table `{table}`: it lacks the typed key columns ({names}), so an older kafka-orm created it; drop it once the relay has emptied it, or add the columns (see `kafka_orm::schema::statements`)"
                ),
                e,
            )
        })?;
    }
    Ok(())
}
