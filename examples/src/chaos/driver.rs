//! The driver: sets up a run (its own database, topics, processes), injects the seeded
//! schedule of faults, waits for the pipeline to drain, runs the checker, measures the
//! recovery after each fault, prints the table and writes the JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kafka_orm::KafkaOrm;
use kafka_orm::deps::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use kafka_orm::deps::rdkafka::client::DefaultClientContext;
use kafka_orm::deps::rdkafka::consumer::{BaseConsumer, Consumer};
use kafka_orm::deps::rdkafka::message::{Headers as _, Message};
use kafka_orm::deps::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde_json::{Value, json};

use crate::check::{self, Figures};
use crate::common::{
    self, Env, POISON_OVERSIZE_OUTBOX, Result, Rng, TOPIC_MAX_MESSAGE_BYTES, bucket_of, now_ms,
    say, stmt,
};
use crate::events::ChaosEvent;
use crate::procs::Procs;

const PARTITIONS: i32 = 6;
const KEYS: u32 = 100;
const RELAYS: [&str; 2] = ["relay-1", "relay-2"];
const CONSUMERS: [&str; 2] = ["consumer-1", "consumer-2"];
const JOINER: &str = "consumer-3";
const BURST_KEYS: usize = 20;
const BURST_PER_KEY: i64 = 100;

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub quick: bool,
    pub seed: u64,
    pub events: Option<u64>,
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    seed: u64,
    events: u64,
    rounds: u32,
    /// The relays' producer `message.timeout.ms`: a third of the lease TTL, as kafka-orm
    /// sets it.
    message_timeout_ms: u64,
    lease_ttl_ms: u64,
    session_timeout_ms: u64,
    settle_max: Duration,
    drain_max: Duration,
    out: PathBuf,
    repo: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RelayKill,
    ConsumerKill,
    DlqKill,
    ConsumerJoin,
    ConsumerLeave,
    BrokerKill,
    BrokerFreeze,
    RelayFreeze,
    PgRestart,
    Poison,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RelayKill => "relay SIGKILL mid-batch + restart",
            Kind::ConsumerKill => "consumer SIGKILL + restart",
            Kind::DlqKill => "consumer SIGKILL right after a dead-letter + restart",
            Kind::ConsumerJoin => "consumer joins",
            Kind::ConsumerLeave => "consumer leaves (SIGTERM)",
            Kind::BrokerKill => "SIGKILL of the leading broker + restart",
            Kind::BrokerFreeze => "leading broker frozen (SIGSTOP) past the message timeout",
            Kind::RelayFreeze => "relay frozen (SIGSTOP) past its lease TTL",
            Kind::PgRestart => "PostgreSQL fast restart",
            Kind::Poison => "poison messages",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Kind::RelayKill => "relay_kill",
            Kind::ConsumerKill => "consumer_kill",
            Kind::DlqKill => "consumer_kill_after_dlq",
            Kind::ConsumerJoin => "consumer_join",
            Kind::ConsumerLeave => "consumer_leave",
            Kind::BrokerKill => "broker_kill",
            Kind::BrokerFreeze => "broker_freeze",
            Kind::RelayFreeze => "relay_freeze",
            Kind::PgRestart => "postgres_restart",
            Kind::Poison => "poison",
        }
    }
}

/// One step of the schedule, its random parameters drawn from the seed.
#[derive(Debug, Clone)]
struct Step {
    kind: Kind,
    gap_ms: u64,
    relay: usize,
    consumer: usize,
    delay_ms: u64,
    restart_ms: u64,
    down_ms: u64,
    freeze_ms: u64,
    /// Restart the killed process only after its lease TTL / session timeout (a dead
    /// instance, not a quick restart).
    late: bool,
    poison: [u32; 4],
}

impl Step {
    fn params(&self) -> Value {
        match self.kind {
            Kind::RelayKill => json!({
                "relay": RELAYS[self.relay], "burst": BURST_KEYS as i64 * BURST_PER_KEY,
                "kill_after_delivery_began_ms": self.delay_ms, "restart_after_ms": self.restart_ms,
                "late_restart": self.late }),
            Kind::RelayFreeze => json!({
                "relay": RELAYS[self.relay], "burst": BURST_KEYS as i64 * BURST_PER_KEY,
                "freeze_after_burst_ms": self.delay_ms, "freeze_ms": self.freeze_ms }),
            Kind::ConsumerKill => json!({
                "consumer": CONSUMERS[self.consumer], "restart_after_ms": self.restart_ms,
                "late_restart": self.late }),
            Kind::DlqKill => json!({ "restart_after_ms": self.restart_ms }),
            Kind::BrokerKill => json!({ "down_ms": self.down_ms }),
            Kind::BrokerFreeze => json!({ "freeze_ms": self.freeze_ms }),
            Kind::Poison => json!({
                "undecodable": self.poison[0], "rejected": self.poison[1],
                "oversize_outbox": self.poison[2], "oversize_direct": self.poison[3] }),
            _ => json!({}),
        }
    }

    /// Roughly how long the step takes, for the producer's rate.
    fn nominal_ms(&self) -> u64 {
        self.gap_ms
            + match self.kind {
                Kind::RelayKill => 5_000 + self.restart_ms,
                Kind::ConsumerKill | Kind::DlqKill => self.restart_ms + 10_000,
                Kind::ConsumerJoin | Kind::ConsumerLeave => 8_000,
                Kind::BrokerKill => self.down_ms + 15_000,
                Kind::BrokerFreeze | Kind::RelayFreeze => self.freeze_ms + 8_000,
                Kind::PgRestart => 8_000,
                Kind::Poison => 5_000,
            }
    }
}

fn schedule(cfg: &Config, rng: &mut Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    for round in 0..cfg.rounds {
        let mut kinds = vec![
            Kind::RelayKill,
            Kind::DlqKill,
            Kind::ConsumerJoin,
            Kind::ConsumerLeave,
            Kind::BrokerKill,
            Kind::BrokerFreeze,
            Kind::RelayFreeze,
            Kind::PgRestart,
            Kind::Poison,
        ];
        if !cfg.quick {
            // Dead instances that come back only after others had to take over: a
            // consumer, and a second relay kill.
            kinds.push(Kind::ConsumerKill);
            kinds.push(Kind::RelayKill);
        }
        rng.shuffle(&mut kinds);
        // A consumer joins before it leaves.
        let join = kinds.iter().position(|k| *k == Kind::ConsumerJoin);
        let leave = kinds.iter().position(|k| *k == Kind::ConsumerLeave);
        if let (Some(j), Some(l)) = (join, leave)
            && l < j
        {
            kinds.swap(j, l);
        }
        let _ = round;
        let mut seen: Vec<Kind> = Vec::new();
        for kind in kinds {
            // The plain consumer kill and a round's second relay kill restart late.
            let is_late = kind == Kind::ConsumerKill
                || (kind == Kind::RelayKill && seen.contains(&Kind::RelayKill));
            seen.push(kind);
            steps.push(Step {
                kind,
                gap_ms: rng.range(1_000, 3_000),
                relay: rng.below(RELAYS.len() as u64) as usize,
                consumer: rng.below(CONSUMERS.len() as u64) as usize,
                delay_ms: rng.range(0, 40),
                restart_ms: match (kind, is_late) {
                    (Kind::RelayKill, true) => cfg.lease_ttl_ms + rng.range(2_000, 4_000),
                    (Kind::ConsumerKill, true) => cfg.session_timeout_ms + rng.range(3_000, 6_000),
                    _ => rng.range(0, 1_500),
                },
                down_ms: rng.range(2_000, 5_000),
                // Past the relays' message timeout and past the lease TTL, so a relay
                // stuck on the frozen broker must let its buckets go.
                freeze_ms: match kind {
                    Kind::BrokerFreeze if cfg.quick => {
                        cfg.lease_ttl_ms.max(cfg.message_timeout_ms) + rng.range(2_000, 6_000)
                    }
                    // Full runs: long enough to see whether the stall follows the freeze.
                    Kind::BrokerFreeze => rng.range(15_000, 30_000),
                    Kind::RelayFreeze => cfg.lease_ttl_ms + rng.range(3_000, 6_000),
                    _ => 0,
                },
                late: is_late,
                poison: [rng.range(2, 4) as u32, rng.range(2, 4) as u32, 1, 1],
            });
        }
    }
    steps
}

