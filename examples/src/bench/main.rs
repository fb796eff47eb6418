//! kafka-orm's benchmark: every figure beside a raw baseline measured in the same run.
//!
//! ```text
//! ./scripts/bench [--quick] [--peers] [--scenario NAME]... [--messages N] [--out FILE]
//! ```
//!
//! `scripts/bench` starts real Kafka and PostgreSQL, builds this program in release mode
//! and runs it; run by hand it needs `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL`. It prints
//! a table and writes `target/bench/latest.json`. Scenarios (see README.md, "Benchmarks"):
//!
//! | scenario | figure | baseline |
//! | --- | --- | --- |
//! | `raw_produce` | msg/s, rdkafka idempotent producer | (is a baseline) |
//! | `raw_claim` | rows/s, `FOR UPDATE SKIP LOCKED` claim + delete | (is a baseline) |
//! | `relay_throughput` | msg/s through outbox + relay, 1/2/4 instances | serial limit of the two above |
//! | `publish_overhead` | µs per transaction with `publish` | same transaction, two plain rows |
//! | `relay_latency` | commit → relay saw the broker's ack; NOTIFY (consumers in this process, and apart) and polling | raw produce → ack |
//! | `outbox_to_consumer_latency` | commit → typed consumer received | raw produce → consumer |
//! | `end_to_end_latency` | commit → the consumer's handler (inbox) committed | raw produce → consumer's txn |
//! | `inbox_throughput` | msg/s through `handler(..)` with the inbox, batch and per message | `inbox_txn_limit`: the same transactions, same concurrency, no Kafka |
//! | `relay_backlog` | msg/s and peak RSS of a relay process draining 10k, 100k, 1M rows | the smallest backlog |
//! | `relay_fanout` | one relay process over 50 outbox topics: msg/s, min/max per topic | `relay_backlog`, one topic |
//! | `handler_lag` | msg/s and peak RSS of a handler process catching up 100k messages | in-process `inbox_throughput` |
//! | `inbox_prefilled` | handler process msg/s with 10M rows in the inbox table | the same on an empty inbox |
//! | `macro_cost` | debug build time and expansion lines of 50 `#[derive(Topic)]` | serde derives only |
//! | `peers` (`--peers`) | kafka-orm's relay throughput and commit → ack latency | Watermill's forwarder, Debezium's outbox router, same run |

mod breakdown;
mod business;
mod children;
mod claim;
mod cpu;
mod events;
mod inbox;
mod inbox_limit;
mod infra;
mod latency;
mod macro_cost;
mod overhead;
mod peers;
mod produce;
mod relay;
mod report;
mod scale_handler;
mod scale_relay;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use report::{Outcome, Params, Progress};
use serde_json::json;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    /// Messages of the throughput scenarios.
    pub messages: u64,
    /// Payload size of every message.
    pub payload_bytes: usize,
    /// Messages of the per-message transaction baseline (slower: fewer).
    pub per_message: u64,
    /// Transactions of each variant of `publish_overhead`.
    pub txns: u64,
    /// Length of each latency run, and its commit rate.
    pub latency: Duration,
    pub latency_rate: u64,
    /// Relay instance counts of `relay_throughput`.
    pub relay_instances: Vec<usize>,
    /// Structs in the generated crates of `macro_cost`.
    pub macro_structs: usize,
    /// Outbox rows before the relay process starts, per run of `relay_backlog`
    /// (multiples of 1,000, or at most 1,000).
    pub backlogs: Vec<u64>,
    /// Rows per topic of `relay_fanout` (50 topics; a multiple of 1,000, or at most 1,000).
    pub fanout_rows: u64,
    /// Messages waiting before the handler process of `handler_lag` starts.
    pub lag: u64,
    /// Rows in the inbox table before `inbox_prefilled` measures.
    pub inbox_prefill: u64,
    /// Where the JSON goes.
    pub out: PathBuf,
}

impl Config {
    fn full() -> Self {
        Config {
            quick: false,
            messages: 100_000,
            payload_bytes: 256,
            per_message: 10_000,
            txns: 2_000,
            latency: Duration::from_secs(30),
            latency_rate: 200,
            relay_instances: vec![1, 2, 4],
            macro_structs: 50,
            backlogs: vec![10_000, 100_000, 1_000_000],
            fanout_rows: 10_000,
            lag: 100_000,
            inbox_prefill: 10_000_000,
            out: workspace_root().join("target/bench/latest.json"),
        }
    }

    fn quick() -> Self {
        Config {
            quick: true,
            messages: 5_000,
            per_message: 500,
            txns: 200,
            latency: Duration::from_secs(5),
            macro_structs: 50,
            backlogs: vec![1_000, 5_000, 20_000],
            fanout_rows: 200,
            lag: 2_000,
            inbox_prefill: 100_000,
            ..Config::full()
        }
    }

    /// How long one scenario may take before it is reported as failed.
    fn time_limit(&self) -> Duration {
        if self.quick {
            Duration::from_secs(180)
        } else {
            Duration::from_secs(30 * 60)
        }
    }
}

