//! Operating outboxes from outside the relay, with nothing but the database: their status,
//! making failing rows due now, checking that their tables exist.

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};

use crate::error::{Error, Result};
use crate::outbox::NOTIFY_CHANNEL;
use crate::outbox::relay::OutboxStatus;
use crate::tables::OUTBOX;
use crate::topic::TopicSpec;

/// Which rows [`outbox_retry`] makes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryRows {
    /// The row with this id.
    Row(i64),
    /// Every row that failed at least once.
    Failing,
}

const COLUMNS: [&str; 3] = OUTBOX.names(["id", "attempts", "next_attempt_at"]);

/// Makes `rows` of `spec`'s outbox due now (a failed row waits out its backoff
/// otherwise) and wakes the relays; returns how many rows that was. Their attempt counts
/// stay, so [`outbox_status`] still lists them until they are delivered.
pub async fn outbox_retry(
    db: &DatabaseConnection,
    spec: &'static TopicSpec,
    rows: RetryRows,
) -> Result<u64> {
    let table = crate::outbox::table_of(spec);
    let [id, attempts, next] = COLUMNS;
    let mut update = Query::update();
    update.table(table).value(next, 0_i64);
    match rows {
        RetryRows::Row(row) => update.and_where(Expr::col(id).eq(row)),
        RetryRows::Failing => update.and_where(Expr::col(attempts).gt(0)),
    };
    let ctx = || format!("retrying rows of the outbox table `{table}`");
    let done = db.execute(&update).await.map_err(|e| Error::db(ctx(), e))?;
    if db.get_database_backend() == DatabaseBackend::Postgres && done.rows_affected() > 0 {
        let notify = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [NOTIFY_CHANNEL.into(), table.into()],
        );
        db.execute_raw(notify)
            .await
            .map_err(|e| Error::db(ctx(), e))?;
    }
    Ok(done.rows_affected())
}

/// The outbox tables of `specs` that `db` does not have.
pub async fn missing_outbox_tables(
    db: &DatabaseConnection,
    specs: &[&'static TopicSpec],
) -> Result<Vec<&'static str>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    let mut missing = Vec::new();
    for spec in specs.iter().filter(|s| s.outbox.is_some()) {
        let table = crate::outbox::table_of(spec);
        let ctx = || format!("looking for the outbox table `{table}`");
        let row = db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
            .await
            .map_err(|e| Error::db(ctx(), e))?;
        let n: i64 = match row {
            Some(r) => r.try_get_by_index(0).map_err(|e| Error::db(ctx(), e))?,
            None => 0,
        };
        if n == 0 {
            missing.push(table);
        }
    }
    Ok(missing)
}

/// [`KafkaOrm::outbox_status`](crate::KafkaOrm::outbox_status) of the outbox tables of `specs` (the ones with an outbox),
/// registered in this binary or not, read from `db` alone: no broker is needed.
pub async fn outbox_status(
    db: &DatabaseConnection,
    specs: &[&'static TopicSpec],
) -> Result<Vec<OutboxStatus>> {
    crate::outbox::status::status_of(db, specs).await
}
