//! The statements of the [`LeaseKeeper`] on the lease and member tables (PostgreSQL,
//! hand-written for `FOR UPDATE SKIP LOCKED`, `RETURNING` and the database clock; their
//! tables are described in `tables/described.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

use super::lease::{
    LEASE_TABLE, LeaseKeeper, LeaseView, MEMBER_TABLE, PG_NOW_MS, SharePlan, share_plan,
};
use crate::error::{Error, Result};

impl LeaseKeeper {
    /// A statement of this file: PostgreSQL, numbered parameters.
    fn sql(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
    }

    fn ctx(&self) -> String {
        format!("maintaining relay leases (outbox table `{}`)", self.table)
    }

    async fn pairs(&self, sql: &str, values: Vec<Value>) -> Result<BTreeMap<i32, i64>> {
        let rows = self
            .db
            .query_all_raw(self.sql(sql, values))
            .await
            .map_err(|e| Error::db(self.ctx(), e))?;
        rows.iter()
            .map(|r| Ok((r.try_get_by_index::<i32>(0)?, r.try_get_by_index::<i64>(1)?)))
            .collect::<std::result::Result<_, sea_orm::DbErr>>()
            .map_err(|e| Error::db(self.ctx(), e))
    }

    async fn exec(&self, sql: &str, values: Vec<Value>) -> Result<u64> {
        self.db
            .execute_raw(self.sql(sql, values))
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| Error::db(self.ctx(), e))
    }

    /// One renewal round: renew what is held (same epochs only), heartbeat, then give
    /// back above the fair share or take free, expired or own-name buckets up to it.
    pub(super) async fn round(&self, sent: Instant) -> Result<LeaseView> {
        let mut owned = self.renew().await?;
        let members = self.heartbeat().await?;
        let valid_until = self.timing.valid_until(sent);
        match share_plan(owned.len(), members) {
            SharePlan::Keep => {}
            SharePlan::Release(n) => self.release(&mut owned, n, valid_until).await?,
            SharePlan::Acquire(n) => {
                let got = self.acquire(&owned, n, valid_until).await?;
                owned.extend(got);
            }
        }
        Ok(LeaseView { owned, valid_until })
    }

    /// Renews the buckets held in this tenure (same epochs); returns those still held.
    async fn renew(&self) -> Result<BTreeMap<i32, i64>> {
        let held = self.view.borrow().tokens();
        if held.is_empty() {
            return Ok(BTreeMap::new());
        }
        let renew = format!(
            "UPDATE {LEASE_TABLE} SET expires_at = {PG_NOW_MS} + $1 \
             WHERE outbox = $2 AND owner = $3 AND expires_at > {PG_NOW_MS} \
             AND (bucket || ':' || epoch) = ANY(string_to_array($4, ',')) \
             RETURNING bucket, epoch"
        );
        let values = vec![
            self.ttl_ms().into(),
            self.table.into(),
            self.me.clone().into(),
            held.into(),
        ];
        self.pairs(&renew, values).await
    }

    /// Announces this instance; returns how many are live (at least one).
    async fn heartbeat(&self) -> Result<usize> {
        let heartbeat = format!(
            "INSERT INTO {MEMBER_TABLE} (outbox, owner, expires_at) VALUES ($1, $2, {PG_NOW_MS} + $3) \
             ON CONFLICT (outbox, owner) DO UPDATE SET expires_at = EXCLUDED.expires_at"
        );
        let values = vec![
            self.table.into(),
            self.me.clone().into(),
            self.ttl_ms().into(),
        ];
        self.exec(&heartbeat, values).await?;
        let members = format!(
            "SELECT COUNT(*) FROM {MEMBER_TABLE} WHERE outbox = $1 AND expires_at > {PG_NOW_MS}"
        );
        let members = self
            .db
            .query_one_raw(self.sql(&members, vec![self.table.into()]))
            .await
            .map_err(|e| Error::db(self.ctx(), e))?
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()
            .map_err(|e| Error::db(self.ctx(), e))?
            .unwrap_or(1);
        Ok(members.max(1) as usize)
    }

    /// Gives back `n` of `owned` (the highest buckets): stops using them at once, and
    /// releases them once no batch holds them.
    async fn release(
        &self,
        owned: &mut BTreeMap<i32, i64>,
        n: usize,
        valid_until: Instant,
    ) -> Result<()> {
        let give_back: Vec<i32> = owned.keys().rev().take(n).copied().collect();
        give_back.iter().for_each(|b| {
            owned.remove(b);
        });
        self.view.send_replace(LeaseView {
            owned: owned.clone(),
            valid_until,
        });
        let _guard = self.batch_lock.write().await;
        let list = give_back
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let release = format!(
            "UPDATE {LEASE_TABLE} SET owner = NULL, expires_at = 0 \
             WHERE outbox = $1 AND owner = $2 AND bucket = ANY(string_to_array($3, ',')::int[])"
        );
        self.exec(
            &release,
            vec![self.table.into(), self.me.clone().into(), list.into()],
        )
        .await?;
        Ok(())
    }

    /// Takes up to `n` free, expired or (holding the name's lock) own-name buckets not in
    /// `owned`, each in a new epoch; returns them.
    async fn acquire(
        &self,
        owned: &BTreeMap<i32, i64>,
        n: usize,
        valid_until: Instant,
    ) -> Result<BTreeMap<i32, i64>> {
        let reclaim = if *self.name_locked.borrow() {
            "OR owner = $1"
        } else {
            "OR (FALSE AND owner = $1)"
        };
        let tokens = LeaseView {
            owned: owned.clone(),
            valid_until,
        }
        .tokens();
        let acquire = format!(
            "UPDATE {LEASE_TABLE} SET owner = $1, epoch = epoch + 1, expires_at = {PG_NOW_MS} + $2 \
             WHERE outbox = $3 AND bucket IN (SELECT bucket FROM {LEASE_TABLE} \
               WHERE outbox = $3 AND (owner IS NULL OR expires_at <= {PG_NOW_MS} {reclaim}) \
               AND NOT ((bucket || ':' || epoch) = ANY(string_to_array($4, ','))) \
               ORDER BY (owner IS NOT DISTINCT FROM $1) DESC, bucket LIMIT $5 FOR UPDATE SKIP LOCKED) \
             RETURNING bucket, epoch"
        );
        let values = vec![
            self.me.clone().into(),
            self.ttl_ms().into(),
            self.table.into(),
            tokens.into(),
            (n as i64).into(),
        ];
        self.pairs(&acquire, values).await
    }

    /// The lease TTL in milliseconds, as the statements take it.
    fn ttl_ms(&self) -> i64 {
        self.timing.ttl.as_millis() as i64
    }

    pub(super) async fn release_all(&self) -> Result<()> {
        let me = self.me.clone();
        self.exec(
            &format!(
                "UPDATE {LEASE_TABLE} SET owner = NULL, expires_at = 0 WHERE outbox = $1 AND owner = $2"
            ),
            vec![self.table.into(), me.clone().into()],
        )
        .await?;
        self.exec(
            &format!("DELETE FROM {MEMBER_TABLE} WHERE outbox = $1 AND owner = $2"),
            vec![self.table.into(), me.into()],
        )
        .await?;
        Ok(())
    }
}
