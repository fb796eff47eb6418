//! `peers` (`./scripts/bench --peers`): two other outbox relays on the same Kafka and
//! PostgreSQL, the same payloads (256 bytes) and the same 6-partition topic, measured the
//! way `relay_throughput` and `relay_latency` measure kafka-orm, and compared with this
//! run's kafka-orm figures (ratios ours / peer).
//!
//! - Watermill (Go, `bench/peers/watermill`): watermill-sql's publisher in the business
//!   transaction, watermill's forwarder, watermill-kafka's publisher.
//! - Debezium (Java, `bench/peers/debezium`): the embedded engine, PostgreSQL connector
//!   (pgoutput), outbox event router, an idempotent producer.
//!
//! Each peer is a program of its own, built by `scripts/peers build` (which
//! `scripts/bench --peers` runs) and named by `BENCH_PEER_WATERMILL` and
//! `BENCH_PEER_DEBEZIUM`; it gets a scenario's fresh database and topic, runs one
//! measurement, prints one JSON line and exits. Its stderr goes to
//! `target/bench/peers/<peer>-<what>.log`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::infra::{Infra, PARTITIONS, Result, Scenario};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};
use crate::{Baselines, Config};

/// Watermill's SQL subscriber batch size (`SubscribeBatchSize`): the best of 100 (its
/// default), 1,000 and 5,000 in a sweep (bench/peers/README.md).
const WATERMILL_BATCH: u64 = 1_000;

/// One peer program.
struct Peer {
    name: &'static str,
    /// Shown in the table.
    label: &'static str,
    env: &'static str,
}

const WATERMILL: Peer = Peer {
    name: "watermill",
    label: "Watermill",
    env: "BENCH_PEER_WATERMILL",
};

const DEBEZIUM: Peer = Peer {
    name: "debezium",
    label: "Debezium",
    env: "BENCH_PEER_DEBEZIUM",
};

impl Peer {
    fn program(&self) -> std::result::Result<PathBuf, String> {
        match std::env::var(self.env) {
            Ok(p) if !p.trim().is_empty() => {
                let p = PathBuf::from(p);
                if p.is_file() {
                    Ok(p)
                } else {
                    Err(format!("{} = {} is not a file", self.env, p.display()))
                }
            }
            _ => Err(format!(
                "{} is not set: run ./scripts/bench --peers, which builds the peers",
                self.env
            )),
        }
    }

    /// Runs one measurement on a fresh scenario (database + topic) and returns its JSON.
    async fn measure(
        &self,
        infra: &Infra,
        what: &str,
        args: &[String],
        limit: Duration,
        progress: &Progress,
    ) -> Result<Value> {
        let program = self.program()?;
        let sc = infra
            .scenario(&format!("peer_{}_{what}", self.name))
            .await?;
        progress.phase(format!("{}: {what}", self.label));
        let result = self.run(&program, &sc, what, args, limit).await;
        drop_slots(&sc).await;
        sc.cleanup().await;
        result
    }

    async fn run(
        &self,
        program: &PathBuf,
        sc: &Scenario,
        what: &str,
        args: &[String],
        limit: Duration,
    ) -> Result<Value> {
        let dir = crate::workspace_root().join("target/bench/peers");
        std::fs::create_dir_all(&dir)?;
        let log_path = dir.join(format!("{}-{what}.log", self.name));
        let log = std::fs::File::create(&log_path)?;
        let mut child = tokio::process::Command::new(program)
            .args(["--bootstrap", &sc.infra.bootstrap])
            .args(["--database-url", &database_url(sc)])
            .args(["--topic", &sc.topic()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        let run = async {
            let mut out = String::new();
            stdout.read_to_string(&mut out).await?;
            let status = child.wait().await?;
            Result::Ok((status, out))
        };
        let (status, out) = match tokio::time::timeout(limit, run).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(format!(
                    "{} {what} did not finish within {limit:?} (log: {})",
                    self.label,
                    log_path.display()
                )
                .into());
            }
        };
        let line = out.lines().rev().find(|l| l.trim_start().starts_with('{'));
        match (status.success(), line) {
            (true, Some(line)) => Ok(serde_json::from_str(line)?),
            _ => {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "{} {what} failed ({status}): {} (log: {})",
                    self.label,
                    tail.join(" | "),
                    log_path.display()
                )
                .into())
            }
        }
    }
}

/// The scenario's own database, as a URL the peers take.
fn database_url(sc: &Scenario) -> String {
    let url = &sc.infra.database_url;
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    format!("{base}/{}", sc.db_name)
}

