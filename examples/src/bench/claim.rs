//! `raw_claim`: the baseline of the relay's database side. N rows shaped like outbox rows
//! are inserted (not timed), then claimed and deleted in batches of 500 — one transaction
//! per batch: `SELECT .. ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED`, `DELETE .. WHERE
//! id IN (..)`, commit — the least a relay must do per batch on PostgreSQL.

use std::sync::Arc;
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};

use crate::Config;
use crate::infra::{Infra, Result};
use crate::produce::Msg;
use crate::report::{Figure, Outcome, Params, Progress};

/// Rows per claim, as the relay's default batch size.
pub const BATCH: usize = 500;

const TABLE: &str = "raw_outbox";

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    let sc = infra.scenario("raw_claim").await?;
    let result = measure(config, &sc.db, progress).await;
    sc.cleanup().await;
    let (rate, secs, cpu) = result?;
    let params = Params {
        messages: config.messages,
        payload_bytes: config.payload_bytes,
        partitions: 0,
        concurrency: 1,
    };
    Ok(vec![Outcome::measured(
        "raw_claim",
        params,
        Figure::new(rate, "rows/s")
            .extra("seconds", secs)
            .extra("machine_cpu_busy", cpu)
            .extra("batch", BATCH as u64)
            .extra(
                "what",
                "per batch of 500: BEGIN; SELECT .. ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED; \
                 DELETE .. WHERE id IN (..); COMMIT",
            ),
    )])
}

async fn measure(
    config: &Config,
    db: &DatabaseConnection,
    progress: &Progress,
) -> Result<(f64, f64, serde_json::Value)> {
    db.execute_unprepared(&format!(
        "CREATE TABLE {TABLE} (
            id BIGSERIAL PRIMARY KEY,
            message_id TEXT NOT NULL,
            message_key TEXT NULL,
            bucket INTEGER NOT NULL,
            payload BYTEA NOT NULL,
            headers BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT NOT NULL DEFAULT 0,
            last_error TEXT NULL
        );
        CREATE INDEX {TABLE}_bucket_id ON {TABLE} (bucket, id)"
    ))
    .await?;

    let warm = (config.messages / 20).max(BATCH as u64);
    progress.phase(format!("warm-up: {warm} rows"));
    insert_rows(db, 0, warm, config.payload_bytes, None).await?;
    claim_all(db, warm, None).await?;

    progress.phase(format!("inserting {} rows (not timed)", config.messages));
    insert_rows(
        db,
        warm,
        config.messages,
        config.payload_bytes,
        Some(progress),
    )
    .await?;
    progress.phase(format!("claiming + deleting {} rows", config.messages));
    let (t0, cpu) = (Instant::now(), crate::cpu::CpuSample::now());
    claim_all(db, config.messages, Some(progress)).await?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((
        config.messages as f64 / secs,
        secs,
        crate::cpu::busy_extra(&cpu),
    ))
}

async fn insert_rows(
    db: &DatabaseConnection,
    from: u64,
    n: u64,
    payload_bytes: usize,
    progress: Option<&Progress>,
) -> Result<()> {
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(1_000);
        let mut sql = format!(
            "INSERT INTO {TABLE} (message_id, message_key, bucket, payload, headers, created_at) VALUES "
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk as usize * 6);
        for i in 0..chunk {
            let m = Msg::new(from + done + i, payload_bytes);
            let p = values.len();
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            ));
            values.push(m.id.into());
            values.push(m.key.into());
            values.push((((from + done + i) % 64) as i32).into());
            values.push(m.payload.into());
            values.push(Vec::<u8>::new().into());
            values.push(0i64.into());
        }
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
        done += chunk;
        if let Some(p) = progress {
            p.count(done, n);
        }
    }
    Ok(())
}

/// Claims and deletes batches until `n` rows are gone.
async fn claim_all(db: &DatabaseConnection, n: u64, progress: Option<&Progress>) -> Result<()> {
    let mut done = 0u64;
    while done < n {
        let txn = db.begin().await?;
        let rows = txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT id, message_id, message_key, payload, headers, attempts FROM {TABLE} \
                     ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED"
                ),
            ))
            .await?;
        if rows.is_empty() {
            return Err(format!("only {done} of {n} rows were there to claim").into());
        }
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get_by_index(0)?;
            let _message_id: String = r.try_get_by_index(1)?;
            let _key: Option<String> = r.try_get_by_index(2)?;
            let _payload: Vec<u8> = r.try_get_by_index(3)?;
            let _headers: Vec<u8> = r.try_get_by_index(4)?;
            ids.push(id.to_string());
        }
        txn.execute_unprepared(&format!(
            "DELETE FROM {TABLE} WHERE id IN ({})",
            ids.join(",")
        ))
        .await?;
        txn.commit().await?;
        done += rows.len() as u64;
        if let Some(p) = progress {
            p.count(done, n);
        }
    }
    Ok(())
}
