//! The transactional outbox: [`publish`] writes an event into the topic's outbox table in
//! the caller's SeaORM transaction; the [`relay`] delivers committed rows to Kafka.
//!
//! # Table
//!
//! One table per outbox topic (default `<type_in_snake_case>_outbox`), created by
//! [`crate::schema::migrate`] at `build()`:
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `id` | `BIGSERIAL` / `INTEGER` | insertion order; per key also commit order (see below) |
//! | `message_id` | `TEXT` | UUIDv7, sent as the `kafka-orm-message-id` header |
//! | `message_key` | `TEXT NULL` | the Kafka key (the key field's text, or a JSON array) |
//! | `bucket` | `INTEGER` | `hash(key) % 64`: the unit of relay ownership |
//! | `payload` | `BYTEA` / `BLOB` | the encoded event |
//! | `headers` | `BYTEA` / `BLOB` | extra headers, length-prefixed |
//! | `created_at` | `BIGINT` | epoch milliseconds at publish |
//! | `attempts` | `INTEGER` | failed delivery attempts so far |
//! | `next_attempt_at` | `BIGINT` | epoch ms before which the row is not retried (0: ready) |
//! | `last_error` | `TEXT NULL` | the last delivery error |
//! | `key_<field>` | per key field: `BIGINT`, `TEXT`, `UUID`, `BOOLEAN` | the key, typed, one column per `key` field |
//!
//! The typed key columns follow the fixed ones, one per `key` field in order, `NOT NULL`,
//! named `key_` and the field name with ASCII letters lowercased (`customerId` →
//! `key_customerid`: the name an unquoted identifier folds to on PostgreSQL);
//! their types come from [`KeyPart::COLUMN`](crate::key::KeyPart::COLUMN): `BIGINT` for
//! integers up to `i64`/`u32` (and `isize`), `TEXT` for strings, `char`, `u64`, `usize`,
//! `i128`, `u128` (in decimal) and your own key types (their key text, unless their
//! `KeyPart` impl says otherwise), `UUID` for `uuid::Uuid` (a 16-byte `BLOB` on SQLite),
//! `BOOLEAN` for `bool`. They are for querying (the relay reads `message_key`).
//!
//! The table is described once, in `tables/described.rs`: its DDL, the statements of
//! `publish` and the relay, the migration check and the generated entity come from that
//! description, and a unit test keeps this table in step with it.
//!
//! `#[derive(Topic)]` also generates a SeaORM entity of the table, in a module named
//! after it next to the type (`order_created_outbox::Entity`), with one field per column:
//! `id: i64`, `message_id: String`, `message_key: Option<String>`, `bucket: i32`,
//! `payload: Vec<u8>`, `headers: Vec<u8>`, `created_at: i64`, `attempts: i32`,
//! `next_attempt_at: i64`, `last_error: Option<String>` and the `key_<field>` columns
//! (`i64`, `String`, `uuid::Uuid` or `bool`).
//!
//! # Ordering
//!
//! On PostgreSQL `publish` takes a transaction-scoped advisory lock on the message key
//! before inserting, so two transactions publishing one key are serialized: for each key,
//! row-id order is commit order. The relay never keeps a "last delivered id" cursor: it
//! deletes what it delivered and claims whatever committed rows remain, lowest id first.
//! A lower id that commits late is therefore never skipped, and it cannot overtake a
//! higher id of its own key (that key's later rows were blocked on its lock). Unlike a
//! snapshot-xmin filter, this never stalls behind unrelated long transactions.
//! SQLite has one writer at a time, which serializes the same way.

pub(crate) mod backlog;
mod batch;
mod claim;
mod claim_sql;
mod columns;
mod deliver;
mod health;
mod inflight;
mod lease;
mod lease_sql;
mod listen;
mod name_lock;
mod pipeline;
mod publish;
pub(crate) mod raw;
pub mod relay;
pub(crate) mod status;
mod table;
mod worker;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, Statement, Value};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::ident;
use crate::key::ColumnKind;
use crate::middleware::ProduceLayers;
use crate::producer::{self, Headers, Outgoing};
pub use crate::tables::outbox::{BUCKETS, create_table_sql};
pub(crate) use crate::tables::outbox::{key_columns, table_of};
use crate::telemetry::trace::{self, Messaging, Operation};
use crate::topic::{OutboxTopic, Topic};
pub(crate) use crate::util::{now_ms, stable_hash};

/// Channel the outbox `NOTIFY`s on (PostgreSQL); the payload is the table name.
pub const NOTIFY_CHANNEL: &str = "kafka_orm_outbox";

