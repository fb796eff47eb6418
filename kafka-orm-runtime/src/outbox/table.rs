//! One outbox table as the relay works on it: its producer (fitted to the topic's batch
//! limit, renewed after a fatal error) and the fenced statements that record a batch.

use std::time::Duration;

use rdkafka::producer::FutureProducer;
use sea_orm::sea_query::extension::postgres::PgFunc;
use sea_orm::sea_query::{BinOper, DeleteStatement, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

use super::claim::Row;
use super::lease::{LEASE_TABLE, LeaseTiming, LeaseView, tokens_match};
use super::relay::OutboxRelayBuilder;
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::tables::OUTBOX;
use crate::telemetry::metrics::RelayMetrics;
use crate::topic::TopicSpec;
use crate::util::now_ms;

/// One outbox table as the relay works on it: what claim, deliver and record need.
pub(crate) struct Table {
    pub config: OutboxRelayBuilder,
    pub db: DatabaseConnection,
    pub backend: DatabaseBackend,
    pub spec: &'static TopicSpec,
    pub table: &'static str,
    pub topic: String,
    pub producer: FutureProducer,
    /// The topic's `max.message.bytes`, when below librdkafka's batch size.
    pub batch_limit: Option<usize>,
    pub batch_size: usize,
    pub leased: bool,
    pub me: String,
    pub timing: LeaseTiming,
    pub metrics: RelayMetrics,
}

impl Table {
    /// After a fatal producer error (the gapless guarantee tripped): a new producer.
    pub(super) fn renew_producer_if_fatal(&mut self) -> Result<()> {
        use rdkafka::producer::Producer;
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(table = self.table, ?code, %reason, "relay producer stopped by a fatal error; starting a new one");
            self.producer = self.config.producer(self.batch_limit)?;
        }
        Ok(())
    }

    pub(crate) fn context(&self, what: &str) -> String {
        format!("{what} (outbox table `{}`)", self.table)
    }

    /// A hand-written statement, with numbered parameters (`$1`, which SQLite takes too).
    pub(crate) async fn query(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.db
            .query_all_raw(Statement::from_sql_and_values(self.backend, sql, values))
            .await
    }

    /// The condition limiting a statement on outbox rows to buckets held in this tenure
    /// (PostgreSQL, leased).
    fn fence(&self, view: &LeaseView) -> Option<Expr> {
        self.leased
            .then(|| fence(self.table, self.me.clone(), view.tokens()))
    }

    /// Deletes delivered rows (fenced); returns how many were deleted. On PostgreSQL the
    /// delete commits without waiting for its WAL flush (`synchronous_commit = off` for
    /// that transaction alone): a database crash can only forget a recent delete, and a
    /// forgotten delete means those acknowledged rows are delivered again, never lost.
    pub(super) async fn delete(&self, ids: &[i64], view: &LeaseView) -> Result<u64> {
        let mut deleted = 0;
        for chunk in ids.chunks(1000) {
            let delete = delete(self.backend, self.table, chunk, self.fence(view));
            deleted += self
                .db
                .execute(&delete)
                .await
                .map_err(|e| Error::db(self.context("deleting delivered rows"), e))?
                .rows_affected();
        }
        Ok(deleted)
    }

    /// Gives a failed row its next attempt time and error (fenced).
    pub(super) async fn back_off(
        &self,
        row: &Row,
        wait: Duration,
        error: String,
        view: &LeaseView,
    ) -> Result<()> {
        let next = now_ms() + wait.as_millis() as i64;
        let mut update = Query::update();
        update
            .table(self.table)
            .values([
                (ATTEMPTS, row.attempts.saturating_add(1).into()),
                (NEXT_ATTEMPT_AT, next.into()),
                (LAST_ERROR, error.into()),
            ])
            .and_where(Expr::col(ID).eq(row.id));
        if let Some(fence) = self.fence(view) {
            update.and_where(fence);
        }
        self.db
            .execute(&update)
            .await
            .map_err(|e| Error::db(self.context("recording a failed row"), e))?;
        Ok(())
    }
}

