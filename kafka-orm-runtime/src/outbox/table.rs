//! One outbox table as the relay works on it: its producer (fitted to the topic's batch
//! limit, renewed after a fatal error) and the fenced statements that record a batch.

use std::time::Duration;

use rdkafka::producer::FutureProducer;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

use super::claim::Row;
use super::lease::{LEASE_TABLE, LeaseTiming, LeaseView};
use super::relay::OutboxRelayBuilder;
use super::{now_ms, placeholders};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::telemetry::metrics::RelayMetrics;
use crate::topic::TopicSpec;

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

    fn sql(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend, placeholders(self.backend, sql), values)
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.db.query_all_raw(self.sql(sql, values)).await
    }

    /// `AND` clause limiting a statement on outbox rows to buckets held in this tenure
    /// (PostgreSQL, leased), with its parameters.
    fn fence(&self, view: &LeaseView) -> (String, Vec<Value>) {
        if !self.leased {
            return (String::new(), Vec::new());
        }
        (
            format!(
                " AND bucket = ANY(ARRAY(SELECT bucket FROM {LEASE_TABLE} WHERE outbox = ? AND owner = ? \
                 AND (bucket || ':' || epoch) = ANY(string_to_array(?, ','))))"
            ),
            vec![
                self.table.into(),
                self.me.clone().into(),
                view.tokens().into(),
            ],
        )
    }

    /// Deletes delivered rows (fenced); returns how many were deleted.
    pub(super) async fn delete(&self, ids: &[i64], view: &LeaseView) -> Result<u64> {
        let mut deleted = 0;
        let (fence, fence_values) = self.fence(view);
        for chunk in ids.chunks(1000) {
            // The ids travel as one text parameter, so the statement text never changes
            // and stays prepared.
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let sql = match self.backend {
                DatabaseBackend::Postgres => format!(
                    "DELETE FROM \"{}\" WHERE id = ANY(string_to_array(?, ',')::bigint[]){fence}",
                    self.table
                ),
                _ => format!(
                    "DELETE FROM \"{}\" WHERE id IN (SELECT value FROM json_each('[' || ? || ']'))",
                    self.table
                ),
            };
            let mut values = vec![list.into()];
            values.extend(fence_values.iter().cloned());
            deleted += self
                .db
                .execute_raw(self.sql(&sql, values))
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
        let (fence, fence_values) = self.fence(view);
        let sql = format!(
            "UPDATE \"{}\" SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?{fence}",
            self.table
        );
        let next = now_ms() + wait.as_millis() as i64;
        let mut values: Vec<Value> = vec![
            row.attempts.saturating_add(1).into(),
            next.into(),
            error.into(),
            row.id.into(),
        ];
        values.extend(fence_values);
        self.db
            .execute_raw(self.sql(&sql, values))
            .await
            .map_err(|e| Error::db(self.context("recording a failed row"), e))?;
        Ok(())
    }
}

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