/// The bucket of a row: its key's hash, or its message id's for key-less rows (which
/// need no order, so they spread over every bucket).
pub(crate) fn bucket_of(key: Option<&[u8]>, message_id: &str) -> i32 {
    let h = stable_hash(&[key.unwrap_or(message_id.as_bytes())]);
    (h % BUCKETS as u64) as i32
}

/// Encodes headers as `[u16 name len][name][u32 value len][value]`*.
pub(crate) fn encode_headers(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers.iter() {
        let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decodes [`encode_headers`]' format; `None` when the bytes are malformed.
pub(crate) fn decode_headers(mut bytes: &[u8]) -> Option<Headers> {
    let mut headers = Headers::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(u16::from_be_bytes(*len) as usize)?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (value, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
        headers.insert(std::str::from_utf8(name).ok()?, value);
        bytes = rest;
    }
    Some(headers)
}

/// One encoded outbox row before insertion.
struct NewRow {
    message_id: String,
    key: Option<String>,
    bucket: i32,
    payload: Vec<u8>,
    headers: Vec<u8>,
    /// The typed key columns' values, in the order of [`key_columns`].
    key_values: Vec<Value>,
}

/// The row of `value`, encoded as `msg` (and through the publish layers, if any).
fn new_row<T: Topic>(value: &T, msg: Outgoing, columns: &[(String, ColumnKind)]) -> Result<NewRow> {
    let key = match msg.key {
        // Keys are built from text (see `KeyPart`), so they are valid UTF-8.
        Some(k) => Some(String::from_utf8(k).map_err(|e| Error::Encode {
            topic: T::SPEC.name,
            type_name: T::SPEC.type_name,
            source: Box::new(e),
        })?),
        None => None,
    };
    // The message-id header is rebuilt at relay time from the row; the type header stays,
    // as the row's message type (a topic enum's rows are of several).
    let mut extra = Headers::new();
    for (name, value) in msg.headers.iter() {
        if name != producer::MESSAGE_ID_HEADER {
            extra.insert(name, value);
        }
    }
    let key_values = if columns.is_empty() {
        Vec::new()
    } else {
        checked_key_values::<T>(value.key_values(), columns)?
    };
    Ok(NewRow {
        bucket: bucket_of(key.as_deref().map(str::as_bytes), &msg.message_id),
        message_id: msg.message_id,
        key,
        payload: msg.payload,
        headers: encode_headers(&extra),
        key_values,
    })
}

/// `values` when they match the typed key columns one to one; a typed error otherwise
/// (a hand-written `Topic` or `KeyPart` impl that disagrees with its own spec).
fn checked_key_values<T: Topic>(
    values: Vec<Value>,
    columns: &[(String, ColumnKind)],
) -> Result<Vec<Value>> {
    let problem = if values.len() != columns.len() {
        Some(format!(
            "`Topic::key_values` gave {} value(s) for the {} typed key column(s) of the outbox table",
            values.len(),
            columns.len()
        ))
    } else {
        values
            .iter()
            .zip(columns)
            .find(|(value, (_, column))| !column.accepts(value))
            .map(|(value, (name, column))| {
                format!(
                    "the outbox column `{name}` is {column:?} but `KeyPart::key_value` gave {value:?}; `KeyPart::COLUMN` and `KeyPart::key_value` must agree"
                )
            })
    };
    match problem {
        None => Ok(values),
        Some(problem) => Err(Error::Encode {
            topic: T::SPEC.name,
            type_name: T::SPEC.type_name,
            source: problem.into(),
        }),
    }
}

/// Writes `values` into `T`'s outbox inside `txn`, in order, with one statement per call
/// (plus, on PostgreSQL, one statement taking the keys' advisory locks in a fixed order).
///
/// Returns the message ids, in input order. Nothing reaches Kafka unless `txn` commits.
/// With the `opentelemetry` feature the rows' headers carry the context of this call's
/// `kafka_orm.publish` span (see [`crate::telemetry::trace`]).
pub async fn publish<T: OutboxTopic>(
    txn: &DatabaseTransaction,
    values: &[&T],
    headers: Headers,
) -> Result<Vec<String>> {
    let layers = Layers {
        layers: &ProduceLayers::default(),
        topic: T::SPEC.name,
    };
    publish_through(txn, values, headers, layers).await
}

/// The publish layers of a call and the topic they are told (with the namespace).
#[derive(Clone, Copy)]
pub(crate) struct Layers<'a> {
    pub layers: &'a ProduceLayers,
    pub topic: &'a str,
}

/// [`publish`], each row through `layers` before it is written.
pub(crate) async fn publish_through<T: OutboxTopic>(
    txn: &DatabaseTransaction,
    values: &[&T],
    mut headers: Headers,
    layers: Layers<'_>,
) -> Result<Vec<String>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let span = tracing::debug_span!(
        "kafka_orm.publish",
        table = table_of(T::SPEC),
        rows = values.len(),
        otel.kind = tracing::field::Empty,
    );
    // The topic without the context's namespace: the relay that delivers the rows adds its own.
    let attrs = Messaging {
        destination: T::SPEC.name,
        batch: (values.len() > 1).then_some(values.len()),
        ..Messaging::default()
    };
    trace::describe(&span, Operation::Create, &attrs);
    let this = span.clone();
    async move {
        trace::inject_current(&mut headers);
        let ids = insert_rows(txn, values, headers, layers).await?;
        if let [id] = ids.as_slice() {
            trace::message_id(&this, id);
        }
        Ok(ids)
    }
    .instrument(span)
    .await
}

