//! `relay_throughput`: N events published through the outbox, then relayed to Kafka by
//! 1, 2 and 4 relay instances.
//!
//! The instances are spawned first and their leases balanced; the N events are written
//! with `publish_all` in chunks of 5,000 inside ONE transaction, so they appear to the
//! relays all at once at commit. The clock runs from the commit until the instances'
//! `delivered` counters add up to N (each counts a row once the broker acknowledged it and
//! the row is deleted).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_orm::OutboxRelay;
use sea_orm::TransactionTrait;

use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};
use crate::{Baselines, Config};

/// Events per `publish_all` call.
const CHUNK: usize = 5_000;

pub async fn run(
    config: &Config,
    infra: &Infra,
    baselines: &Baselines,
    progress: &Arc<Progress>,
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for &instances in &config.relay_instances {
        let variant = if instances == 1 {
            "1 instance".to_string()
        } else {
            format!("{instances} instances")
        };
        let params = Params {
            messages: config.messages,
            payload_bytes: config.payload_bytes,
            partitions: PARTITIONS,
            concurrency: instances,
        };
        progress.phase(format!("{variant}: setting up"));
        let measured = match infra
            .scenario_with(&format!("relay{instances}"), true)
            .await
        {
            Ok(sc) => {
                let r = measure(config, &sc, instances, &variant, progress).await;
                sc.cleanup().await;
                r
            }
            Err(e) => Err(e),
        };
        let outcome = match measured {
            Ok(m) => Outcome::measured("relay_throughput", params, figure(&m, baselines)),
            Err(e) => Outcome::failed("relay_throughput", params, e.to_string()),
        };
        out.push(outcome.variant(variant));
    }
    Ok(out)
}

struct Measured {
    rate: f64,
    secs: f64,
    per_instance: Vec<u64>,
    failed_attempts: u64,
    breakdown: serde_json::Value,
}

fn figure(m: &Measured, baselines: &Baselines) -> Figure {
    let mut f = Figure::new(m.rate, "msg/s")
        .extra("seconds", m.secs)
        .extra("delivered_per_instance", m.per_instance.clone())
        .extra("failed_attempts", m.failed_attempts)
        .extra("breakdown", m.breakdown.clone())
        .extra(
            "what",
            "commit of N outboxed events in one transaction -> sum of relay.stats().delivered == N",
        );
    if let (Some(p), Some(c)) = (baselines.raw_produce, baselines.raw_claim) {
        let serial = 1.0 / (1.0 / p + 1.0 / c);
        let min = p.min(c);
        f = f
            .baseline(Baseline::new("serial limit", serial))
            .also(Baseline::new("min(raw_produce, raw_claim)", min))
            .goal(">= 0.8 x serial limit", m.rate >= 0.8 * serial);
    }
    f.goal(">= 20k msg/s", m.rate >= 20_000.0)
}

async fn measure(
    config: &Config,
    sc: &Scenario,
    instances: usize,
    variant: &str,
    progress: &Progress,
) -> Result<Measured> {
    let mut relays = Vec::with_capacity(instances);
    for i in 0..instances {
        let relay = sc
            .orm
            .outbox_relay()
            .instance_id(format!("bench-relay-{i}"));
        relays.push(relay.spawn().await?);
    }
    let result = async {
        progress.phase(format!("{variant}: waiting for the leases to balance"));
        balanced(&relays).await?;

        let warm = (config.messages / 20).max(1_000);
        progress.phase(format!("{variant}: warm-up, {warm} events"));
        publish_and_commit(sc, 0, warm, config.payload_bytes).await?;
        wait_delivered(&relays, warm, None).await?;

        progress.phase(format!(
            "{variant}: publishing {} events in one transaction (not timed)",
            config.messages
        ));
        let events: Vec<BenchEvent> = (warm..warm + config.messages)
            .map(|i| BenchEvent::new(i, config.payload_bytes))
            .collect();
        let txn = sc.db.begin().await?;
        for chunk in events.chunks(CHUNK) {
            sc.orm
                .topic::<BenchEvent>()
                .publish_all(&txn, chunk)
                .await?;
        }
        drop(events);
        progress.phase(format!("{variant}: relaying {} events", config.messages));
        crate::breakdown::reset();
        txn.commit().await?;
        let (t0, cpu) = (Instant::now(), crate::cpu::CpuSample::now());
        wait_delivered(&relays, warm + config.messages, Some((warm, progress))).await?;
        let secs = t0.elapsed().as_secs_f64();
        let mut breakdown = crate::breakdown::with_wall(crate::breakdown::take(), secs);
        if let Some(b) = breakdown.as_object_mut() {
            b.insert("machine_cpu_busy".into(), crate::cpu::busy_extra(&cpu));
        }
        let stats: Vec<_> = relays.iter().map(|r| r.stats()).collect();
        Ok(Measured {
            rate: config.messages as f64 / secs,
            secs,
            per_instance: stats.iter().map(|s| s.delivered).collect(),
            failed_attempts: stats.iter().map(|s| s.failed).sum(),
            breakdown,
        })
    }
    .await;
    for r in relays {
        r.shutdown().await?;
    }
    result
}

/// Publishes events `from..from + n` in one transaction and commits.
pub async fn publish_and_commit(
    sc: &Scenario,
    from: u64,
    n: u64,
    payload_bytes: usize,
) -> Result<()> {
    let events: Vec<BenchEvent> = (from..from + n)
        .map(|i| BenchEvent::new(i, payload_bytes))
        .collect();
    let txn = sc.db.begin().await?;
    for chunk in events.chunks(CHUNK) {
        sc.orm
            .topic::<BenchEvent>()
            .publish_all(&txn, chunk)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Waits until the instances share the 64 buckets fairly (as the outbox tests do).
pub async fn balanced(relays: &[OutboxRelay]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned: Vec<usize> = relays.iter().map(|r| r.stats().owned_buckets).collect();
        let fair = 64usize.div_ceil(relays.len());
        if owned.iter().sum::<usize>() == 64 && owned.iter().all(|o| *o > 0 && *o <= fair) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("relay leases did not balance within 60 s: {owned:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the relays delivered `total` rows together; fails when nothing moves for
/// 60 s. `progress` counts from its `from`.
pub async fn wait_delivered(
    relays: &[OutboxRelay],
    total: u64,
    progress: Option<(u64, &Progress)>,
) -> Result<()> {
    let mut last = 0;
    let mut last_move = Instant::now();
    loop {
        let done: u64 = relays.iter().map(|r| r.stats().delivered).sum();
        if done >= total {
            return Ok(());
        }
        if done != last {
            last = done;
            last_move = Instant::now();
        } else if last_move.elapsed() > Duration::from_secs(60) {
            let errors: Vec<String> = relays.iter().filter_map(|r| r.stats().last_error).collect();
            return Err(format!(
                "the relays stopped at {done} of {total} delivered rows; last errors: {errors:?}"
            )
            .into());
        }
        if let Some((from, p)) = progress {
            p.count(done.saturating_sub(from), total - from);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