/// How a recovery is measured.
#[derive(Debug, Clone)]
enum Scope {
    Buckets(Vec<i32>),
    Partitions(Vec<i32>),
    All,
    Process(String),
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// First applied row of each unit that the relay produced at or after `t_ref`.
    Delivery,
    /// First applied row of each unit at or after `t_ref`.
    Processing,
    /// Longest pause between applied rows of one partition in `[t_ref, t_ref + window)`.
    Stall,
    /// When the restarted process had its relay or handler running.
    ProcessUp,
}

#[derive(Debug, Clone)]
struct Measure {
    name: String,
    t_ref: i64,
    /// Measure from when this process (restarted at `t_ref`) had its relay or handler
    /// running, instead of from `t_ref`.
    from_process_up: Option<String>,
    scope: Scope,
    mode: Mode,
    window_ms: i64,
    target_ms: Option<i64>,
}

impl Measure {
    fn process_up(process: &str, restart: i64) -> Self {
        Measure {
            name: format!("{process} running again after its restart"),
            t_ref: restart,
            from_process_up: None,
            scope: Scope::Process(process.to_string()),
            mode: Mode::ProcessUp,
            window_ms: 120_000,
            target_ms: None,
        }
    }
}

#[derive(Debug, Clone)]
struct FaultRecord {
    index: usize,
    kind: Kind,
    params: Value,
    victim: String,
    times: BTreeMap<String, i64>,
    notes: Vec<String>,
    measures: Vec<Measure>,
    results: Vec<Value>,
}

struct Run {
    cfg: Config,
    env: Env,
    db: DatabaseConnection,
    orm: KafkaOrm,
    procs: Procs,
    rng: Rng,
    t0: i64,
    nodes: Vec<(i32, String)>,
    hash_ok: bool,
    unexpected: Vec<Value>,
    last_progress: Instant,
    /// When the producer was stopped (the end of the last fault's measurement window).
    t_stop: i64,
}

fn log_line(what: impl AsRef<str>) {
    say("chaos", what);
}

