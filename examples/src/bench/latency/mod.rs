//! `relay_latency`, `outbox_to_consumer_latency` and `end_to_end_latency`: a steady light
//! load (200 commits/s), one event per transaction, and how long each takes to get
//! through, on one clock (the machine's).
//!
//! Three outbox runs ([`outbox`]): with `LISTEN/NOTIFY` and the consuming services (a typed
//! consumer, an inbox handler in its own group) in this process beside the relay
//! (`NOTIFY`), the same with them in another process (`NOTIFY apart`, [`apart`]), and
//! polling only (`.listen(false)`, the default 500 ms poll interval, no consumers).
//! `relay_latency` is commit → the relay saw the broker's acknowledgement; the NOTIFY rows
//! carry `extra.breakdown` (where a batch's time went in the relay, per batch) and
//! `extra.notify_ms` (commit → a notification at a `LISTEN` of the bench's own). The
//! baselines ([`raw`]) run a raw rdkafka producer at the same rate and for as long.

mod apart;
mod outbox;
mod raw;
mod receiver;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

pub use apart::{CHILD_ENV, child_main};
use outbox::Consumers;

use crate::Config;
use crate::infra::{Infra, PARTITIONS, Result, summary};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};

/// Per-message latencies of one run, in milliseconds.
#[derive(Default)]
pub struct Samples {
    /// Raw: produce → ack. Outbox: commit → the relay saw the broker's ack.
    relay: Vec<f64>,
    /// Produce/commit → typed consumer.
    consumer: Vec<f64>,
    /// Produce/commit → consuming transaction committed (raw) / handler committed.
    end_to_end: Vec<f64>,
    /// Commit → the bench's own `LISTEN` got the notification (NOTIFY runs).
    notify: Vec<f64>,
    /// Where the relay's batches spent their time (NOTIFY runs).
    breakdown: Value,
}

/// (p50, p99, max).
type Stats = (f64, f64, f64);

fn pacer(rate: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

pub async fn run(config: &Config, infra: &Infra, progress: &Arc<Progress>) -> Result<Vec<Outcome>> {
    progress.phase("baseline: raw produce at a steady rate");
    let sc = infra.scenario("latency_raw").await?;
    let raw = raw::raw_run(config, &sc, progress).await;
    sc.cleanup().await;
    let mut raw = raw?;
    let mut runs = Vec::new();
    for consumers in [Consumers::InProcess, Consumers::Apart, Consumers::Polling] {
        progress.phase(format!("outbox, {}", consumers.label()));
        let name = format!("latency_{}", consumers.label().replace(' ', "_")).to_lowercase();
        // NOTIFY runs log their statements for the breakdown.
        let sc = infra
            .scenario_with(&name, consumers != Consumers::Polling)
            .await?;
        let run = outbox::outbox_run(config, &sc, consumers, progress).await;
        sc.cleanup().await;
        runs.push((consumers, run?));
    }
    // For a closer look: BENCH_LATENCY_SAMPLES=file.json dumps every sample, in commit order.
    if let Ok(path) = std::env::var("BENCH_LATENCY_SAMPLES") {
        let mut doc = json!({
            "raw": {"ack": raw.relay, "consumer": raw.consumer, "consumer_txn": raw.end_to_end},
        });
        for (c, s) in &runs {
            doc[c.label()] = json!({"relay": s.relay, "consumer": s.consumer,
                "handler": s.end_to_end, "notify": s.notify});
        }
        std::fs::write(&path, doc.to_string())?;
    }
    let commits = config.latency.as_secs() * config.latency_rate;
    let rows = Rows {
        config,
        params: Params {
            messages: commits,
            payload_bytes: config.payload_bytes,
            partitions: PARTITIONS,
            concurrency: 1,
        },
    };
    let raw_ack = summary(&mut raw.relay);
    let raw_consumer = summary(&mut raw.consumer);
    let raw_txn = summary(&mut raw.end_to_end);
    let mut out = Vec::new();
    for (consumers, mut s) in runs {
        let mode = consumers.label();
        let relay = summary(&mut s.relay);
        let mut extra = Vec::new();
        if consumers != Consumers::Polling {
            let notify = summary(&mut s.notify);
            extra.push(("breakdown", s.breakdown.clone()));
            extra.push((
                "notify_ms",
                json!({"p50": notify.0, "p99": notify.1, "max": notify.2}),
            ));
        }
        let goals = consumers != Consumers::Polling;
        out.extend(rows.relay(mode, relay, raw_ack, goals, &extra));
        if consumers == Consumers::Polling {
            continue;
        }
        let what = "commit returned -> typed consume() stream yielded the event";
        out.extend(rows.plain(
            "outbox_to_consumer_latency",
            mode,
            summary(&mut s.consumer),
            raw_consumer,
            "raw produce->consumer",
            what,
        ));
        let what =
            "commit in the producer -> the handler's transaction (inbox + SeaORM insert) committed";
        out.extend(rows.plain(
            "end_to_end_latency",
            mode,
            summary(&mut s.end_to_end),
            raw_txn,
            "raw produce->consumer txn",
            what,
        ));
    }
    Ok(out)
}

/// Builds the rows of one figure: p50, p99, max.
struct Rows<'a> {
    config: &'a Config,
    params: Params,
}

