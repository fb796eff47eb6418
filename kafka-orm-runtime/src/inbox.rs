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
//! | `topic` | `TEXT` | where the message was read: the topic, |
//! | `kafka_partition` | `INTEGER` | the partition |
//! | `kafka_offset` | `BIGINT` | and the offset |
//! | `processed_at` | `BIGINT` | epoch ms of the commit; rows older than the retention are purged |
//!
//! The table is described once, in `tables/described.rs`; its DDL, the statements here,
//! the migration check and the generated entity come from that description, and a unit
//! test keeps this table in step with it.
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

use sea_orm::sea_query::{
    DynIden, Expr, ExprTrait, InsertStatement, IntoIden, OnConflict, Order, Query, ReturningClause,
};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Value};

use crate::consumer::Delivery;
use crate::error::{Error, Result};
use crate::ident;
use crate::key::{ColumnKind, DedupValue};
use crate::tables::{Column, INBOX, ddl};
use crate::topic::{InboxSpec, Topic, TopicSpec};
use crate::util::now_ms;

/// The columns an inbox row is inserted with, in [`row`]'s order; the dedup columns follow.
const RECORDED: [&str; 5] = INBOX.names([
    "consumer_group",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "processed_at",
]);

/// What a batch insert returns of each inserted row: where it was read.
const RETURNED: [&str; 3] = INBOX.names(["topic", "kafka_partition", "kafka_offset"]);

/// The dedup fields of `inbox` and their column types (`TEXT` when the spec gives none).
fn dedup_fields(inbox: &InboxSpec) -> impl Iterator<Item = (&'static str, ColumnKind)> + '_ {
    let kinds = inbox.dedup_columns;
    inbox
        .dedup_fields
        .iter()
        .enumerate()
        .map(move |(i, field)| (*field, kinds.get(i).copied().unwrap_or(ColumnKind::Text)))
}

/// Every column of `inbox`'s table (see [`crate::tables`]).
pub(crate) fn columns(inbox: &InboxSpec) -> Vec<Column> {
    INBOX.columns(dedup_fields(inbox))
}

/// The dedup key's columns: `dedup_<field>` (ASCII lowercased as [`ident::typed_column`]
/// says), or the bare inbox's `message_id`.
fn dedup_columns(inbox: &InboxSpec) -> Vec<DynIden> {
    INBOX
        .typed_columns(dedup_fields(inbox))
        .iter()
        .map(Column::iden)
        .collect()
}

/// The DDL of `spec`'s inbox table on `backend` (empty when the topic has no inbox).
pub fn create_table_sql(spec: &TopicSpec, backend: DatabaseBackend) -> Vec<String> {
    let Some(inbox) = spec.inbox else {
        return Vec::new();
    };
    let table = inbox.table;
    let [group, processed_at] = INDEXED;
    let mut dedup = vec![group.into_iden()];
    dedup.extend(dedup_columns(&inbox));
    vec![
        ddl::create_table(&INBOX, table, &columns(&inbox), backend),
        ddl::create_index(table, "dedup", dedup, true, None, backend),
        ddl::create_index(
            table,
            "processed_at",
            vec![processed_at.into_iden()],
            false,
            None,
            backend,
        ),
    ]
}

/// The unique index's first column; the purge's index.
const INDEXED: [&str; 2] = INBOX.names(["consumer_group", "processed_at"]);

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

/// The values of `delivery`'s inbox row: [`RECORDED`]'s, then the dedup key's.
fn row<T: Topic>(inbox: &InboxSpec, group: &str, delivery: &Delivery<T>, now: i64) -> Vec<Expr> {
    let fixed: [Value; 5] = [
        group.into(),
        delivery.topic().into(),
        delivery.partition().into(),
        delivery.offset().into(),
        now.into(),
    ];
    fixed
        .into_iter()
        .chain(dedup_values(inbox, delivery))
        .map(Expr::from)
        .collect()
}

/// `INSERT .. ON CONFLICT DO NOTHING` of the inbox rows of `deliveries` into `inbox`'s
/// table.
fn insert<T: Topic>(
    inbox: &InboxSpec,
    group: &str,
    deliveries: &[&Delivery<T>],
) -> std::result::Result<InsertStatement, sea_orm::DbErr> {
    let now = now_ms();
    let mut insert = Query::insert();
    insert
        .into_table(inbox.table)
        .columns(
            RECORDED
                .into_iter()
                .map(IntoIden::into_iden)
                .chain(dedup_columns(inbox)),
        )
        .on_conflict(OnConflict::new().do_nothing().to_owned());
    for delivery in deliveries {
        insert
            .values(row(inbox, group, delivery, now))
            // A `dedup_key()` of the wrong length: a hand-written `Topic` impl.
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    }
    Ok(insert)
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
    let context = || {
        format!(
            "recording the inbox row of {}[{}]@{}",
            delivery.topic(),
            delivery.partition(),
            delivery.offset()
        )
    };
    let insert = insert(&inbox, group, &[delivery]).map_err(|e| Error::db(context(), e))?;
    let result = conn
        .execute(&insert)
        .await
        .map_err(|e| Error::db(context(), e))?;
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
    let context = "recording a batch of inbox rows";
    let mut fresh = Vec::with_capacity(deliveries.len());
    for chunk in deliveries.chunks(500) {
        let mut insert = insert(&inbox, group, chunk).map_err(|e| Error::db(context, e))?;
        insert.returning(ReturningClause::Columns(
            RETURNED.into_iter().map(|c| c.into_iden().into()).collect(),
        ));
        let inserted: std::collections::HashSet<(String, i32, i64)> = conn
            .query_all(&insert)
            .await
            .map_err(|e| Error::db(context, e))?
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
    let table = inbox.table;
    let [id, processed_at] = PURGED;
    let mut oldest = Query::select();
    oldest
        .column(id)
        .from(table)
        .and_where(Expr::col(processed_at).lt(older_than_ms))
        .order_by(processed_at, Order::Asc)
        .limit(u64::from(batch));
    let delete = Query::delete()
        .from_table(table)
        .and_where(Expr::col(id).in_subquery(oldest))
        .to_owned();
    let statement = db.get_database_backend().build(&delete);
    let mut total = 0;
    loop {
        let deleted = db
            .execute_raw(statement.clone())
            .await
            .map_err(|e| Error::db(format!("purging the inbox table `{table}`"), e))?
            .rows_affected();
        total += deleted;
        if deleted < u64::from(batch) {
            return Ok(total);
        }
    }
}

/// The columns a purge reads: the row id, and the time the oldest rows are found by.
const PURGED: [&str; 2] = INBOX.names(["id", "processed_at"]);

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