/// `bucket` is one that `me` holds in the tenure of `tokens` (`bucket:epoch`, see
/// [`LeaseView::tokens`]).
fn fence(table: &str, me: String, tokens: String) -> Expr {
    // PostgreSQL only: `$n` is this expression's n-th value (sea-query renumbers them).
    let held = Expr::cust_with_values(
        format!(
            "ARRAY(SELECT bucket FROM {LEASE_TABLE} WHERE outbox = $1 AND owner = $2 AND {})",
            tokens_match("$3")
        ),
        [Value::from(table), me.into(), tokens.into()],
    );
    Expr::col(BUCKET).eq(PgFunc::any(held))
}

/// `DELETE` of the rows `ids` of `table`, with `fence`. The ids travel as one text
/// parameter, so the statement text never changes and stays prepared. On PostgreSQL the
/// statement's transaction commits asynchronously (see [`Table::delete`]).
fn delete(
    backend: DatabaseBackend,
    table: &'static str,
    ids: &[i64],
    fence: Option<Expr>,
) -> DeleteStatement {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let listed = match backend {
        DatabaseBackend::Postgres => Expr::col(ID).eq(PgFunc::any(Expr::cust_with_values(
            "string_to_array($1, ',')::bigint[]",
            [list],
        ))),
        _ => Expr::col(ID).binary(
            BinOper::In,
            Expr::cust_with_values("SELECT value FROM json_each('[' || ? || ']')", [list]),
        ),
    };
    let mut delete = Query::delete();
    delete.from_table(table).and_where(listed);
    if let Some(fence) = fence {
        delete.and_where(fence);
    }
    if backend == DatabaseBackend::Postgres {
        // `SET LOCAL` as an expression: evaluated for the rows deleted, so it holds for the
        // statement's own transaction whenever it deletes anything.
        delete.and_where(Expr::cust(
            "set_config('synchronous_commit', 'off', true) IS NOT NULL",
        ));
    }
    delete
}

// The columns the relay's deletes and updates name.
const ID: &str = OUTBOX.name("id");
const BUCKET: &str = OUTBOX.name("bucket");
const ATTEMPTS: &str = OUTBOX.name("attempts");
const NEXT_ATTEMPT_AT: &str = OUTBOX.name("next_attempt_at");
const LAST_ERROR: &str = OUTBOX.name("last_error");

/// librdkafka's default `batch.size`.
pub(super) const LIBRDKAFKA_BATCH_SIZE: usize = 1_000_000;

/// The topic's broker-side limit on a record batch (`max.message.bytes`), if readable.
pub(super) async fn topic_batch_limit(orm: &KafkaOrm, topic: &str) -> Option<usize> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = orm.client_config().create().ok()?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let spec = ResourceSpecifier::Topic(topic);
    let described = tokio::time::timeout(
        Duration::from_secs(6),
        admin.describe_configs([&spec], &opts),
    )
    .await;
    // Destroying a client can wait on the broker: not on the runtime.
    tokio::task::spawn_blocking(move || drop(admin));
    let resource = described.ok()?.ok()?.into_iter().next()?.ok()?;
    resource
        .get("max.message.bytes")?
        .value
        .as_deref()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_delete_names_the_ids_and_the_tenure_in_parameters() {
        let fenced = Some(fence("t", "me".into(), "1:7,2:7".into()));
        let pg = DatabaseBackend::Postgres.build(&delete(
            DatabaseBackend::Postgres,
            "t",
            &[3, 4],
            fenced,
        ));
        assert_eq!(
            pg.sql,
            "DELETE FROM \"t\" WHERE \"id\" = ANY(string_to_array($1, ',')::bigint[]) \
             AND \"bucket\" = ANY(ARRAY(SELECT bucket FROM kafka_orm_relay_leases WHERE outbox = $2 \
             AND owner = $3 AND (bucket || ':' || epoch) = ANY(ARRAY(SELECT unnest(string_to_array($4, ',')))))) \
             AND (set_config('synchronous_commit', 'off', true) IS NOT NULL)"
        );
        assert_eq!(
            pg.values.unwrap().0,
            [
                Value::from("3,4"),
                Value::from("t"),
                Value::from("me"),
                Value::from("1:7,2:7")
            ]
        );
        let sqlite =
            DatabaseBackend::Sqlite.build(&delete(DatabaseBackend::Sqlite, "t", &[3], None));
        assert_eq!(
            sqlite.sql,
            "DELETE FROM \"t\" WHERE \"id\" IN (SELECT value FROM json_each('[' || ? || ']'))"
        );
    }
}
