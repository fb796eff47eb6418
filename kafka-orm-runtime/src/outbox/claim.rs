//! Claiming the next batch of an outbox table: the lowest due ids, in buckets this
//! instance holds (same epochs), of keys with no row backing off.
//!
//! The inner query walks the primary key in id order for a bounded window, whatever the
//! planner believes of the filters (with a plain `ORDER BY id LIMIT` and filters whose
//! selectivity it cannot know, PostgreSQL chose a sequential scan and a sort of the whole
//! table: 130 ms per batch at 100k rows). The outer query filters that window. The
//! window's size is a [`ClaimWindow`].

use sea_orm::Value;

use super::lease::{LEASE_TABLE, LeaseView, PG_NOW_MS};
use super::table::Table;
use crate::error::{Error, Result};
use crate::ident;
use crate::tables::OUTBOX;
use crate::util::now_ms;

/// The columns a claim reads, in [`Row`]'s order.
const CLAIMED: [&str; 7] = OUTBOX.names([
    "id",
    "message_id",
    "message_key",
    "bucket",
    "payload",
    "headers",
    "attempts",
]);

/// One claimed row.
pub(crate) struct Row {
    pub id: i64,
    pub message_id: String,
    pub key: Option<String>,
    pub bucket: i32,
    pub payload: Vec<u8>,
    pub headers: Vec<u8>,
    pub attempts: i32,
}

/// How many rows a claim scans, in batches (pure). When the window was full but yielded
/// less than a batch (rows of other instances' buckets or of blocked keys in front), it
/// widens, up to 64 batches: at once when nothing at all was claimable, else from the
/// next claim on; a full batch shrinks it back towards 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimWindow {
    factor: usize,
}

impl Default for ClaimWindow {
    fn default() -> Self {
        ClaimWindow { factor: 4 }
    }
}

/// What to do after one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterClaim {
    /// Use what was claimed.
    Done,
    /// Nothing claimable in a full window: claim again at once, wider.
    Again,
}

impl ClaimWindow {
    /// Rows to scan for a batch of `batch`.
    pub fn rows(&self, batch: usize) -> usize {
        batch * self.factor
    }

    /// Adapts to a claim that got `claimed` rows out of `scanned` scanned.
    pub fn after(&mut self, batch: usize, claimed: usize, scanned: usize) -> AfterClaim {
        let full_window = scanned >= self.rows(batch);
        if claimed < batch && full_window && self.factor < 64 {
            self.factor *= 2;
            if claimed == 0 {
                return AfterClaim::Again;
            }
        } else if claimed == batch && self.factor > 4 {
            self.factor /= 2;
        }
        AfterClaim::Done
    }
}

impl Table {
    /// Claims the next batch under `view`.
    pub(crate) async fn claim(
        &self,
        window: &mut ClaimWindow,
        view: &LeaseView,
    ) -> Result<Vec<Row>> {
        loop {
            let (claimed, scanned) = self.claim_in(window.rows(self.batch_size), view).await?;
            if window.after(self.batch_size, claimed.len(), scanned) == AfterClaim::Done {
                return Ok(claimed);
            }
        }
    }