pub async fn run(args: RunArgs) -> Result<i32> {
    let started = Instant::now();
    let repo = std::env::var("CHAOS_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|_| common::default_dir().join("../.."));
    let dir = std::env::var("CHAOS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| common::default_dir());
    let lease_ttl_ms = std::env::var("CHAOS_LEASE_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(kafka_orm::defaults::LEASE_TTL.as_millis() as u64);
    let session_timeout_ms = std::env::var("CHAOS_SESSION_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(kafka_orm::defaults::SESSION_TIMEOUT.as_millis() as u64);
    let cfg = Config {
        quick: args.quick,
        seed: args.seed,
        events: args
            .events
            .unwrap_or(if args.quick { 20_000 } else { 100_000 }),
        rounds: if args.quick { 1 } else { 2 },
        message_timeout_ms: lease_ttl_ms / 3,
        lease_ttl_ms,
        session_timeout_ms,
        settle_max: Duration::from_millis(session_timeout_ms + 30_000),
        drain_max: Duration::from_secs(if args.quick { 90 } else { 300 }),
        out: args.out.clone().unwrap_or_else(|| dir.join("latest.json")),
        repo,
    };
    let admin_url = std::env::var("DATABASE_URL")
        .map_err(|_| "`DATABASE_URL` is not set: run ./scripts/chaos, which sets it")?;
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .map_err(|_| "`KAFKA_BOOTSTRAP_SERVERS` is not set: run ./scripts/chaos")?;
    let run_id = format!("{:x}{:04x}", now_ms() / 1000 % 0xff_ffff, cfg.seed % 0xffff);
    let namespace = format!("chaos.{run_id}.");
    let db_name = format!("chaos_{run_id}");
    let run_url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => return Err(format!("cannot derive a database URL from {admin_url}").into()),
    };
    let env = Env {
        bootstrap: bootstrap.clone(),
        database_url: run_url.clone(),
        namespace: namespace.clone(),
        dir: dir.clone(),
    };
    log_line(format!(
        "{} run, seed {}, ≥{} events, namespace {namespace}, database {db_name}",
        if cfg.quick { "quick" } else { "full" },
        cfg.seed,
        cfg.events
    ));

    // A database and topics of the run's own; earlier runs' are removed.
    let admin_db = common::connect(&admin_url, 2, Duration::from_secs(60)).await?;
    fresh_database(&admin_db, &db_name).await?;
    drop(admin_db);
    fresh_topics(&env).await?;
    let db = common::connect(&run_url, 8, Duration::from_secs(60)).await?;
    common::create_tables(&db).await?;
    let orm = common::build_orm(&env, &db).await?;

    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    let pids = run_dir.join("pids");
    let _ = std::fs::remove_file(&pids);
    let logs = dir.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    let child_env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS".to_string(), bootstrap.clone()),
        ("DATABASE_URL".to_string(), run_url.clone()),
        ("CHAOS_NAMESPACE".to_string(), namespace.clone()),
        ("CHAOS_DIR".to_string(), dir.display().to_string()),
    ];
    let exe = std::env::current_exe()?;
    let procs = Procs::new(exe, child_env, logs.clone(), pids);

    let mut rng = Rng::new(cfg.seed);
    let steps = schedule(&cfg, &mut rng);
    let nominal: u64 = steps.iter().map(|s| s.nominal_ms()).sum();
    let rate = (cfg.events as f64 / (nominal as f64 / 1000.0)).clamp(50.0, 1_500.0);
    log_line(format!(
        "schedule: {} faults, ~{}s; producer at {rate:.0} commits/s; logs in {}",
        steps.len(),
        nominal / 1000,
        logs.display()
    ));

    let mut run = Run {
        nodes: kafka_nodes(&cfg).await.unwrap_or_default(),
        cfg,
        env,
        db,
        orm,
        procs,
        rng,
        t0: now_ms(),
        hash_ok: true,
        unexpected: Vec::new(),
        last_progress: Instant::now(),
        t_stop: i64::MAX,
    };
    let outcome = tokio::select! {
        r = run.go(steps, rate) => r,
        _ = common::terminated() => Err("interrupted".into()),
    };
    // Whatever happened: nothing of ours keeps running, no broker stays frozen.
    run.resume_all_nodes().await;
    run.procs.stop_all(Duration::from_secs(20)).await;
    let (records, figures) = outcome?;
    let code = run.report(records, figures, started).await?;
    Ok(code)
}

impl Run {
    async fn go(&mut self, steps: Vec<Step>, rate: f64) -> Result<(Vec<FaultRecord>, Figures)> {
        let producer_args: Vec<String> = [
            "producer",
            "--rate",
            &format!("{rate:.1}"),
            "--keys",
            &KEYS.to_string(),
            "--tasks",
            "4",
            "--seed",
            &self.cfg.seed.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for r in RELAYS {
            self.procs.spawn(r, &["relay".into(), r.into()])?;
        }
        for c in CONSUMERS {
            self.procs.spawn(c, &["consumer".into(), c.into()])?;
        }
        self.procs.spawn("producer", &producer_args)?;
        self.t0 = now_ms();
        log_line(
            "started producer, relay-1, relay-2, consumer-1, consumer-2; waiting for every partition to flow",
        );
        if !self.settle(self.t0, Duration::from_secs(120)).await {
            return Err("the pipeline did not start: no applied row on every partition within 120 s (see the logs)".into());
        }
        self.check_hash().await;

        let mut records = Vec::new();
        let total = steps.len();
        for (i, step) in steps.into_iter().enumerate() {
            self.pause(Duration::from_millis(step.gap_ms)).await;
            log_line(format!("[{}/{}] {}", i + 1, total, step.kind.name()));
            let mut rec = FaultRecord {
                index: i + 1,
                kind: step.kind,
                params: step.params(),
                victim: String::new(),
                times: BTreeMap::new(),
                notes: Vec::new(),
                measures: Vec::new(),
                results: Vec::new(),
            };
            rec.times.insert("start".into(), now_ms());
            if let Err(e) = self.inject(&step, &mut rec).await {
                log_line(format!("  fault failed: {e}"));
                rec.notes
                    .push(format!("the fault could not be injected: {e}"));
            }
            let t_end = now_ms();
            rec.times.insert("end".into(), t_end);
            for n in &rec.notes {
                log_line(format!("  {n}"));
            }
            if !self.settle_step(&rec, t_end).await {
                let msg = format!(
                    "not recovered within {:?} after the fault (some partition or bucket of its measures did not resume)",
                    self.cfg.settle_max
                );
                log_line(format!("  {msg}"));
                rec.notes.push(msg);
            }
            records.push(rec);
        }

        // Enough events, then stop the producer and let everything drain.
        loop {
            let (committed, _, _) = self.progress().await;
            if committed >= self.cfg.events as i64 {
                break;
            }
            self.pause(Duration::from_millis(500)).await;
        }
        self.t_stop = now_ms();
        self.procs
            .terminate("producer", Duration::from_secs(20))
            .await;
        log_line("producer stopped; waiting for the outbox to drain and the consumers to catch up");
        let deadline = Instant::now() + self.cfg.drain_max;
        loop {
            let (committed, applied, outbox) = self.progress().await;
            let dlq_ok = self.dlq_complete().await;
            if committed >= 0 && applied >= committed && outbox == 0 && dlq_ok {
                break;
            }
            if Instant::now() > deadline {
                log_line(format!(
                    "drain: gave up after {:?} (committed {committed}, applied {applied}, outbox {outbox}, dlq complete {dlq_ok})",
                    self.cfg.drain_max
                ));
                break;
            }
            self.pause(Duration::from_millis(500)).await;
        }
        // A moment for last offsets and dead letters, then stop the services gracefully.
        self.pause(Duration::from_secs(2)).await;
        for name in self.procs.names() {
            self.procs.terminate(&name, Duration::from_secs(20)).await;
        }
        log_line("services stopped; checking");
        let figures = check::check(&self.env, &self.db).await?;
        let starts: Vec<i64> = records
            .iter()
            .map(|r| r.times.get("start").copied().unwrap_or(i64::MAX))
            .chain([self.t_stop])
            .collect();
        for (i, rec) in records.iter_mut().enumerate() {
            let cap = starts.get(i + 1).copied().unwrap_or(i64::MAX);
            for m in rec.measures.clone() {
                let v = self
                    .measure(&m, cap)
                    .await
                    .unwrap_or_else(|e| json!({ "name": m.name, "error": e.to_string() }));
                rec.results.push(v);
            }
        }
        Ok((records, figures))
    }

    async fn inject(&mut self, step: &Step, rec: &mut FaultRecord) -> Result<()> {
        match step.kind {
            Kind::RelayKill | Kind::RelayFreeze => {
                let victim = RELAYS[step.relay];
                rec.victim = victim.into();
                let buckets = self.owned_buckets(victim).await;
                rec.notes
                    .push(format!("{victim} owned {} buckets", buckets.len()));
                let burst = self.burst(rec.index, &buckets).await?;
                rec.times.insert("burst_committed".into(), now_ms());
                // Mid-batch: once the first rows of the burst are delivered (deleted).
                let total = BURST_KEYS as i64 * BURST_PER_KEY;
                let began = Instant::now();
                while self.count_like(&burst).await >= total
                    && began.elapsed() < Duration::from_secs(5)
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                rec.times.insert("burst_delivery_began".into(), now_ms());
                tokio::time::sleep(Duration::from_millis(step.delay_ms)).await;
                let scope = self.business_buckets(&buckets).await;
                if step.kind == Kind::RelayKill {
                    let t = now_ms();
                    let args = self
                        .procs
                        .kill(victim)
                        .await
                        .ok_or_else(|| format!("{victim} was not running"))?;
                    rec.times.insert("kill".into(), t);
                    let left = self.count_like(&burst).await;
                    rec.notes.push(format!(
                        "SIGKILL {}ms after the relay began delivering a burst of {total} events; {left} of them still in the outbox; restart after {}ms",
                        step.delay_ms, step.restart_ms
                    ));
                    self.pause(Duration::from_millis(step.restart_ms)).await;
                    self.procs.respawn(victim, &args)?;
                    let restart = now_ms();
                    rec.times.insert("restart".into(), restart);
                    rec.measures.push(Measure {
                        name: "delivery of its buckets resumed after the kill".into(),
                        t_ref: t,
                        from_process_up: None,
                        scope: Scope::Buckets(scope),
                        mode: Mode::Delivery,
                        window_ms: 120_000,
                        // Restarted at once: its own buckets back within 3 s; restarted
                        // late: taken over by the other relay after the lease TTL.
                        target_ms: Some(if step.late {
                            self.cfg.lease_ttl_ms as i64 + 3_000
                        } else {
                            3_000
                        }),
                    });
                    rec.measures.push(Measure::process_up(victim, restart));
                    if !step.late {
                        rec.measures.push(Measure {
                            name: "delivery of its buckets resumed after it ran again".into(),
                            t_ref: restart,
                            from_process_up: Some(victim.to_string()),
                            scope: Scope::Buckets(self.business_buckets(&buckets).await),
                            mode: Mode::Delivery,
                            window_ms: 120_000,
                            target_ms: None,
                        });
                    }
                } else {
                    let t = now_ms();
                    self.procs.signal(victim, "STOP").await?;
                    rec.times.insert("stop".into(), t);
                    let left = self.count_like(&burst).await;
                    rec.notes.push(format!(
                        "SIGSTOP {}ms after a burst; {left} burst events still in the outbox; frozen {}ms (lease TTL {}ms)",
                        step.delay_ms, step.freeze_ms, self.cfg.lease_ttl_ms
                    ));
                    self.pause(Duration::from_millis(step.freeze_ms)).await;
                    self.procs.signal(victim, "CONT").await?;
                    rec.times.insert("cont".into(), now_ms());
                    rec.measures.push(Measure {
                        name: "its buckets delivered by another relay after the freeze began"
                            .into(),
                        t_ref: t,
                        from_process_up: None,
                        scope: Scope::Buckets(scope),
                        mode: Mode::Delivery,
                        window_ms: step.freeze_ms as i64 + 60_000,
                        target_ms: None,
                    });
                }
            }
            Kind::ConsumerKill => {
                let victim = CONSUMERS[step.consumer];
                self.kill_consumer(victim, step.restart_ms, rec).await?;
            }
            Kind::DlqKill => {
                let (source, t_dlq) = self.poison_and_wait_dlq(rec).await?;
                let owner = self
                    .partition_owner(source)
                    .await
                    .ok_or("no consumer applied anything on the poison's partition")?;
                rec.notes.push(format!(
                    "dead-letter record from partition {source} seen {}ms ago; its owner is {owner}",
                    now_ms() - t_dlq
                ));
                rec.times.insert("dlq_seen".into(), t_dlq);
                self.kill_consumer(&owner, step.restart_ms, rec).await?;
            }
            Kind::ConsumerJoin => {
                rec.victim = JOINER.into();
                // An anonymous member (a scaled-out instance without a stable name): it
                // hands its partitions over at once when it leaves.
                self.procs.spawn(
                    JOINER,
                    &["consumer".into(), "--anonymous".into(), JOINER.into()],
                )?;
                let t = now_ms();
                rec.times.insert("join".into(), t);
                self.pause(Duration::from_secs(5)).await;
                rec.measures.push(Measure {
                    name: "longest pause of a partition (rebalance)".into(),
                    t_ref: t,
                    from_process_up: None,
                    scope: Scope::All,
                    mode: Mode::Stall,
                    window_ms: 30_000,
                    target_ms: None,
                });
            }
            Kind::ConsumerLeave => {
                rec.victim = JOINER.into();
                if !self.procs.is_live(JOINER) {
                    return Err(format!("{JOINER} is not running").into());
                }
                let t = now_ms();
                rec.times.insert("term".into(), t);
                let status = self.procs.terminate(JOINER, Duration::from_secs(30)).await;
                rec.times.insert("exited".into(), now_ms());
                rec.notes.push(format!(
                    "{JOINER} exited with {:?} {}ms after SIGTERM",
                    status.and_then(|s| s.code()),
                    now_ms() - t
                ));
                rec.measures.push(Measure {
                    name: "longest pause of a partition (rebalance)".into(),
                    t_ref: t,
                    from_process_up: None,
                    scope: Scope::All,
                    mode: Mode::Stall,
                    window_ms: 30_000,
                    target_ms: None,
                });
            }
            Kind::BrokerKill | Kind::BrokerFreeze => {
                let leaders = self.leaders().await?;
                let (node, led) = self.busiest_leader(&leaders);
                rec.victim = format!("broker {node}");
                rec.notes
                    .push(format!("broker {node} led partitions {led:?}"));
                if step.kind == Kind::BrokerKill {
                    let pid = self.node_pid(node).await?;
                    let t = now_ms();
                    signal_pid(pid, "KILL").await?;
                    rec.times.insert("kill".into(), t);
                    self.pause(Duration::from_millis(step.down_ms)).await;
                    rec.times.insert("restart".into(), now_ms());
                    let answered = self.restart_broker(node).await?;
                    rec.times.insert("answers".into(), answered);
                    rec.notes.push(format!(
                        "down {}ms; answering {}ms after the restart began",
                        step.down_ms,
                        answered - rec.times["restart"]
                    ));
                    rec.measures.push(Measure {
                        name: "failover: its partitions delivered after the kill".into(),
                        t_ref: t,
                        from_process_up: None,
                        scope: Scope::Partitions(led),
                        mode: Mode::Delivery,
                        window_ms: 120_000,
                        target_ms: None,
                    });
                    rec.measures.push(Measure {
                        name: "every partition delivered after the broker answers".into(),
                        t_ref: answered,
                        from_process_up: None,
                        scope: Scope::All,
                        mode: Mode::Delivery,
                        window_ms: 120_000,
                        target_ms: Some(5_000),
                    });
                } else {
                    let pid = self.node_pid(node).await?;
                    let t = now_ms();
                    signal_pid(pid, "STOP").await?;
                    rec.times.insert("stop".into(), t);
                    self.pause(Duration::from_millis(step.freeze_ms)).await;
                    let cont = now_ms();
                    signal_pid(pid, "CONT").await?;
                    rec.times.insert("cont".into(), cont);
                    rec.notes.push(format!(
                        "frozen {}ms (relays' message timeout {}ms, lease TTL {}ms)",
                        step.freeze_ms, self.cfg.message_timeout_ms, self.cfg.lease_ttl_ms
                    ));
                    rec.measures.push(Measure {
                        name: "failover: its partitions delivered after the freeze began".into(),
                        t_ref: t,
                        from_process_up: None,
                        scope: Scope::Partitions(led),
                        mode: Mode::Delivery,
                        window_ms: 180_000,
                        target_ms: None,
                    });
                    rec.measures.push(Measure {
                        name: "every partition delivered after the thaw".into(),
                        t_ref: cont,
                        from_process_up: None,
                        scope: Scope::All,
                        mode: Mode::Delivery,
                        window_ms: 120_000,
                        target_ms: None,
                    });
                }
            }
            Kind::PgRestart => {
                rec.victim = "postgres".into();
                let t = now_ms();
                self.script("postgres", &["restart"]).await?;
                let up = now_ms();
                rec.times.insert("restart".into(), t);
                rec.times.insert("up".into(), up);
                rec.notes.push(format!("restart took {}ms", up - t));
                rec.measures.push(Measure {
                    name: "every partition delivered after PostgreSQL is back".into(),
                    t_ref: up,
                    from_process_up: None,
                    scope: Scope::All,
                    mode: Mode::Delivery,
                    window_ms: 120_000,
                    target_ms: None,
                });
            }
            Kind::Poison => {
                let [u, r, o, d] = step.poison;
                let status = self
                    .poison(&[
                        "--undecodable".into(),
                        u.to_string(),
                        "--rejected".into(),
                        r.to_string(),
                        "--oversize-outbox".into(),
                        o.to_string(),
                        "--oversize-direct".into(),
                        d.to_string(),
                        "--tag".into(),
                        format!("s{}", rec.index),
                    ])
                    .await?;
                rec.notes.push(format!(
                    "sent {u} undecodable, {r} rejected, {o} oversize through the outbox, {d} oversize direct ({status})"
                ));
            }
        }
        Ok(())
    }

    async fn kill_consumer(
        &mut self,
        victim: &str,
        restart_ms: u64,
        rec: &mut FaultRecord,
    ) -> Result<()> {
        rec.victim = victim.into();
        let partitions = self.consumer_partitions(victim, now_ms()).await;
        // The time of the kill itself: the victim applies rows until the signal.
        let t = now_ms();
        let args = self
            .procs
            .kill(victim)
            .await
            .ok_or_else(|| format!("{victim} was not running"))?;
        rec.times.insert("kill".into(), t);
        rec.notes.push(format!(
            "SIGKILL {victim} (partitions {partitions:?}); restart after {restart_ms}ms"
        ));
        self.pause(Duration::from_millis(restart_ms)).await;
        self.procs.respawn(victim, &args)?;
        let restart = now_ms();
        rec.times.insert("restart".into(), restart);
        rec.measures.push(Measure {
            name: "its partitions processed again after the kill".into(),
            t_ref: t,
            from_process_up: None,
            scope: Scope::Partitions(partitions),
            mode: Mode::Processing,
            window_ms: 180_000,
            target_ms: Some(self.cfg.session_timeout_ms as i64 + 2_000),
        });
        rec.measures.push(Measure::process_up(victim, restart));
        Ok(())
    }

    /// Sends one rejected poison message and waits for its dead-letter record: returns
    /// the partition it came from and when it was seen.
    async fn poison_and_wait_dlq(&mut self, rec: &mut FaultRecord) -> Result<(i32, i64)> {
        let bootstrap = self.env.bootstrap.clone();
        let dlq = self.env.dlq();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let r = watch_dlq(&bootstrap, &dlq, ready_tx);
            let _ = tx.send(r);
        });
        let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
        self.poison(&[
            "--rejected".into(),
            "1".into(),
            "--tag".into(),
            format!("s{}", rec.index),
        ])
        .await?;
        rec.times.insert("poison_sent".into(), now_ms());
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(e),
            _ => Err("no dead-letter record within 60 s".into()),
        }
    }

    async fn poison(&mut self, args: &[String]) -> Result<String> {
        let mut all = vec!["poison".to_string()];
        all.extend_from_slice(args);
        let name = format!("poison-{}", now_ms());
        self.procs.spawn(&name, &all)?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            for (n, _, status) in self.procs.exited() {
                if n == name {
                    return if status.success() {
                        Ok("ok".into())
                    } else {
                        Err(
                            format!("the poison sender failed ({status}); see logs/{name}.log")
                                .into(),
                        )
                    };
                }
                self.unexpected_exit(n, status).await;
            }
            if Instant::now() > deadline {
                self.procs.kill(&name).await;
                return Err("the poison sender did not finish within 90 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A burst of `BURST_KEYS × BURST_PER_KEY` events in one transaction, on keys in the
    /// given buckets (when the hash is known): the relay that owns them is busy for a while.
    /// Returns the SQL LIKE pattern of the burst's keys.
    async fn burst(&mut self, index: usize, buckets: &[i32]) -> Result<String> {
        let wanted: BTreeSet<i32> = buckets.iter().copied().collect();
        let mut keys = Vec::new();
        let mut j = 0;
        while keys.len() < BURST_KEYS && j < 100_000 {
            let key = format!("burst-{index}-{j}");
            if !self.hash_ok || wanted.is_empty() || wanted.contains(&bucket_of(&key)) {
                keys.push(key);
            }
            j += 1;
        }
        let mut events = Vec::new();
        for seq in 1..=BURST_PER_KEY {
            for k in &keys {
                events.push(ChaosEvent::new(k.clone(), seq));
            }
        }
        let t = now_ms();
        let txn = self.db.begin().await?;
        for chunk in events.chunks(1000) {
            let mut sql =
                String::from("INSERT INTO chaos_committed (key, seq, committed_at) VALUES ");
            let mut values = Vec::new();
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3));
                values.push(e.key.clone().into());
                values.push(e.seq.into());
                values.push(t.into());
            }
            txn.execute_raw(stmt(&sql, values)).await?;
        }
        self.orm
            .topic::<ChaosEvent>()
            .publish_all(&txn, events.iter())
            .await?;
        txn.commit().await?;
        Ok(format!("burst-{index}-%"))
    }

    async fn count_like(&self, pattern: &str) -> i64 {
        let sql = format!(
            "SELECT COUNT(*) FROM \"{}\" WHERE message_key LIKE $1",
            common::outbox_table()
        );
        self.scalar(&sql, vec![pattern.into()]).await.unwrap_or(-1)
    }

    async fn scalar(&self, sql: &str, values: Vec<sea_orm::Value>) -> Option<i64> {
        let row = self.db.query_one_raw(stmt(sql, values)).await.ok()??;
        row.try_get_by_index::<i64>(0).ok()
    }

    async fn owned_buckets(&self, relay: &str) -> Vec<i32> {
        let sql = "SELECT bucket FROM kafka_orm_relay_leases WHERE owner = $1 \
                   AND expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint ORDER BY bucket";
        match self.db.query_all_raw(stmt(sql, vec![relay.into()])).await {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| r.try_get_by_index::<i32>(0).ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Of `buckets`, those that hold business keys (the ones with steady traffic).
    async fn business_buckets(&self, buckets: &[i32]) -> Vec<i32> {
        let used: BTreeSet<i32> = match self
            .db
            .query_all_raw(stmt("SELECT DISTINCT bucket FROM chaos_keys", vec![]))
            .await
        {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| r.try_get_by_index::<i32>(0).ok())
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        buckets
            .iter()
            .copied()
            .filter(|b| used.contains(b))
            .collect()
    }

    /// The partitions whose latest applied row before `t` is `consumer`'s.
    async fn consumer_partitions(&self, consumer: &str, t: i64) -> Vec<i32> {
        let sql = "SELECT DISTINCT ON (kafka_partition) kafka_partition, consumer FROM chaos_applied \
                   WHERE applied_at < $1 AND applied_at > $1 - 30000 ORDER BY kafka_partition, applied_at DESC";
        match self.db.query_all_raw(stmt(sql, vec![t.into()])).await {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| {
                    let p: i32 = r.try_get_by_index(0).ok()?;
                    let c: String = r.try_get_by_index(1).ok()?;
                    (c == consumer).then_some(p)
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn partition_owner(&self, partition: i32) -> Option<String> {
        let sql = "SELECT consumer FROM chaos_applied WHERE kafka_partition = $1 ORDER BY applied_at DESC LIMIT 1";
        let row = self
            .db
            .query_one_raw(stmt(sql, vec![partition.into()]))
            .await
            .ok()??;
        row.try_get_by_index::<String>(0).ok()
    }

    /// The bucket hash this program assumes agrees with the outbox's.
    async fn check_hash(&mut self) {
        if let Ok(rows) = self
            .db
            .query_all_raw(stmt("SELECT key, bucket FROM chaos_keys", vec![]))
            .await
        {
            let bad = rows
                .iter()
                .filter_map(|r| {
                    let k: String = r.try_get_by_index(0).ok()?;
                    let b: i32 = r.try_get_by_index(1).ok()?;
                    (bucket_of(&k) != b).then_some(k)
                })
                .count();
            if bad > 0 || rows.is_empty() {
                log_line(format!(
                    "the outbox's bucket hash differs from this program's for {bad} of {} keys: bursts go to random buckets",
                    rows.len()
                ));
                self.hash_ok = false;
            }
        }
    }

    /// (committed, distinct applied business events, outbox rows besides parked poison).
    async fn progress(&mut self) -> (i64, i64, i64) {
        let committed = self
            .scalar("SELECT COUNT(*) FROM chaos_committed", vec![])
            .await
            .unwrap_or(-1);
        let applied = self
            .scalar(
                "SELECT COUNT(*) FROM (SELECT DISTINCT key, seq FROM chaos_applied) x",
                vec![],
            )
            .await
            .unwrap_or(-1);
        let outbox = self
            .scalar(
                &format!(
                    "SELECT COUNT(*) FROM \"{}\" WHERE message_key NOT LIKE $1",
                    common::outbox_table()
                ),
                vec![format!("{POISON_OVERSIZE_OUTBOX}%").into()],
            )
            .await
            .unwrap_or(-1);
        if self.last_progress.elapsed() > Duration::from_secs(10) {
            self.last_progress = Instant::now();
            log_line(format!(
                "  t+{}s: committed {committed}, applied {applied}, outbox {outbox}",
                (now_ms() - self.t0) / 1000
            ));
        }
        (committed, applied, outbox)
    }

    /// Whether the dead-letter topic holds at least as many records as poison was sent
    /// for it (the rejected ones take their retries).
    async fn dlq_complete(&self) -> bool {
        let expected = self
            .scalar("SELECT COUNT(*) FROM chaos_poison WHERE expect_dlq", vec![])
            .await
            .unwrap_or(0);
        if expected == 0 {
            return true;
        }
        let bootstrap = self.env.bootstrap.clone();
        let dlq = self.env.dlq();
        let total = tokio::task::spawn_blocking(move || topic_size(&bootstrap, &dlq))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
        total >= expected
    }

    /// Sleeps, restarting services that died on their own meanwhile.
    async fn pause(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.supervise().await;
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        }
    }

    async fn supervise(&mut self) {
        for (name, args, status) in self.procs.exited() {
            self.unexpected_exit(name.clone(), status).await;
            if !name.starts_with("poison") {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = self.procs.respawn(&name, &args) {
                    log_line(format!("cannot restart {name}: {e}"));
                }
            }
        }
    }

    async fn unexpected_exit(&mut self, name: String, status: std::process::ExitStatus) {
        let at = now_ms();
        log_line(format!(
            "  {name} exited on its own ({status}); restarting it (see logs/{name}.log)"
        ));
        self.unexpected.push(json!({
            "process": name,
            "status": status.to_string(),
            "at_s": (at - self.t0) as f64 / 1000.0,
        }));
    }

    /// Waits until the fault's own measures have resumed on every unit (its buckets or
    /// partitions) and every partition flows again after `t_end`, at most `settle_max`, so
    /// that the next fault never cuts a recovery short.
    async fn settle_step(&mut self, rec: &FaultRecord, t_end: i64) -> bool {
        let deadline = Instant::now() + self.cfg.settle_max;
        loop {
            let mut pending = false;
            for m in &rec.measures {
                if !matches!(m.mode, Mode::Delivery | Mode::Processing) {
                    continue;
                }
                match self.measure(m, i64::MAX).await {
                    Ok(v) => {
                        if v["not_resumed"].as_array().is_some_and(|a| !a.is_empty()) {
                            pending = true;
                        }
                    }
                    Err(_) => pending = true,
                }
            }
            if !pending {
                let left = deadline.saturating_duration_since(Instant::now());
                return self.settle(t_end, left).await;
            }
            if Instant::now() > deadline {
                return false;
            }
            if self.last_progress.elapsed() > Duration::from_secs(10) {
                self.progress().await;
            }
            self.pause(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every partition has an applied row that the relay produced at or after
    /// `t` (the whole pipeline flows again), at most `max`.
    async fn settle(&mut self, t: i64, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            let n = self
                .scalar(
                    "SELECT COUNT(DISTINCT kafka_partition) FROM chaos_applied WHERE kafka_ts >= $1",
                    vec![t.into()],
                )
                .await
                .unwrap_or(0);
            if n >= i64::from(PARTITIONS) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            if self.last_progress.elapsed() > Duration::from_secs(10) {
                self.progress().await;
            }
            self.pause(Duration::from_millis(250)).await;
        }
    }

    async fn leaders(&self) -> Result<BTreeMap<i32, i32>> {
        let bootstrap = self.env.bootstrap.clone();
        let topic = self.env.topic();
        tokio::task::spawn_blocking(move || -> Result<BTreeMap<i32, i32>> {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let meta = c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            Ok(meta
                .topics()
                .first()
                .map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| (p.id(), p.leader()))
                        .collect()
                })
                .unwrap_or_default())
        })
        .await
        .map_err(|e| format!("metadata task: {e}"))?
    }

    /// The node leading most of the topic's partitions (ties: seeded choice).
    fn busiest_leader(&mut self, leaders: &BTreeMap<i32, i32>) -> (i32, Vec<i32>) {
        let mut by_node: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (p, l) in leaders {
            if *l >= 0 {
                by_node.entry(*l).or_default().push(*p);
            }
        }
        let most = by_node.values().map(Vec::len).max().unwrap_or(0);
        let tied: Vec<i32> = by_node
            .iter()
            .filter(|(_, v)| v.len() == most)
            .map(|(n, _)| *n)
            .collect();
        if tied.is_empty() {
            let n = self.nodes.first().map(|(id, _)| *id).unwrap_or(1);
            return (n, Vec::new());
        }
        let node = tied[self.rng.below(tied.len() as u64) as usize];
        (node, by_node.remove(&node).unwrap_or_default())
    }

    /// Starts node `node` again; returns when it answers metadata requests itself.
    async fn restart_broker(&mut self, node: i32) -> Result<i64> {
        let addr = self
            .nodes
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| format!("unknown node {node}"))?;
        let mut start = self.kafka_cmd(&["start", &node.to_string()]);
        let mut child = start.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let answered = loop {
            let a = addr.clone();
            let ok = tokio::task::spawn_blocking(move || broker_answers(&a, node))
                .await
                .unwrap_or(false);
            if ok {
                break now_ms();
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(format!("broker {node} did not answer within 120 s").into());
            }
            self.supervise().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
        Ok(answered)
    }

    async fn resume_all_nodes(&self) {
        for (id, _) in &self.nodes {
            let _ = self.kafka_cmd(&["resume", &id.to_string()]).output().await;
        }
    }

    fn kafka_cmd(&self, args: &[&str]) -> tokio::process::Command {
        self.script_cmd("kafka", args)
    }

    fn script_cmd(&self, script: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.cfg.repo.join("scripts").join(script));
        cmd.args(args).stdin(std::process::Stdio::null());
        let log = self.env.dir.join("logs").join("scripts.log");
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            && let Ok(g) = f.try_clone()
        {
            cmd.stdout(f).stderr(g);
        }
        cmd
    }

    /// When `process` had its relay or handler running after `since`.
    async fn process_up(&self, process: &str, since: i64) -> Option<i64> {
        self.scalar(
            "SELECT MIN(at) FROM chaos_process_log WHERE process = $1 AND event = 'started' AND at >= $2",
            vec![process.into(), since.into()],
        )
        .await
    }

    /// The pid of Kafka node `node` (signals go to it directly, so the fault's time is
    /// the signal's).
    async fn node_pid(&self, node: i32) -> Result<u32> {
        let out = self
            .kafka_cmd(&["pid", &node.to_string()])
            .stdout(std::process::Stdio::piped())
            .output()
            .await?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("Kafka node {node} is not running").into())
    }

    async fn script(&self, script: &str, args: &[&str]) -> Result<()> {
        let status = self.script_cmd(script, args).status().await?;
        if !status.success() {
            return Err(format!(
                "scripts/{script} {} failed ({status}; see logs/scripts.log)",
                args.join(" ")
            )
            .into());
        }
        Ok(())
    }

    /// Computes a measure over `[t_ref, min(t_ref + window, cap))`: `cap` is the start of
    /// the next fault, so one fault's figures never include the next one's.
    async fn measure(&self, m: &Measure, cap: i64) -> Result<Value> {
        let mut m = m.clone();
        if let Some(p) = &m.from_process_up {
            match self.process_up(p, m.t_ref).await {
                Some(up) => m.t_ref = up,
                None => return Err(format!("{p} never ran again").into()),
            }
        }
        let m = &m;
        let until = (m.t_ref + m.window_ms).min(cap.max(m.t_ref + 1));
        if let (Mode::ProcessUp, Scope::Process(p)) = (m.mode, &m.scope) {
            let up = self.process_up(p, m.t_ref).await;
            return Ok(json!({
                "name": m.name,
                "mode": "process_up",
                "from_s": (m.t_ref - self.t0) as f64 / 1000.0,
                "worst_ms": up.map(|at| at - m.t_ref),
                "units": 1,
                "unit": "process",
                "not_resumed": if up.is_some() { json!([]) } else { json!([p]) },
                "target_ms": null,
                "met": null,
            }));
        }
        let units: Vec<i32> = match &m.scope {
            Scope::Buckets(b) => b.clone(),
            Scope::Partitions(p) => p.clone(),
            Scope::All | Scope::Process(_) => (0..PARTITIONS).collect(),
        };
        let unit_kind = match m.scope {
            Scope::Buckets(_) => "bucket",
            _ => "partition",
        };
        let mut per_unit: BTreeMap<i32, Option<i64>> = units.iter().map(|u| (*u, None)).collect();
        match m.mode {
            Mode::Delivery | Mode::Processing => {
                let ts = if matches!(m.mode, Mode::Delivery) {
                    "AND a.kafka_ts >= $1"
                } else {
                    ""
                };
                let sql = match m.scope {
                    Scope::Buckets(_) => format!(
                        "SELECT k.bucket, MIN(a.applied_at) FROM chaos_applied a JOIN chaos_keys k ON k.key = a.key \
                         WHERE a.applied_at >= $1 AND a.applied_at < $2 {ts} GROUP BY k.bucket"
                    ),
                    _ => format!(
                        "SELECT a.kafka_partition, MIN(a.applied_at) FROM chaos_applied a \
                         WHERE a.applied_at >= $1 AND a.applied_at < $2 {ts} GROUP BY a.kafka_partition"
                    ),
                };
                let rows = self
                    .db
                    .query_all_raw(stmt(&sql, vec![m.t_ref.into(), until.into()]))
                    .await?;
                for r in &rows {
                    let u: i32 = r.try_get_by_index(0)?;
                    let at: i64 = r.try_get_by_index(1)?;
                    if let Some(slot) = per_unit.get_mut(&u) {
                        *slot = Some(at - m.t_ref);
                    }
                }
            }
            Mode::ProcessUp => {}
            Mode::Stall => {
                let rows = self
                    .db
                    .query_all_raw(stmt(
                        "SELECT kafka_partition, applied_at FROM chaos_applied WHERE applied_at >= $1 AND applied_at < $2 \
                         ORDER BY kafka_partition, applied_at",
                        vec![m.t_ref.into(), until.into()],
                    ))
                    .await?;
                let mut last: HashMap<i32, i64> = HashMap::new();
                for r in &rows {
                    let p: i32 = r.try_get_by_index(0)?;
                    let at: i64 = r.try_get_by_index(1)?;
                    let prev = last.insert(p, at).unwrap_or(m.t_ref);
                    if let Some(slot) = per_unit.get_mut(&p) {
                        let gap = at - prev;
                        *slot = Some(slot.map_or(gap, |g| g.max(gap)));
                    }
                }
            }
        }
        let resumed: Vec<i64> = per_unit.values().filter_map(|v| *v).collect();
        let missing: Vec<i32> = per_unit
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(u, _)| *u)
            .collect();
        let worst = if missing.is_empty() {
            resumed.iter().copied().max()
        } else {
            None
        };
        let worst_unit = per_unit
            .iter()
            .filter_map(|(u, v)| v.map(|v| (v, *u)))
            .max()
            .map(|(_, u)| u);
        let met = m.target_ms.map(|t| worst.is_some_and(|w| w <= t));
        Ok(json!({
            "name": m.name,
            "mode": format!("{:?}", m.mode).to_lowercase(),
            "from_s": (m.t_ref - self.t0) as f64 / 1000.0,
            "unit": unit_kind,
            "units": units.len(),
            "resumed_units": resumed.len(),
            "not_resumed": missing,
            "worst_ms": worst,
            "worst_unit": worst_unit,
            "first_ms": resumed.iter().copied().min(),
            "target_ms": m.target_ms,
            "met": met,
        }))
    }

    async fn report(
        &self,
        records: Vec<FaultRecord>,
        figures: Figures,
        started: Instant,
    ) -> Result<i32> {
        let failures = figures.failures();
        let wall = started.elapsed().as_secs_f64();
        println!();
        println!(
            "chaos: {} run, seed {}, {} faults, wall {:.0}s",
            if self.cfg.quick { "quick" } else { "full" },
            self.cfg.seed,
            records.len(),
            wall
        );
        println!();
        println!("  {:<3} {:<56} {:<12} recovery", "#", "fault", "victim");
        let mut targets_missed = Vec::new();
        for r in &records {
            let mut first = true;
            let lines: Vec<String> = if r.results.is_empty() {
                vec!["—".into()]
            } else {
                r.results.iter().map(recovery_text).collect()
            };
            for line in lines {
                if first {
                    println!(
                        "  {:<3} {:<56} {:<12} {line}",
                        r.index,
                        r.kind.name(),
                        r.victim
                    );
                    first = false;
                } else {
                    println!("  {:<3} {:<56} {:<12} {line}", "", "", "");
                }
            }
            for v in &r.results {
                if v["met"] == json!(false) {
                    targets_missed.push(format!(
                        "#{} {}: {}",
                        r.index,
                        r.kind.id(),
                        recovery_text(v)
                    ));
                }
            }
        }
        println!();
        print!("{}", check::table(&figures));
        println!();
        if !self.unexpected.is_empty() {
            println!(
                "  processes that exited on their own: {}",
                self.unexpected.len()
            );
            for u in &self.unexpected {
                println!("    {u}");
            }
        }
        for t in &targets_missed {
            println!("  recovery target missed: {t}");
        }
        let relay_failures = relay_failures(&self.env.dir.join("logs"));
        if let Some(map) = relay_failures.as_object()
            && !map.is_empty()
        {
            println!("  relay delivery failures (from the relay logs):");
            for (error, classes) in map {
                println!("    {classes}  {error}");
            }
        }
        let passed = failures.is_empty();
        if passed {
            println!("chaos: PASSED (no loss, nothing applied twice, order kept, DLQ = poison)");
        } else {
            for f in &failures {
                println!("  FAILED: {f}");
            }
            println!("chaos: FAILED");
        }

        let schedule: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "index": r.index,
                    "fault": r.kind.id(),
                    "description": r.kind.name(),
                    "victim": r.victim,
                    "params": r.params,
                    "times_s": r.times.iter().map(|(k, v)| (k.clone(), json!((*v - self.t0) as f64 / 1000.0))).collect::<serde_json::Map<_, _>>(),
                    "notes": r.notes,
                    "recovery": r.results,
                })
            })
            .collect();
        let doc = json!({
            "date_ms": now_ms(),
            "mode": if self.cfg.quick { "quick" } else { "full" },
            "seed": self.cfg.seed,
            "events_target": self.cfg.events,
            "git_commit": git_commit(&self.cfg.repo),
            "namespace": self.env.namespace,
            "database": self.env.database_url.rsplit('/').next(),
            "config": {
                "brokers": self.nodes.len(),
                "partitions": PARTITIONS,
                "replication": 3,
                "min_insync_replicas": 2,
                "topic_max_message_bytes": TOPIC_MAX_MESSAGE_BYTES,
                "keys": KEYS,
                "relays": RELAYS,
                "consumers": CONSUMERS,
                "relay_message_timeout_ms": self.cfg.message_timeout_ms,
                "lease_ttl_ms": self.cfg.lease_ttl_ms,
                "consumer_session_timeout_ms": self.cfg.session_timeout_ms,
                "consumers_static_members": true,
                "producer_set": std::env::var("CHAOS_PRODUCER_SET").ok(),
                "consumer_set": std::env::var("CHAOS_CONSUMER_SET").ok(),
            },
            "schedule": schedule,
            "figures": figures.to_json(),
            "unexpected_exits": self.unexpected,
            "relay_delivery_failures": relay_failures,
            "recovery_targets_missed": targets_missed,
            "failures": failures,
            "passed": passed,
            "wall_seconds": (wall * 10.0).round() / 10.0,
        });
        if let Some(parent) = self.cfg.out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&self.cfg.out, serde_json::to_string_pretty(&doc)? + "\n")?;
        log_line(format!("wrote {}", self.cfg.out.display()));
        Ok(if passed { 0 } else { 1 })
    }
}