/// The workspace this program was built in (for `target/bench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The scenarios, in run order, with the row names each one reports.
const SCENARIOS: &[(&str, &[&str])] = &[
    ("raw_produce", &["raw_produce"]),
    ("raw_claim", &["raw_claim"]),
    ("relay_throughput", &["relay_throughput"]),
    ("publish_overhead", &["publish_overhead"]),
    (
        "relay_latency",
        &[
            "relay_latency",
            "outbox_to_consumer_latency",
            "end_to_end_latency",
        ],
    ),
    (
        "inbox_throughput",
        &[
            "inbox_throughput",
            "inbox_txn_limit",
            "raw_consume_batch_insert",
            "raw_per_message_txn",
        ],
    ),
    // Measured child processes (bench-child, bench-fanout): throughput and peak RSS.
    ("relay_backlog", &["relay_backlog", "relay_peak_rss"]),
    ("relay_fanout", &["relay_fanout"]),
    ("handler_lag", &["handler_lag", "handler_peak_rss"]),
    ("inbox_prefilled", &["inbox_prefilled"]),
    ("macro_cost", &["macro_cost", "macro_expansion"]),
    // Only with --peers (or --scenario peers): needs the peers built by scripts/peers.
    ("peers", &["peer_throughput", "peer_latency"]),
];

/// Scenario groups a plain run leaves out.
const OPT_IN: &[&str] = &["peers"];

fn usage() -> ! {
    let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
    eprintln!(
        "usage: bench [--quick] [--peers] [--scenario NAME]... [--messages N] [--out FILE]\n\
         scenarios: {}\n\
         needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (./scripts/bench sets them)",
        names.join(", ")
    );
    std::process::exit(2)
}

struct Args {
    config: Config,
    selected: Vec<&'static str>,
}

fn parse_args() -> Args {
    let mut quick = false;
    let mut peers = false;
    let mut wanted: Vec<String> = Vec::new();
    let mut messages: Option<u64> = None;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |flag: &str| {
            inline.clone().or_else(|| args.next()).unwrap_or_else(|| {
                eprintln!("bench: `{flag}` needs a value");
                usage()
            })
        };
        match flag.as_str() {
            "--quick" => quick = true,
            "--peers" => peers = true,
            "--scenario" => wanted.extend(value("--scenario").split(',').map(str::to_string)),
            "--messages" => {
                let v = value("--messages");
                messages = Some(v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                    eprintln!("bench: `--messages` must be a positive number, got `{v}`");
                    usage()
                }));
            }
            "--out" => out = Some(PathBuf::from(value("--out"))),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("bench: unknown argument `{other}`");
                usage()
            }
        }
    }
    let mut config = if quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(n) = messages {
        config.messages = n;
        config.per_message = (n / 10).max(100);
    }
    if let Some(out) = out {
        config.out = out;
    }
    let mut selected: Vec<&'static str> = Vec::new();
    for w in &wanted {
        let Some((group, _)) = SCENARIOS
            .iter()
            .find(|(g, rows)| *g == w.as_str() || rows.contains(&w.as_str()))
        else {
            eprintln!("bench: unknown scenario `{w}`");
            usage()
        };
        selected.push(group);
    }
    if selected.is_empty() {
        selected = SCENARIOS
            .iter()
            .map(|(g, _)| *g)
            .filter(|g| !OPT_IN.contains(g))
            .collect();
    }
    if peers && !selected.contains(&"peers") {
        selected.push("peers");
    }
    // The peers are compared with kafka-orm's relay figures of the same run.
    if selected.contains(&"peers") {
        for dep in ["relay_throughput", "relay_latency"] {
            if !selected.contains(&dep) {
                selected.push(dep);
            }
        }
    }
    // The fanout is compared with one topic's backlog of the same run.
    if selected.contains(&"relay_fanout") && !selected.contains(&"relay_backlog") {
        selected.push("relay_backlog");
    }
    // The relay's baselines are measured in the same run.
    if selected.contains(&"relay_throughput") {
        for dep in ["raw_claim", "raw_produce"] {
            if !selected.contains(&dep) {
                selected.push(dep);
            }
        }
    }
    let selected = SCENARIOS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| selected.contains(g))
        .collect();
    Args { config, selected }
}

/// Baselines that later scenarios compare with.
#[derive(Debug, Default, Clone)]
pub struct Baselines {
    pub raw_produce: Option<f64>,
    pub raw_claim: Option<f64>,
    /// kafka-orm's relay figures, for the peers.
    pub ours: peers::Ours,
    /// `relay_backlog`: (rows, msg/s).
    pub relay_backlog: Vec<(u64, f64)>,
    /// `inbox_throughput`: (variant, msg/s).
    pub inbox: Vec<(String, f64)>,
}