/// A replication slot left in the scenario's database would hold WAL on the shared server
/// forever and keep the database from being dropped: the Debezium peer drops its own, this
/// is the safety net.
async fn drop_slots(sc: &Scenario) {
    let sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
               WHERE database = $1 AND NOT active";
    let stmt =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [sc.db_name.clone().into()]);
    if let Err(e) = sc.db.execute_raw(stmt).await {
        eprintln!(
            "bench: could not drop replication slots of {}: {e}",
            sc.db_name
        );
    }
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("the peer's JSON has no number `{key}`: {v}").into())
}

/// kafka-orm's figures of this run that the peers are compared with.
#[derive(Debug, Default, Clone)]
pub struct Ours {
    /// relay_throughput, msg/s, by instance count.
    pub relay: Vec<(usize, f64)>,
    /// relay_latency with NOTIFY, the consumers in the relay's process: p50 and p99 (ms).
    pub latency: Option<(f64, f64)>,
    /// relay_latency with NOTIFY, the consumers in another process (`NOTIFY apart`).
    pub latency_apart: Option<(f64, f64)>,
}

impl Ours {
    /// Keeps relay_latency's row `variant` (`NOTIFY p50`, `NOTIFY apart p99`, ..).
    pub fn note_latency(&mut self, variant: &str, ms: f64) {
        let (slot, stat) = match variant.strip_prefix("NOTIFY apart ") {
            Some(stat) => (&mut self.latency_apart, stat),
            None => match variant.strip_prefix("NOTIFY ") {
                Some(stat) => (&mut self.latency, stat),
                None => return,
            },
        };
        let (p50, p99) = slot.unwrap_or((f64::NAN, f64::NAN));
        *slot = match stat {
            "p50" => Some((ms, p99)),
            "p99" => Some((p50, ms)),
            _ => *slot,
        };
    }

    fn relay(&self, instances: usize) -> Option<f64> {
        self.relay
            .iter()
            .find(|(n, _)| *n == instances)
            .map(|(_, v)| *v)
    }
}

/// Where a row goes: scenario name, variant, size and unit.
struct Row {
    name: &'static str,
    variant: String,
    params: Params,
    unit: &'static str,
}

/// One row: kafka-orm's figure against the peer's (or the peer's alone when this run has
/// no kafka-orm figure to compare).
fn compare(
    row: Row,
    ours: Option<f64>,
    peer: (String, f64),
    goal: Option<(String, bool)>,
    extra: &Value,
) -> Outcome {
    let Row {
        name,
        variant,
        params,
        unit,
    } = row;
    let (peer_name, peer) = peer;
    let mut f = match ours {
        Some(v) => Figure::new(v, unit).baseline(Baseline::new(peer_name, peer)),
        None => Figure::new(peer, unit).extra(
            "note",
            "no kafka-orm figure in this run: the figure is the peer's own",
        ),
    };
    if let (Some(_), Some((text, met))) = (ours, goal) {
        f = f.goal(text, met);
    }
    f = f.extra("peer", extra.clone());
    Outcome::measured(name, params, f).variant(variant)
}