async fn signal_pid(pid: u32, sig: &str) -> Result<()> {
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .await?;
    if !status.success() {
        return Err(format!("kill -{sig} {pid} failed").into());
    }
    Ok(())
}

fn recovery_text(v: &Value) -> String {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return format!("{}: error {e}", v["name"].as_str().unwrap_or("?"));
    }
    let name = v["name"].as_str().unwrap_or("?");
    let worst = match v["worst_ms"].as_i64() {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => format!(
            "NOT resumed ({} of {} {}s: {})",
            v["not_resumed"].as_array().map_or(0, Vec::len),
            v["units"],
            v["unit"].as_str().unwrap_or("unit"),
            v["not_resumed"]
        ),
    };
    let target = match (v["target_ms"].as_i64(), v["met"].as_bool()) {
        (Some(t), Some(true)) => format!(" (target ≤ {:.0}s: met)", t as f64 / 1000.0),
        (Some(t), _) => format!(" (target ≤ {:.0}s: MISSED)", t as f64 / 1000.0),
        _ => String::new(),
    };
    format!("{name}: {worst}{target}")
}

/// Drops earlier runs' databases and creates this run's.
async fn fresh_database(admin: &DatabaseConnection, name: &str) -> Result<()> {
    let rows = admin
        .query_all_raw(stmt(
            "SELECT datname FROM pg_database WHERE datname LIKE 'chaos\\_%'",
            vec![],
        ))
        .await?;
    for r in rows {
        let old: String = r.try_get_by_index(0)?;
        if old.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))
                .await?;
        }
    }
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    Ok(())
}