#[tokio::main]
async fn main() {
    // This program again, as the consuming services of a latency run (latency/apart.rs).
    if std::env::var_os(latency::CHILD_ENV).is_some() {
        latency::child_main().await;
        return;
    }
    let Args { config, selected } = parse_args();
    breakdown::install();
    let started = Instant::now();
    // Taken before the run: the tree may move while it runs.
    let commit = git_commit();
    let infra = match infra::Infra::from_env() {
        Ok(i) => Some(i),
        Err(e) if selected.iter().all(|s| *s == "macro_cost") => {
            let _ = e;
            None
        }
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let progress = Arc::new(Progress::new());
    eprintln!(
        "bench: {} mode, {} scenario(s), {cores} cores, {} messages of {} bytes; results in {}",
        if config.quick { "quick" } else { "full" },
        selected.len(),
        config.messages,
        config.payload_bytes,
        config.out.display()
    );

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut baselines = Baselines::default();
    for (i, name) in selected.iter().enumerate() {
        progress.step(format!("[{}/{}] {name}", i + 1, selected.len()));
        let t0 = Instant::now();
        let run = run_scenario(name, &config, infra.as_ref(), &baselines, &progress);
        // The peers are five runs of programs of their own, each with its own limit.
        let limit = if *name == "peers" {
            config.time_limit() * 5
        } else {
            config.time_limit()
        };
        let mut rows = match tokio::time::timeout(limit, run).await {
            Ok(rows) => rows,
            Err(_) => vec![Outcome::failed(
                name,
                Params::default(),
                format!("did not finish within {limit:?}"),
            )],
        };
        let secs = t0.elapsed().as_secs_f64();
        for r in &mut rows {
            r.seconds = secs;
            match (r.name, r.figure()) {
                ("raw_produce", Some(f)) => baselines.raw_produce = Some(f.value),
                ("raw_claim", Some(f)) => baselines.raw_claim = Some(f.value),
                ("relay_throughput", Some(f)) => {
                    baselines.ours.relay.push((r.params.concurrency, f.value));
                }
                ("relay_backlog", Some(f)) => {
                    baselines.relay_backlog.push((r.params.messages, f.value));
                }
                ("inbox_throughput", Some(f)) => {
                    let variant = r.variant.clone().unwrap_or_default();
                    baselines.inbox.push((variant, f.value));
                }
                ("relay_latency", Some(f)) => baselines
                    .ours
                    .note_latency(r.variant.as_deref().unwrap_or(""), f.value),
                _ => {}
            }
        }
        progress.phase(format!("done in {secs:.1}s"));
        progress.done();
        outcomes.extend(rows);
    }

    let wall = started.elapsed().as_secs_f64();
    println!();
    print!("{}", report::table(&outcomes));
    println!("wall time {wall:.1}s");

    let (date, time) = report::utc_now();
    let doc = json!({
        "date": date,
        "time": time,
        "mode": if config.quick { "quick" } else { "full" },
        "cores": cores,
        "git_commit": commit,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "wall_seconds": report::round(wall, 1),
        "scenarios": outcomes.iter().map(|o| o.to_json(cores)).collect::<Vec<_>>(),
    });
    if let Some(dir) = config.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&doc).expect("JSON from plain values");
    if let Err(e) = std::fs::write(&config.out, text + "\n") {
        eprintln!("bench: cannot write {}: {e}", config.out.display());
        std::process::exit(1);
    }
    eprintln!("bench: wrote {}", config.out.display());
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.result, report::Result::Failed(_)))
        .count();
    if failed > 0 {
        eprintln!("bench: {failed} scenario(s) failed");
        std::process::exit(1);
    }
}

async fn run_scenario(
    name: &'static str,
    config: &Config,
    infra: Option<&infra::Infra>,
    baselines: &Baselines,
    progress: &Arc<Progress>,
) -> Vec<Outcome> {
    let Some(infra) = infra else {
        return match name {
            "macro_cost" => macro_cost::run(config, progress).await,
            _ => vec![Outcome::failed(
                name,
                Params::default(),
                "no infrastructure",
            )],
        };
    };
    let result = match name {
        "raw_produce" => produce::run(config, infra, progress).await,
        "raw_claim" => claim::run(config, infra, progress).await,
        "relay_throughput" => relay::run(config, infra, baselines, progress).await,
        "publish_overhead" => overhead::run(config, infra, progress).await,
        "relay_latency" => latency::run(config, infra, progress).await,
        "inbox_throughput" => inbox::run(config, infra, progress).await,
        "relay_backlog" => scale_relay::backlog(config, infra, progress).await,
        "relay_fanout" => scale_relay::fanout(config, infra, baselines, progress).await,
        "handler_lag" => scale_handler::lag(config, infra, baselines, progress).await,
        "inbox_prefilled" => scale_handler::prefilled(config, infra, progress).await,
        "macro_cost" => return macro_cost::run(config, progress).await,
        "peers" => peers::run(config, infra, baselines, progress).await,
        other => Err(format!("unknown scenario {other}").into()),
    };
    result.unwrap_or_else(|e| vec![Outcome::failed(name, Params::default(), e.to_string())])
}

/// The commit the figures were taken at, with `-dirty` when tracked files differ from it.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