pub async fn run(
    config: &Config,
    infra: &Infra,
    baselines: &Baselines,
    progress: &Arc<Progress>,
) -> Result<Vec<Outcome>> {
    let ours = &baselines.ours;
    let limit = if config.quick {
        Duration::from_secs(150)
    } else {
        Duration::from_secs(15 * 60)
    };
    let tp_params = Params {
        messages: config.messages,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency: 1,
    };
    let commits = config.latency.as_secs() * config.latency_rate;
    let lat_params = Params {
        messages: commits,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency: 1,
    };
    // `--name value` pairs: the mode's own, then the peer's settings.
    let args = |mode: &[(&str, String)], extra: &[(&str, String)]| {
        let payload = [("payload", config.payload_bytes.to_string())];
        let mut args = Vec::new();
        for (k, v) in payload.iter().chain(mode).chain(extra) {
            args.push(format!("--{k}"));
            args.push(v.clone());
        }
        args
    };
    let tp_mode = [
        ("mode", "throughput".to_string()),
        ("messages", config.messages.to_string()),
    ];
    let lat_mode = [
        ("mode", "latency".to_string()),
        ("rate", config.latency_rate.to_string()),
        ("seconds", config.latency.as_secs().to_string()),
    ];
    let tp_args = |extra: &[(&str, String)]| args(&tp_mode, extra);
    let lat_args = |extra: &[(&str, String)]| args(&lat_mode, extra);

    let mut out = Vec::new();
    let failed = |name: &'static str, params: Params, variant: &str, e: crate::infra::Error| {
        Outcome::failed(name, params, e.to_string()).variant(variant.to_string())
    };

    // Throughput.
    let wm_batch = WATERMILL_BATCH.to_string();
    match WATERMILL
        .measure(
            infra,
            "throughput",
            &tp_args(&[("batch", wm_batch.clone()), ("poll", "1ms".into())]),
            limit,
            progress,
        )
        .await
    {
        Ok(v) => {
            let peer = num(&v, "msg_per_s")?;
            let ours1 = ours.relay(1);
            out.push(compare(
                Row {
                    name: "peer_throughput",
                    variant: "1 relay vs Watermill".into(),
                    params: tp_params,
                    unit: "msg/s",
                },
                ours1,
                (
                    format!("Watermill forwarder (batch {WATERMILL_BATCH}, poll 1 ms)"),
                    peer,
                ),
                ours1.map(|o| (">= 10x Watermill".to_string(), o >= 10.0 * peer)),
                &v,
            ));
        }
        Err(e) => out.push(failed(
            "peer_throughput",
            tp_params,
            "1 relay vs Watermill",
            e,
        )),
    }
    match DEBEZIUM
        .measure(infra, "throughput", &tp_args(&[]), limit, progress)
        .await
    {
        Ok(v) => {
            let peer = num(&v, "msg_per_s")?;
            for (instances, factor) in [(1usize, 2.0), (4, 4.0)] {
                let ours_n = ours.relay(instances);
                let relays = if instances == 1 {
                    "1 relay".to_string()
                } else {
                    format!("{instances} relays")
                };
                out.push(compare(
                    Row {
                        name: "peer_throughput",
                        variant: format!("{relays} vs Debezium"),
                        params: Params {
                            concurrency: instances,
                            ..tp_params
                        },
                        unit: "msg/s",
                    },
                    ours_n,
                    ("Debezium outbox router, 1 task".to_string(), peer),
                    ours_n.map(|o| (format!(">= {factor}x Debezium"), o >= factor * peer)),
                    &v,
                ));
            }
        }
        Err(e) => out.push(failed(
            "peer_throughput",
            tp_params,
            "1 relay vs Debezium",
            e,
        )),
    }

    // Latency: commit -> broker ack at the same rate, against kafka-orm's NOTIFY run.
    let latency = |label: String, v: Value| -> Result<Vec<Outcome>> {
        let stats = [("p50", num(&v, "p50_ms")?), ("p99", num(&v, "p99_ms")?)];
        let mut rows = Vec::new();
        // Ours with the consumers in the relay's process, and in another one (the peers
        // run none).
        for (what, figures) in [
            ("NOTIFY", ours.latency),
            ("NOTIFY apart", ours.latency_apart),
        ] {
            for (i, (stat, peer)) in stats.iter().enumerate() {
                let ours_stat = figures.map(|(p50, p99)| if i == 0 { p50 } else { p99 });
                rows.push(compare(
                    Row {
                        name: "peer_latency",
                        variant: format!("{what} {stat} vs {label}"),
                        params: lat_params,
                        unit: "ms",
                    },
                    ours_stat,
                    (format!("{label} {stat}"), *peer),
                    ours_stat.map(|o| (format!("{stat} below {label}'s"), o < *peer)),
                    &v,
                ));
            }
        }
        Ok(rows)
    };
    for poll in ["1ms", "10ms"] {
        let label = format!("Watermill poll {}", poll.replace("ms", " ms"));
        match WATERMILL
            .measure(
                infra,
                &format!("latency_{poll}"),
                &lat_args(&[("batch", wm_batch.clone()), ("poll", poll.into())]),
                limit,
                progress,
            )
            .await
        {
            Ok(v) => out.extend(latency(label, v)?),
            Err(e) => out.push(failed("peer_latency", lat_params, &label, e)),
        }
    }
    match DEBEZIUM
        .measure(
            infra,
            "latency",
            &lat_args(&[("poll-interval-ms", "1".into())]),
            limit,
            progress,
        )
        .await
    {
        Ok(v) => out.extend(latency("Debezium poll 1 ms".into(), v)?),
        Err(e) => out.push(failed("peer_latency", lat_params, "Debezium", e)),
    }
    Ok(out)
}