/// Deletes earlier runs' topics (namespace `chaos.*`) and creates this run's: the topic
/// with 6 partitions, replication 3, a `max.message.bytes` below the client's, and its DLQ.
async fn fresh_topics(env: &Env) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap)
        .create()?;
    let bootstrap = env.bootstrap.clone();
    let existing: Vec<String> = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        let meta = c.fetch_metadata(None, Duration::from_secs(30))?;
        Ok(meta.topics().iter().map(|t| t.name().to_string()).collect())
    })
    .await
    .map_err(|e| format!("metadata task: {e}"))??;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let old: Vec<&str> = existing
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("chaos.") && !t.starts_with(&env.namespace))
        .collect();
    if !old.is_empty() {
        let _ = admin.delete_topics(&old, &opts).await;
    }
    let max = TOPIC_MAX_MESSAGE_BYTES.to_string();
    let topic = env.topic();
    let dlq = env.dlq();
    let topics = [
        NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(3))
            .set("max.message.bytes", &max)
            .set("min.insync.replicas", "2"),
        NewTopic::new(&dlq, PARTITIONS, TopicReplication::Fixed(3)).set("min.insync.replicas", "2"),
    ];
    for r in admin.create_topics(&topics, &opts).await? {
        if let Err((name, code)) = r {
            return Err(format!("creating topic {name}: {code}").into());
        }
    }
    // Until the metadata shows both with every partition (kafka-orm's build() checks).
    let bootstrap = env.bootstrap.clone();
    let names = [topic.clone(), dlq.clone()];
    tokio::task::spawn_blocking(move || -> Result<()> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in &names {
            loop {
                let ready = c
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()
                    .and_then(|m| m.topics().first().map(|t| t.partitions().len() as i32))
                    == Some(PARTITIONS);
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "topic {name} not visible with {PARTITIONS} partitions within 30 s"
                    )
                    .into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("metadata task: {e}"))??;
    Ok(())
}