impl Rows<'_> {
    fn figure(&self, value: f64, base_name: String, baseline: f64, what: &str) -> Figure {
        Figure::new(value, "ms")
            .baseline(Baseline::new(base_name, baseline))
            .extra("rate_per_s", self.config.latency_rate)
            .extra("seconds", self.config.latency.as_secs())
            .extra("samples", self.params.messages)
            .extra("what", what)
    }

    fn plain(
        &self,
        name: &'static str,
        mode: &str,
        got: Stats,
        base: Stats,
        base_name: &str,
        what: &str,
    ) -> Vec<Outcome> {
        [
            ("p50", got.0, base.0),
            ("p99", got.1, base.1),
            ("max", got.2, base.2),
        ]
        .into_iter()
        .map(|(stat, value, baseline)| {
            let f = self.figure(value, format!("{base_name} {stat}"), baseline, what);
            Outcome::measured(name, self.params, f).variant(format!("{mode} {stat}"))
        })
        .collect()
    }

    /// `relay_latency` rows; with `goals`, p50 ≤ 1.5× and p99 ≤ 2× the raw baseline's (and
    /// the design's 5 / 25 ms).
    fn relay(
        &self,
        mode: &str,
        got: Stats,
        base: Stats,
        goals: bool,
        extra: &[(&str, Value)],
    ) -> Vec<Outcome> {
        let what = match mode {
            "polling" => "as NOTIFY, with .listen(false) and the default 500 ms poll interval",
            _ => "commit returned -> the relay saw the broker's ack (relay.stats().acknowledged)",
        };
        let stats = [
            ("p50", got.0, base.0, 1.5, 5.0),
            ("p99", got.1, base.1, 2.0, 25.0),
            ("max", got.2, base.2, 0.0, 0.0),
        ];
        stats
            .into_iter()
            .map(|(stat, value, baseline, times, limit)| {
                let mut f = self.figure(value, format!("raw produce->ack {stat}"), baseline, what);
                if goals && times > 0.0 {
                    f = f
                        .goal(
                            format!("{stat} <= {times} x raw"),
                            value <= times * baseline,
                        )
                        .goal(format!("{stat} <= {limit} ms"), value <= limit);
                }
                if stat == "p50" {
                    for (k, v) in extra {
                        f = f.extra(k, v.clone());
                    }
                }
                Outcome::measured("relay_latency", self.params, f).variant(format!("{mode} {stat}"))
            })
            .collect()
    }
}
