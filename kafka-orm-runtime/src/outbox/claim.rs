//! Claiming the next batch of an outbox table: the lowest due ids in buckets this instance
//! holds (same epochs), past the rows in flight, of keys neither in flight nor backing off.
//! The statements are in `claim_sql.rs`; how far they look is a [`ClaimWindow`].

use sea_orm::{DatabaseBackend, Value};

use super::inflight::InFlight;
use super::lease::LeaseView;
use super::table::Table;
use crate::error::{Error, Result};
use crate::util::now_ms;

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

/// How many rows a claim walks, in batches (pure), spread over the share of buckets this
/// instance holds (with a quarter of them, four times as many rows are walked). When the
/// window was full but yielded less than a batch (rows of other instances' buckets or of
/// blocked keys in front), it widens, up to 64 batches: at once when nothing at all was
/// claimable, else from the next claim on; a full batch shrinks it back towards its floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimWindow {
    factor: usize,
    floor: usize,
}

impl Default for ClaimWindow {
    fn default() -> Self {
        ClaimWindow::new(4)
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
    /// A window of `floor` batches (at least 1), never shrinking below it.
    pub fn new(floor: usize) -> Self {
        let floor = floor.clamp(1, 64);
        ClaimWindow {
            factor: floor,
            floor,
        }
    }

    /// The window at its floor.
    pub fn floor(&self) -> ClaimWindow {
        ClaimWindow::new(self.floor)
    }

    /// Rows to walk for a batch of `batch`.
    pub fn rows(&self, batch: usize) -> usize {
        batch * self.factor
    }

    /// Rows to walk for a batch of `batch` holding `held` of `buckets` buckets: the window
    /// spread over the share held, at most 64 batches.
    pub fn rows_for_share(&self, batch: usize, held: usize, buckets: usize) -> usize {
        let spread = (self.rows(batch) * buckets).div_ceil(held.clamp(1, buckets.max(1)));
        spread.min(batch * 64).max(1)
    }

    /// Adapts to a claim that got `claimed` rows out of `scanned` walked in all.
    #[cfg(test)]
    pub fn after(&mut self, batch: usize, claimed: usize, scanned: usize) -> AfterClaim {
        let full = scanned >= self.rows(batch);
        self.after_full(batch, claimed, full)
    }

    /// Whether the window is as wide as it gets (64 batches).
    pub fn at_cap(&self) -> bool {
        self.factor >= 64
    }

    /// Adapts to a claim that got `claimed` rows; `full`: a window was walked to its end.
    pub fn after_full(&mut self, batch: usize, claimed: usize, full: bool) -> AfterClaim {
        if claimed < batch && full && self.factor < 64 {
            self.factor *= 2;
            if claimed == 0 {
                return AfterClaim::Again;
            }
        } else if claimed == batch && self.factor > self.floor {
            self.factor /= 2;
        }
        AfterClaim::Done
    }

    /// Adapts to a claim made beside a producing batch: a short one says nothing (its keys
    /// were held), so it only shrinks after a full batch.
    pub fn after_speculative(&mut self, batch: usize, claimed: usize) {
        if claimed == batch && self.factor > self.floor {
            self.factor /= 2;
        }
    }
}

/// What one claim got.
pub(crate) struct Claimed {
    pub rows: Vec<Row>,
    /// The window was full, so rows may be waiting beyond it.
    pub window_full: bool,
}

impl Table {
    /// Claims the next batch under `view`, leaving alone what `flight` holds;
    /// `speculative`: a batch is producing beside it.
    pub(crate) async fn claim(
        &self,
        window: &mut ClaimWindow,
        view: &LeaseView,
        flight: &InFlight,
        speculative: bool,
    ) -> Result<Claimed> {
        loop {
            // Beside a producing batch the window stays at its floor: such a claim is often
            // short (its keys are held) and must not walk far for it.
            let rows = if speculative {
                self.window_rows(&window.floor(), view)
            } else {
                self.window_rows(window, view)
            };
            let (claimed, scanned) = self.claim_in(rows, view, flight).await?;
            if speculative {
                window.after_speculative(self.batch_size, claimed.len());
                let window_full = claimed.len() == self.batch_size;
                return Ok(Claimed {
                    rows: claimed,
                    window_full,
                });
            }
            // A short claim on PostgreSQL widens the window while it can (the claim stops at
            // its batch anyway, so a wider window costs nothing where rows are few): below
            // the cap it counts as full; one that found nothing asks whether it was.
            let window_full = match scanned {
                Some(scanned) => scanned >= rows,
                None if claimed.is_empty() => self.window_full(rows, flight).await?,
                None => !window.at_cap(),
            };
            let after = window.after_full(self.batch_size, claimed.len(), window_full);
            if after == AfterClaim::Done {
                return Ok(Claimed {
                    rows: claimed,
                    window_full,
                });
            }
        }
    }