/// The relays' delivery failures by error and by whether the row was poison, from their
/// logs (`row N (key Some("K")) of `..` failed attempt A: ERROR; retrying in ..`).
fn relay_failures(logs: &std::path::Path) -> Value {
    let mut by: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(logs) else {
        return json!({});
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("relay-") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains("failed attempt"))
        {
            let key = line
                .split("(key Some(\"")
                .nth(1)
                .and_then(|r| r.split("\")").next())
                .unwrap_or("");
            let error = line
                .split("failed attempt ")
                .nth(1)
                .and_then(|r| r.split_once(": "))
                .map(|(_, e)| e.split("; retrying").next().unwrap_or(e))
                .unwrap_or("?");
            // Row ids and durations vary; the error's kind is its text without them.
            let kind: String = error
                .split(" (")
                .next()
                .unwrap_or(error)
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            let class = if check::poison_kind(key).is_some() {
                "poison rows"
            } else {
                "business rows"
            };
            *by.entry(kind).or_default().entry(class).or_insert(0) += 1;
        }
    }
    json!(by)
}

/// `(node id, host:port)` of each Kafka node, from `scripts/kafka nodes`.
async fn kafka_nodes(cfg: &Config) -> Result<Vec<(i32, String)>> {
    let out = tokio::process::Command::new(cfg.repo.join("scripts/kafka"))
        .arg("nodes")
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id: i32 = f.next()?.parse().ok()?;
            let port: u16 = f.next()?.parse().ok()?;
            Some((id, format!("127.0.0.1:{port}")))
        })
        .collect())
}

