//! The inbox: each message takes effect once, even when Kafka delivers it twice.
//!
//! The handler runs in a database transaction that first inserts the message's inbox row
//! (consumer group + typed dedup columns, unique) with `ON CONFLICT DO NOTHING`. No row
//! inserted means the message was applied before: the handler is skipped and the offset
//! still moves on. The Kafka offset is stored only after the transaction commits, so a
//! crash in between redelivers the message, and the inbox row turns it into a no-op.
//!
//! # Table
//!
//! One table per inbox topic (default `<type_in_snake_case>_inbox`):
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `id` | `BIGSERIAL` / `INTEGER` | row id (for bounded purges) |
//! | `consumer_group` | `TEXT` | the group that applied the message |
//! | `dedup_<field>` | per field: `BIGINT`, `TEXT`, `UUID` (a 16-byte `BLOB` on SQLite), `BOOLEAN` | the dedup key (`inbox(dedup = ..)`) |
//! | `message_id` | `TEXT` | the dedup key of a bare `inbox`: the `kafka-orm-message-id` header |
//! | `topic`, `kafka_partition`, `kafka_offset` | `TEXT`, `INTEGER`, `BIGINT` | where the message was read |
//! | `processed_at` | `BIGINT` | epoch ms of the commit; rows older than the retention are purged |
//!
//! A unique index on `(consumer_group, dedup columns)` makes the check exact. A bare
//! `inbox` dedups on the message id every kafka-orm producer stamps (the outbox row's id
//! for relayed events); a message from another producer without that header dedups on
//! `topic/partition/offset`, which catches redelivery but not a producer's resend.
//!
//! `#[derive(Topic)]` also generates a SeaORM entity of the table, in a module named
//! after it next to the type (`order_created_inbox::Entity`), with one field per column:
//! `id: i64`, `consumer_group: String`, the `dedup_<field>` columns (`i64`, `String`,
//! `uuid::Uuid` or `bool`, from [`DedupPart::COLUMN`](crate::key::DedupPart::COLUMN)) or
//! `message_id: String`, `topic: String`, `kafka_partition: i32`, `kafka_offset: i64`
//! and `processed_at: i64`.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

use crate::consumer::Delivery;
use crate::error::{Error, Result};
use crate::ident;
use crate::key::{ColumnKind, DedupValue};
use crate::outbox::{now_ms, placeholders};
use crate::topic::{InboxSpec, Topic, TopicSpec};

/// The column names of `inbox`'s dedup key, quoted for `backend` (`dedup_<field>`, ASCII
/// lowercased as [`ident::typed_column`] says).
fn dedup_columns(inbox: &InboxSpec, backend: DatabaseBackend) -> Vec<String> {
    if inbox.dedup_fields.is_empty() {
        vec![ident::quoted(backend, "message_id")]
    } else {
        inbox
            .dedup_fields
            .iter()
            .map(|f| ident::quoted(backend, &ident::typed_column("dedup", f)))
            .collect()
    }
}

/// The DDL of `spec`'s inbox table on `backend` (empty when the topic has no inbox).
pub fn create_table_sql(spec: &TopicSpec, backend: DatabaseBackend) -> Vec<String> {
    let Some(inbox) = spec.inbox else {
        return Vec::new();
    };
    let table = ident::quoted(backend, inbox.table);
    let dedup_index = ident::quoted(backend, &ident::index_name(inbox.table, "dedup"));
    let processed_index = ident::quoted(backend, &ident::index_name(inbox.table, "processed_at"));
    let id = match backend {
        DatabaseBackend::Postgres => "BIGSERIAL PRIMARY KEY",
        _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    let names = dedup_columns(&inbox, backend);
    let dedup_defs: Vec<String> = if inbox.dedup_fields.is_empty() {
        vec![format!("{} TEXT NOT NULL", names[0])]
    } else {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let column = inbox
                    .dedup_columns
                    .get(i)
                    .copied()
                    .unwrap_or(ColumnKind::Text);
                format!("{name} {} NOT NULL", column.sql_type(backend))
            })
            .collect()
    };
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
    id {id},
    consumer_group TEXT NOT NULL,
    {},
    topic TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    processed_at BIGINT NOT NULL
)",
            dedup_defs.join(",\n    ")
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {dedup_index} ON {table} (consumer_group, {})",
            names.join(", ")
        ),
        format!("CREATE INDEX IF NOT EXISTS {processed_index} ON {table} (processed_at)"),
    ]
}

/// A UUID is bound as a UUID on PostgreSQL and as 16 bytes on SQLite, the form SeaORM
/// reads a `uuid::Uuid` from (so the generated entity can read and filter the column).
fn to_value(v: DedupValue) -> Value {
    match v {
        DedupValue::Int(i) => i.into(),
        DedupValue::Text(s) => s.into(),
        DedupValue::Uuid(u) => u.into(),
        DedupValue::Bool(b) => b.into(),
    }
}

/// The dedup key of `delivery` as column values.
fn dedup_values<T: Topic>(inbox: &InboxSpec, delivery: &Delivery<T>) -> Vec<Value> {
    if inbox.dedup_fields.is_empty() {
        let id = match delivery.message_id() {
            Some(id) => id.to_string(),
            None => format!(
                "{}/{}/{}",
                delivery.topic(),
                delivery.partition(),
                delivery.offset()
            ),
        };
        vec![id.into()]
    } else {
        delivery
            .value()
            .dedup_key()
            .into_iter()
            .map(to_value)
            .collect()
    }
}