    /// One claim over the lowest `window` due rows; also returns how many rows the window
    /// held (the left join keeps that count when nothing is claimable).
    async fn claim_in(&self, window: usize, view: &LeaseView) -> Result<(Vec<Row>, usize)> {
        let sql = self.claim_sql(window);
        let now = now_ms();
        let mut values: Vec<Value> = vec![now.into()];
        if self.leased {
            let room = (self.timing.message_timeout + self.timing.margin).as_millis() as i64;
            values.push(self.table.into());
            values.push(self.me.clone().into());
            values.push(room.into());
            values.push(view.tokens().into());
        }
        let rows = self
            .query(&sql, values)
            .await
            .map_err(|e| Error::db(self.context("claiming rows"), e))?;
        let scanned = rows
            .first()
            .and_then(|r| r.try_get_by_index::<i64>(0).ok())
            .unwrap_or(0)
            .max(0) as usize;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let read = || -> std::result::Result<Option<Row>, sea_orm::DbErr> {
                let Some(id) = r.try_get_by_index::<Option<i64>>(1)? else {
                    return Ok(None);
                };
                Ok(Some(Row {
                    id,
                    message_id: r.try_get_by_index(2)?,
                    key: r.try_get_by_index(3)?,
                    bucket: r.try_get_by_index(4)?,
                    payload: r.try_get_by_index(5)?,
                    headers: r.try_get_by_index(6)?,
                    attempts: r.try_get_by_index(7)?,
                }))
            };
            if let Some(row) =
                read().map_err(|e| Error::db(self.context("reading claimed rows"), e))?
            {
                claimed.push(row);
            }
        }
        Ok((claimed, scanned))
    }

    /// The claim over `window` rows: `$1` is now, `$2`..`$5` the lease (table, owner, room
    /// for a batch, fencing tokens) when leased; numbered parameters, which SQLite takes
    /// too.
    fn claim_sql(&self, window: usize) -> String {
        let table = ident::quoted(self.backend, self.table);
        let batch = self.batch_size;
        // The lease must still be ours, in the same tenure, with time left for a batch.
        let owner_filter = if self.leased {
            format!(
                "bucket = ANY(ARRAY(SELECT bucket FROM {LEASE_TABLE} WHERE outbox = $2 AND owner = $3 \
                 AND expires_at > {PG_NOW_MS} + $4 AND (bucket || ':' || epoch) = ANY(string_to_array($5, ',')))) AND "
            )
        } else {
            String::new()
        };
        let quoted: Vec<String> = CLAIMED
            .iter()
            .map(|c| ident::quoted(self.backend, c))
            .collect();
        let (columns, x_columns) = (quoted.join(", "), format!("x.{}", quoted.join(", x.")));
        format!(
            "WITH w AS (SELECT {columns} FROM {table} WHERE next_attempt_at <= $1 ORDER BY id LIMIT {window}), \
             c AS (SELECT COUNT(*) AS scanned FROM w) \
             SELECT c.scanned, {x_columns} \
             FROM c LEFT JOIN (SELECT * FROM w WHERE {owner_filter}(message_key IS NULL OR message_key NOT IN \
                  (SELECT message_key FROM {table} WHERE attempts > 0 AND next_attempt_at > $1 AND message_key IS NOT NULL)) \
                ORDER BY id LIMIT {batch}) x ON 1 = 1 \
             ORDER BY x.id"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_without_a_full_batch_widens() {
        let mut w = ClaimWindow::default();
        assert_eq!(w.rows(500), 2000);
        assert_eq!(w.after(500, 100, 2000), AfterClaim::Done);
        assert_eq!(w.rows(500), 4000);
    }

    #[test]
    fn nothing_claimable_in_a_full_window_claims_again_at_once() {
        let mut w = ClaimWindow::default();
        assert_eq!(w.after(10, 0, 40), AfterClaim::Again);
        assert_eq!(w.after(10, 0, 80), AfterClaim::Again);
        assert_eq!(w.rows(10), 160);
    }

    #[test]
    fn widening_stops_at_64_batches() {
        let mut w = ClaimWindow::default();
        while w.after(1, 0, w.rows(1)) == AfterClaim::Again {}
        assert_eq!(w.rows(1), 64);
        assert_eq!(
            w.after(1, 0, 64),
            AfterClaim::Done,
            "no endless loop at the cap"
        );
    }

    #[test]
    fn a_short_table_is_not_a_reason_to_widen() {
        let mut w = ClaimWindow::default();
        assert_eq!(w.after(500, 0, 30), AfterClaim::Done);
        assert_eq!(w.rows(500), 2000);
    }

    #[test]
    fn full_batches_shrink_the_window_back() {
        let mut w = ClaimWindow::default();
        w.after(10, 1, 40);
        w.after(10, 1, 80);
        assert_eq!(w.rows(10), 160);
        w.after(10, 10, 160);
        assert_eq!(w.rows(10), 80);
        w.after(10, 10, 80);
        w.after(10, 10, 40);
        assert_eq!(w.rows(10), 40, "never below 4 batches");
    }
}