async fn insert_rows<T: OutboxTopic>(
    txn: &DatabaseTransaction,
    values: &[&T],
    headers: Headers,
    layers: Layers<'_>,
) -> Result<Vec<String>> {
    // A registered type was checked at `build()`; this one may never have been.
    ident::check_spec(T::SPEC)?;
    let table = table_of(T::SPEC);
    let columns = key_columns(T::SPEC);
    let mut rows = Vec::with_capacity(values.len());
    for value in values {
        let mut msg = producer::encode(*value, headers.clone())?;
        if !layers.layers.is_empty() {
            let (topic, kind) = (layers.topic.to_string(), value.message_type());
            msg = layers.layers.publish(topic, kind, msg).await?;
        }
        rows.push(new_row(*value, msg, &columns)?);
    }
    let ids: Vec<String> = rows.iter().map(|r| r.message_id.clone()).collect();
    insert_new_rows(txn, table, &columns, rows).await?;
    Ok(ids)
}

/// Inserts `rows` into `table` inside `txn` (on PostgreSQL after taking their keys'
/// advisory locks and queueing the relays' wake-up).
async fn insert_new_rows(
    txn: &DatabaseTransaction,
    table: &'static str,
    columns: &[(String, ColumnKind)],
    rows: Vec<NewRow>,
) -> Result<()> {
    let backend = txn.get_database_backend();
    let context = || format!("publishing to the outbox table `{table}`");

    if backend == DatabaseBackend::Postgres {
        // One statement, always the same text (so it stays prepared): wake the relays on
        // commit (a NOTIFY is delivered only if the transaction commits, coalesced per
        // transaction), and serialize publishers of one key (see the module docs), locking
        // in sorted order so two transactions locking several keys cannot deadlock.
        let mut locks: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.key.as_deref())
            .map(|k| stable_hash(&[table.as_bytes(), k.as_bytes()]) as i64)
            .collect();
        locks.sort_unstable();
        locks.dedup();
        let list = locks
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let sql = "SELECT pg_notify($1, $2) UNION ALL \
                   (SELECT pg_advisory_xact_lock(k) FROM \
                    (SELECT unnest(string_to_array($3, ','))::bigint AS k ORDER BY 1) l)";
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [NOTIFY_CHANNEL.into(), table.into(), list.into()],
        ))
        .await
        .map_err(|e| Error::db(context(), e))?;
    }

    let insert = columns::insert_statement(table, columns, rows, now_ms())
        .map_err(|e| Error::db(context(), DbErr::Custom(e.to_string())))?;
    txn.execute(&insert)
        .await
        .map_err(|e| Error::db(context(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_encoding_round_trips_and_rejects_garbage() {
        let h = Headers::new()
            .with("traceparent", "00-abc-def-01")
            .with("bin", vec![0u8, 255]);
        assert_eq!(decode_headers(&encode_headers(&h)), Some(h));
        assert_eq!(decode_headers(&[]), Some(Headers::new()));
        assert_eq!(decode_headers(&[0, 5, b'a']), None);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket_of(Some(b"c-42"), "x"), bucket_of(Some(b"c-42"), "y"));
        let used: std::collections::BTreeSet<i32> = (0..1000)
            .map(|i| bucket_of(Some(format!("k{i}").as_bytes()), ""))
            .collect();
        assert_eq!(used.len(), BUCKETS as usize);
        assert!(used.iter().all(|b| (0..BUCKETS).contains(b)));
    }
}