/// Inserts `delivery`'s inbox row in `conn` (the handler's transaction). Returns `false`
/// when the row exists: the message was applied before and must be skipped.
pub async fn record<T: Topic, C: ConnectionTrait>(
    conn: &C,
    group: &str,
    delivery: &Delivery<T>,
) -> Result<bool> {
    let Some(inbox) = T::SPEC.inbox else {
        return Ok(true);
    };
    // A registered type was checked at `build()`; this one may never have been.
    ident::check_spec(T::SPEC)?;
    let backend = conn.get_database_backend();
    let names = dedup_columns(&inbox, backend);
    let mut values: Vec<Value> = vec![group.into()];
    values.extend(dedup_values(&inbox, delivery));
    values.push(delivery.topic().into());
    values.push(delivery.partition().into());
    values.push(delivery.offset().into());
    values.push(now_ms().into());
    let marks = vec!["?"; values.len()].join(",");
    let sql = format!(
        "INSERT INTO {} (consumer_group, {}, topic, kafka_partition, kafka_offset, processed_at) \
         VALUES ({marks}) ON CONFLICT DO NOTHING",
        ident::quoted(backend, inbox.table),
        names.join(", ")
    );
    let result = conn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            placeholders(backend, &sql),
            values,
        ))
        .await
        .map_err(|e| {
            Error::db(
                format!(
                    "recording the inbox row of {}[{}]@{}",
                    delivery.topic(),
                    delivery.partition(),
                    delivery.offset()
                ),
                e,
            )
        })?;
    Ok(result.rows_affected() > 0)
}

/// Inserts the inbox rows of `deliveries` with one statement per 500 rows, in `conn` (the
/// batch's transaction). Returns, per delivery, whether it is new (`false`: applied before,
/// or a repeat of an earlier delivery in the same batch: skip it).
pub async fn record_batch<T: Topic, C: ConnectionTrait>(
    conn: &C,
    group: &str,
    deliveries: &[&Delivery<T>],
) -> Result<Vec<bool>> {
    let Some(inbox) = T::SPEC.inbox else {
        return Ok(vec![true; deliveries.len()]);
    };
    ident::check_spec(T::SPEC)?;
    let backend = conn.get_database_backend();
    let names = dedup_columns(&inbox, backend);
    let per_row = names.len() + 5;
    let row_marks = format!("({})", vec!["?"; per_row].join(","));
    let now = now_ms();
    let mut fresh = Vec::with_capacity(deliveries.len());
    for chunk in deliveries.chunks(500) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * per_row);
        for d in chunk {
            values.push(group.into());
            values.extend(dedup_values(&inbox, d));
            values.push(d.topic().into());
            values.push(d.partition().into());
            values.push(d.offset().into());
            values.push(now.into());
        }
        let marks = vec![row_marks.as_str(); chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO {} (consumer_group, {}, topic, kafka_partition, kafka_offset, processed_at) \
             VALUES {marks} ON CONFLICT DO NOTHING RETURNING topic, kafka_partition, kafka_offset",
            ident::quoted(backend, inbox.table),
            names.join(", ")
        );
        let inserted: std::collections::HashSet<(String, i32, i64)> = conn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, &sql),
                values,
            ))
            .await
            .map_err(|e| Error::db("recording a batch of inbox rows", e))?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get_by_index(0)?,
                    r.try_get_by_index(1)?,
                    r.try_get_by_index(2)?,
                ))
            })
            .collect::<std::result::Result<_, sea_orm::DbErr>>()
            .map_err(|e| Error::db("reading the recorded inbox rows", e))?;
        fresh.extend(
            chunk
                .iter()
                .map(|d| inserted.contains(&(d.topic().to_string(), d.partition(), d.offset()))),
        );
    }
    Ok(fresh)
}

/// Deletes inbox rows of `spec` processed before `older_than_ms`, `batch` rows per
/// statement so no statement holds locks for long. Returns the number deleted.
pub async fn purge(
    db: &DatabaseConnection,
    spec: &TopicSpec,
    older_than_ms: i64,
    batch: u32,
) -> Result<u64> {
    let Some(inbox) = spec.inbox else {
        return Ok(0);
    };
    ident::check_spec(spec)?;
    let backend = db.get_database_backend();
    let table = inbox.table;
    let quoted = ident::quoted(backend, table);
    let sql = placeholders(
        backend,
        &format!(
            "DELETE FROM {quoted} WHERE id IN \
             (SELECT id FROM {quoted} WHERE processed_at < ? ORDER BY processed_at LIMIT {batch})"
        ),
    );
    let mut total = 0;
    loop {
        let deleted = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql.clone(),
                [older_than_ms.into()],
            ))
            .await
            .map_err(|e| Error::db(format!("purging the inbox table `{table}`"), e))?
            .rows_affected();
        total += deleted;
        if deleted < u64::from(batch) {
            return Ok(total);
        }
    }
}

/// Purges every registered inbox of rows older than its retention.
pub async fn purge_expired(db: &DatabaseConnection, specs: &[&'static TopicSpec]) -> Result<u64> {
    let mut total = 0;
    for spec in specs {
        if let Some(inbox) = spec.inbox {
            let cutoff = now_ms() - (inbox.retention_secs as i64).saturating_mul(1000);
            total += purge(db, spec, cutoff, 1000).await?;
        }
    }
    Ok(total)
}
