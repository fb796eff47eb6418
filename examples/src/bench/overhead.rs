//! `publish_overhead`: what `publish` adds to a user's transaction.
//!
//! Sequential transactions, each `BEGIN; INSERT business row; <second write>; COMMIT`,
//! where the second write is `publish(event)` or, for the baseline, a plain insert of a
//! row carrying the same payload. The two variants alternate in blocks of 50 so that
//! drift (autovacuum, checkpoints) hits both alike. Figure: mean time per transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use crate::Config;
use crate::infra::{BenchEvent, Infra, Result, Scenario};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};

const BLOCK: u64 = 50;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Publish,
    Plain,
}

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    let sc = infra.scenario("publish_overhead").await?;
    let result = measure(config, &sc, progress).await;
    sc.cleanup().await;
    let (publish, plain) = result?;
    let per_txn = |d: Duration| d.as_secs_f64() * 1e6 / config.txns as f64;
    let (publish_us, plain_us) = (per_txn(publish), per_txn(plain));
    let params = Params {
        messages: config.txns,
        payload_bytes: config.payload_bytes,
        partitions: 0,
        concurrency: 1,
    };
    let ratio = publish_us / plain_us;
    Ok(vec![Outcome::measured(
        "publish_overhead",
        params,
        Figure::new(publish_us, "us/txn")
            .baseline(Baseline::new("two plain rows", plain_us))
            .goal("time ratio <= 1.3", ratio <= 1.3)
            .extra("publish_txn_per_s", 1e6 / publish_us)
            .extra("plain_txn_per_s", 1e6 / plain_us)
            .extra(
                "what",
                "sequential BEGIN; INSERT order; publish(event) | INSERT audit row; COMMIT",
            ),
    )])
}

async fn measure(
    config: &Config,
    sc: &Scenario,
    progress: &Progress,
) -> Result<(Duration, Duration)> {
    sc.db
        .execute_unprepared(
            "CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, amount BIGINT NOT NULL);
             CREATE TABLE bench_audit (id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL, \
               message_key TEXT NOT NULL, payload BYTEA NOT NULL, created_at BIGINT NOT NULL)",
        )
        .await?;
    let mut id = 0u64;
    progress.phase("warm-up");
    for v in [Variant::Publish, Variant::Plain] {
        for _ in 0..(config.txns / 10).max(BLOCK) {
            txn(sc, v, id, config.payload_bytes).await?;
            id += 1;
        }
    }
    progress.phase(format!("{} transactions of each kind", config.txns));
    let (mut publish, mut plain) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < config.txns {
        let n = (config.txns - done).min(BLOCK);
        for v in [Variant::Publish, Variant::Plain] {
            let t0 = Instant::now();
            for _ in 0..n {
                txn(sc, v, id, config.payload_bytes).await?;
                id += 1;
            }
            let spent = t0.elapsed();
            match v {
                Variant::Publish => publish += spent,
                Variant::Plain => plain += spent,
            }
        }
        done += n;
        progress.count(done, config.txns);
    }
    Ok((publish, plain))
}

async fn txn(sc: &Scenario, variant: Variant, id: u64, payload_bytes: usize) -> Result<()> {
    let event = BenchEvent::new(id, payload_bytes);
    let txn = sc.db.begin().await?;
    insert_order(&txn, id, &event).await?;
    match variant {
        Variant::Publish => {
            sc.orm.topic::<BenchEvent>().publish(&txn, &event).await?;
        }
        Variant::Plain => {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO bench_audit (order_id, message_key, payload, created_at) VALUES ($1, $2, $3, $4)",
                [
                    Value::from(id as i64),
                    event.key.clone().into(),
                    event.payload().into(),
                    event.sent_at_us.into(),
                ],
            ))
            .await?;
        }
    }
    txn.commit().await?;
    Ok(())
}

async fn insert_order<C: ConnectionTrait>(conn: &C, id: u64, e: &BenchEvent) -> Result<()> {
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO bench_orders (id, customer, amount) VALUES ($1, $2, $3)",
        [Value::from(id as i64), e.key.clone().into(), e.seq.into()],
    ))
    .await?;
    Ok(())
}