/// Node `id` answers a metadata request on its own listener and is in the cluster.
fn broker_answers(addr: &str, id: i32) -> bool {
    let Ok(c) = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("socket.connection.setup.timeout.ms", "1000")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    match c.fetch_metadata(None, Duration::from_millis(1500)) {
        Ok(m) => m.brokers().iter().any(|b| b.id() == id) && m.orig_broker_id() == id,
        Err(_) => false,
    }
}

/// Records in every partition of `topic` (high minus low watermark).
fn topic_size(bootstrap: &str, topic: &str) -> Result<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut total = 0;
    for p in 0..PARTITIONS {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        total += hi - lo;
    }
    Ok(total)
}

/// Waits for the next record on `dlq` (from its current end); returns its source
/// partition (header) and when it was seen.
fn watch_dlq(
    bootstrap: &str,
    dlq: &str,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<(i32, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("chaos-dlq-watch-{}", now_ms()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, hi) = c.fetch_watermarks(dlq, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(dlq, p, Offset::Offset(hi))?;
    }
    c.assign(&tpl)?;
    let _ = ready.send(());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let seen = now_ms();
            let source = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.key == kafka_orm::handler::DLQ_SOURCE_PARTITION)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|s| s.parse().ok())
                })
                .ok_or("a dead-letter record without a source partition header")?;
            return Ok((source, seen));
        }
    }
    Err("no dead-letter record within 60 s".into())
}

/// The commit the run's tree is at (`CHAOS_GIT_COMMIT` for a tree without `.git`, e.g.
/// a `git archive` snapshot).
fn git_commit(repo: &std::path::Path) -> Option<String> {
    if let Ok(c) = std::env::var("CHAOS_GIT_COMMIT")
        && !c.trim().is_empty()
    {
        return Some(c.trim().to_string());
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!commit.is_empty()).then_some(commit)
}
