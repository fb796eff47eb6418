//! The claim statements (see `claim.rs`), one per backend; numbered parameters.
//!
//! Both walk the primary key in id order for a bounded window past the rows in flight,
//! whatever the planner believes of the filters (with a plain `ORDER BY id LIMIT` and
//! filters whose selectivity it cannot know, PostgreSQL chose a sequential scan and a sort
//! of the whole table: 130 ms per batch at 100k rows; walking a `(bucket, id)` index per
//! held bucket instead flipped to a bitmap scan and a sort of each whole bucket once the
//! statistics were stale, over 100 ms per claim at 100k rows). Rows of the window in
//! buckets this instance holds in the same tenure (with time left for a batch), of keys
//! neither in flight nor backing off, are claimed, the lowest `batch` ids of them.
//!
//! **PostgreSQL** streams: the window is a subquery in id order, so the claim stops as
//! soon as it has its batch, with no sort and no materialized window (a third of the
//! server time of a materialized one, measured); [`postgres_window_rows`] counts a window
//! when a claim found nothing. **SQLite** (one relay, no leases) materializes the window,
//! and its first column is the window's row count.

use super::lease::{LEASE_TABLE, PG_NOW_MS, tokens_match};
use crate::ident;
use crate::tables::OUTBOX;
use sea_orm::DatabaseBackend;

/// The columns a claim reads, in `Row`'s order.
const CLAIMED: [&str; 7] = OUTBOX.names([
    "id",
    "message_id",
    "message_key",
    "bucket",
    "payload",
    "headers",
    "attempts",
]);

/// The rows a claim may take: of no key, or of a key (the column `key`) neither in flight
/// (`in_flight` yields them) nor backing off in `table` (`$1` is now).
fn free_key(table: &str, key: &str, in_flight: &str) -> String {
    format!(
        "({key} IS NULL OR ({key} NOT IN ({in_flight}) AND {key} NOT IN \
         (SELECT message_key FROM {table} WHERE attempts > 0 AND next_attempt_at > $1 AND message_key IS NOT NULL)))"
    )
}

/// PostgreSQL: `$1` now, `$2` the ids in flight (comma-separated), `$3` the keys in flight
/// (a JSON array); leased, `$4`..`$7` the lease (table, owner, room for a batch in ms,
/// fencing tokens). At most `window` rows are walked.
pub(crate) fn postgres(table: &str, leased: bool, window: usize, batch: usize) -> String {
    let table = ident::quoted(DatabaseBackend::Postgres, table);
    let held = if leased {
        let tokens = tokens_match("$7");
        format!(
            "w.bucket = ANY(ARRAY(SELECT bucket FROM {LEASE_TABLE} WHERE outbox = $4 AND owner = $5 \
             AND expires_at > (SELECT {PG_NOW_MS} + $6) AND {tokens})) AND "
        )
    } else {
        String::new()
    };
    let free = free_key(
        &table,
        "w.message_key",
        "SELECT json_array_elements_text($3::json)",
    );
    let quoted: Vec<String> = CLAIMED
        .iter()
        .map(|c| ident::quoted(DatabaseBackend::Postgres, c))
        .collect();
    let (columns, w_columns) = (quoted.join(", "), format!("w.{}", quoted.join(", w.")));
    format!(
        "SELECT {w_columns} FROM (SELECT {columns} FROM {table} WHERE next_attempt_at <= $1 \
           AND {IN_FLIGHT_IDS} ORDER BY id LIMIT {window}) w \
         WHERE {held}{free} ORDER BY w.id LIMIT {batch}"
    )
}

/// Rows the PostgreSQL claim's ids are not in (`$2`: comma-separated).
const IN_FLIGHT_IDS: &str = "id NOT IN (SELECT unnest(string_to_array($2, ',')::bigint[]))";

/// PostgreSQL: how many rows a window of `window` holds (`$1` now, `$2` the ids in flight),
/// to know whether a claim that found nothing could find more further on.
pub(crate) fn postgres_window_rows(table: &str, window: usize) -> String {
    let table = ident::quoted(DatabaseBackend::Postgres, table);
    format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE next_attempt_at <= $1 \
         AND {IN_FLIGHT_IDS} ORDER BY id LIMIT {window}) w"
    )
}

/// SQLite: `$1` now, `$2` the ids in flight and `$3` the keys in flight (JSON arrays);
/// `window` rows are walked.
pub(crate) fn sqlite(table: &str, window: usize, batch: usize) -> String {
    let table = ident::quoted(DatabaseBackend::Sqlite, table);
    let quoted: Vec<String> = CLAIMED
        .iter()
        .map(|c| ident::quoted(DatabaseBackend::Sqlite, c))
        .collect();
    let (columns, x_columns) = (quoted.join(", "), format!("x.{}", quoted.join(", x.")));
    let free = free_key(&table, "message_key", "SELECT value FROM json_each($3)");
    format!(
        "WITH w AS (SELECT {columns} FROM {table} WHERE next_attempt_at <= $1 \
           AND id NOT IN (SELECT value FROM json_each($2)) ORDER BY id LIMIT {window}), \
         c AS (SELECT COUNT(*) AS scanned FROM w) \
         SELECT c.scanned, {x_columns} \
         FROM c LEFT JOIN (SELECT * FROM w WHERE {free} ORDER BY id LIMIT {batch}) x ON 1 = 1 \
         ORDER BY x.id"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_streams_the_window_in_id_order() {
        let sql = postgres("t", true, 2000, 500);
        assert!(
            sql.starts_with(
                "SELECT w.\"id\", w.\"message_id\", w.\"message_key\", w.\"bucket\", w.\"payload\""
            ),
            "{sql}"
        );
        assert!(
            sql.contains("FROM \"t\" WHERE next_attempt_at <= $1 AND id NOT IN (SELECT unnest(string_to_array($2, ',')::bigint[])) ORDER BY id LIMIT 2000) w"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE w.bucket = ANY(ARRAY(SELECT bucket FROM kafka_orm_relay_leases WHERE outbox = $4 AND owner = $5"),
            "{sql}"
        );
        assert!(
            sql.contains("(w.message_key IS NULL OR (w.message_key NOT IN (SELECT json_array_elements_text($3::json)) AND w.message_key NOT IN (SELECT message_key FROM \"t\" WHERE attempts > 0"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY w.id LIMIT 500"), "{sql}");
        let single = postgres("t", false, 500, 100);
        assert!(
            !single.contains("$4") && !single.contains("kafka_orm_relay_leases"),
            "{single}"
        );
        let count = postgres_window_rows("t", 2000);
        assert!(count.starts_with("SELECT COUNT(*) FROM (SELECT 1 FROM \"t\" WHERE next_attempt_at <= $1 AND id NOT IN"), "{count}");
    }

    #[test]
    fn sqlite_walks_the_primary_key_past_what_is_in_flight() {
        let sql = sqlite("t", 2000, 500);
        assert!(
            sql.contains("id NOT IN (SELECT value FROM json_each($2)) ORDER BY id LIMIT 2000"),
            "{sql}"
        );
        assert!(
            sql.contains("message_key NOT IN (SELECT value FROM json_each($3))"),
            "{sql}"
        );
        assert!(sql.contains("ORDER BY id LIMIT 500) x ON 1 = 1"), "{sql}");
    }
}