    /// Rows a claim walks: on PostgreSQL the window spread over the share of buckets held.
    fn window_rows(&self, window: &ClaimWindow, view: &LeaseView) -> usize {
        if self.backend != DatabaseBackend::Postgres {
            return window.rows(self.batch_size);
        }
        let all = super::BUCKETS as usize;
        let held = if self.leased { view.owned.len() } else { all };
        window.rows_for_share(self.batch_size, held, all)
    }

    /// One claim walking at most `rows` rows; on SQLite also how many the window held (the
    /// left join keeps that count when nothing is claimable).
    async fn claim_in(
        &self,
        rows: usize,
        view: &LeaseView,
        flight: &InFlight,
    ) -> Result<(Vec<Row>, Option<usize>)> {
        let postgres = self.backend == DatabaseBackend::Postgres;
        let (sql, ids) = if postgres {
            let sql = super::claim_sql::postgres(self.table, self.leased, rows, self.batch_size);
            (sql, flight.ids_csv())
        } else {
            (
                super::claim_sql::sqlite(self.table, rows, self.batch_size),
                flight.ids_json(),
            )
        };
        let mut values: Vec<Value> = vec![now_ms().into(), ids.into(), flight.keys_json().into()];
        if self.leased {
            let room = (self.timing.message_timeout + self.timing.margin).as_millis() as i64;
            values.push(self.table.into());
            values.push(self.me.clone().into());
            values.push(room.into());
            values.push(view.tokens().into());
        }
        let found = self
            .query(&sql, values)
            .await
            .map_err(|e| Error::db(self.context("claiming rows"), e))?;
        // SQLite's rows start with the window's count.
        let first = usize::from(!postgres);
        let scanned = (!postgres).then(|| {
            found
                .first()
                .and_then(|r| r.try_get_by_index::<i64>(0).ok())
                .unwrap_or(0)
                .max(0) as usize
        });
        let mut claimed = Vec::with_capacity(found.len());
        for r in &found {
            if let Some(row) = read_row(r, first)
                .map_err(|e| Error::db(self.context("reading claimed rows"), e))?
            {
                claimed.push(row);
            }
        }
        Ok((claimed, scanned))
    }

    /// Whether a window of `rows` rows past what `flight` holds is full (PostgreSQL).
    async fn window_full(&self, rows: usize, flight: &InFlight) -> Result<bool> {
        let sql = super::claim_sql::postgres_window_rows(self.table, rows);
        let values: Vec<Value> = vec![now_ms().into(), flight.ids_csv().into()];
        let found = self
            .query(&sql, values)
            .await
            .map_err(|e| Error::db(self.context("counting claimable rows"), e))?;
        let n = found
            .first()
            .and_then(|r| r.try_get_by_index::<i64>(0).ok())
            .unwrap_or(0);
        Ok(n.max(0) as usize >= rows)
    }
}

/// A claimed row from columns `first..` of `r` (`None`: the left join's empty side).
fn read_row(
    r: &sea_orm::QueryResult,
    first: usize,
) -> std::result::Result<Option<Row>, sea_orm::DbErr> {
    let Some(id) = r.try_get_by_index::<Option<i64>>(first)? else {
        return Ok(None);
    };
    Ok(Some(Row {
        id,
        message_id: r.try_get_by_index(first + 1)?,
        key: r.try_get_by_index(first + 2)?,
        bucket: r.try_get_by_index(first + 3)?,
        payload: r.try_get_by_index(first + 4)?,
        headers: r.try_get_by_index(first + 5)?,
        attempts: r.try_get_by_index(first + 6)?,
    }))
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
        assert!(!w.at_cap());
        while w.after(1, 0, w.rows(1)) == AfterClaim::Again {}
        assert_eq!(w.rows(1), 64);
        assert!(w.at_cap());
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
    fn a_window_spreads_over_the_share_of_buckets_held() {
        let w = ClaimWindow::new(1);
        assert_eq!(w.rows_for_share(500, 64, 64), 500);
        assert_eq!(w.rows_for_share(500, 16, 64), 2000);
        assert_eq!(w.rows_for_share(500, 21, 64), 1524);
        assert_eq!(w.rows_for_share(500, 1, 64), 32_000, "at most 64 batches");
        assert_eq!(
            w.rows_for_share(500, 0, 64),
            32_000,
            "no buckets counts as one"
        );
        assert_eq!(ClaimWindow::new(2).rows_for_share(1, 64, 64), 2);
    }

    #[test]
    fn a_speculative_claim_never_widens_and_a_full_one_shrinks() {
        let mut w = ClaimWindow::new(2);
        w.after_speculative(10, 0);
        assert_eq!(w.rows(10), 20, "held keys are no reason to widen");
        assert_eq!(w.after_full(10, 0, true), AfterClaim::Again);
        assert_eq!(w.rows(10), 40);
        w.after_speculative(10, 10);
        assert_eq!(w.rows(10), 20);
        w.after_speculative(10, 10);
        assert_eq!(w.rows(10), 20, "never below the floor");
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
