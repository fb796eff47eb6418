//! The tables kafka-orm needs, created at `build()` (see
//! [`crate::KafkaOrmBuilder::migrate`]) or by your own migrations from [`statements`].

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};

use crate::error::{Error, Result};
use crate::outbox::relay::{LEASE_TABLE, MEMBER_TABLE};
use crate::outbox::{self, BUCKETS};
use crate::topic::TopicSpec;

/// Every DDL statement for `specs` on `backend`, idempotent (`IF NOT EXISTS`), in order.
///
/// For users of `sea-orm-migration`: run these in a migration's `up` with
/// `manager.get_connection().execute_unprepared(..)` and turn off
/// [`crate::KafkaOrmBuilder::migrate`].
pub fn statements(specs: &[&'static TopicSpec], backend: DatabaseBackend) -> Vec<String> {
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
    PRIMARY KEY (outbox, bucket)
)"
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
                 SELECT '{}', b FROM generate_series(0, {}) AS b ON CONFLICT DO NOTHING",
                outbox::table_of(spec),
                BUCKETS - 1
            ));
        }
    }
    out
}

/// Creates every table the registered topics need; safe to run again.
pub async fn migrate(db: &DatabaseConnection, specs: &[&'static TopicSpec]) -> Result<()> {
    let backend = db.get_database_backend();
    for sql in statements(specs, backend) {
        db.execute_unprepared(&sql)
            .await
            .map_err(|e| Error::db(format!("creating kafka-orm tables: `{sql}`"), e))?;
    }
    Ok(())
}
