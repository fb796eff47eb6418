//! The services a chaos run starts as separate OS processes: the producer, relays,
//! consumers, and the poison sender.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka_orm::{Delivery, HandlerError, KafkaOrm};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::common::{
    self, Env, OVERSIZE_BYTES, POISON_OVERSIZE_DIRECT, POISON_OVERSIZE_OUTBOX, POISON_REJECTED,
    POISON_UNDECODABLE, Result, Rng, now_ms, say, stmt,
};
use crate::events::ChaosEvent;

/// The producing service's settings.
#[derive(Debug, Clone)]
pub struct ProducerArgs {
    /// Commits per second, over all tasks.
    pub rate: f64,
    /// Business keys `k000`, `k001`, ..
    pub keys: u32,
    /// Concurrent transactions (each task owns `keys / tasks` keys).
    pub tasks: u32,
    /// Stop after this many commits (0: until SIGTERM).
    pub events: u64,
    pub seed: u64,
}

pub fn key_name(k: u32) -> String {
    format!("k{k:03}")
}

/// The producer: per event, ONE transaction that updates the key's business row, records
/// `(key, seq)` in `chaos_committed` and `publish`es the event; per-key sequence numbers
/// 1, 2, 3, .. At a steady rate until SIGTERM.
///
/// A commit whose outcome is unknown (the database went away during COMMIT) is resolved
/// by reading the key's last committed seq back, so the sequence has no holes.
pub async fn producer(env: Env, args: ProducerArgs) -> Result<()> {
    let db = common::connect(&env.database_url, args.tasks + 2, Duration::from_secs(60)).await?;
    common::create_tables(&db).await?;
    let orm = common::build_orm(&env, &db).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tasks = args.tasks.max(1);
    say(
        "producer",
        format!(
            "{} keys, {} tasks, {:.0} commits/s{}",
            args.keys,
            tasks,
            args.rate,
            if args.events > 0 {
                format!(", {} events", args.events)
            } else {
                String::new()
            }
        ),
    );
    let mut handles = Vec::new();
    for t in 0..tasks {
        let keys: Vec<String> = (0..args.keys)
            .filter(|k| k % tasks == t)
            .map(key_name)
            .collect();
        let task = ProducerTask {
            orm: orm.clone(),
            db: db.clone(),
            keys,
            interval: Duration::from_secs_f64(f64::from(tasks) / args.rate.max(0.1)),
            rng: Rng::new(args.seed.wrapping_add(u64::from(t) * 7919)),
            stop: Arc::clone(&stop),
            committed: Arc::clone(&committed),
            errors: Arc::clone(&errors),
            limit: args.events,
        };
        handles.push(tokio::spawn(task.run()));
    }
    let t0 = Instant::now();
    let mut last = 0;
    loop {
        tokio::select! {
            _ = common::terminated() => break,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                let n = committed.load(Relaxed);
                say("producer", format!(
                    "{n} committed ({:.0}/s over the last 5 s), {} errors, {:.0}s",
                    (n - last) as f64 / 5.0, errors.load(Relaxed), t0.elapsed().as_secs_f64()
                ));
                last = n;
                if handles.iter().all(|h| h.is_finished()) {
                    break;
                }
            }
        }
    }
    stop.store(true, Relaxed);
    for h in handles {
        let _ = h.await;
    }
    say(
        "producer",
        format!(
            "stopped: {} committed, {} errors",
            committed.load(Relaxed),
            errors.load(Relaxed)
        ),
    );
    Ok(())
}

struct ProducerTask {
    orm: KafkaOrm,
    db: DatabaseConnection,
    keys: Vec<String>,
    interval: Duration,
    rng: Rng,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    limit: u64,
}

impl ProducerTask {
    async fn run(mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut next_seq: HashMap<String, i64> = HashMap::new();
        let mut known_bucket: HashMap<String, bool> = HashMap::new();
        for k in &self.keys {
            let last = self.last_seq(k).await;
            next_seq.insert(k.clone(), last + 1);
        }
        let mut next = tokio::time::Instant::now();
        let mut last_error_log = Instant::now() - Duration::from_secs(60);
        while !self.stop.load(Relaxed) {
            if self.limit > 0 && self.committed.load(Relaxed) >= self.limit {
                break;
            }
            next += self.interval;
            let now = tokio::time::Instant::now();
            if next > now {
                tokio::time::sleep_until(next).await;
            } else if now - next > Duration::from_secs(1) {
                // After an outage: go on at the steady rate, no catch-up burst.
                next = now;
            }
            let key = self.keys[self.rng.below(self.keys.len() as u64) as usize].clone();
            let seq = next_seq[&key];
            let need_bucket = !known_bucket.contains_key(&key);
            match self.commit_one(&key, seq, need_bucket).await {
                Ok(()) => {
                    next_seq.insert(key.clone(), seq + 1);
                    known_bucket.insert(key, true);
                    self.committed.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    self.errors.fetch_add(1, Relaxed);
                    if last_error_log.elapsed() > Duration::from_secs(2) {
                        say("producer", format!("commit of {key}#{seq} failed: {e}"));
                        last_error_log = Instant::now();
                    }
                    // Did it commit after all? The database says.
                    let last = self.last_seq(&key).await;
                    if last >= seq {
                        self.committed.fetch_add(1, Relaxed);
                    }
                    next_seq.insert(key, last + 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn commit_one(&self, key: &str, seq: i64, need_bucket: bool) -> Result<()> {
        let txn = self.db.begin().await?;
        txn.execute_raw(stmt(
            "INSERT INTO chaos_accounts (key, events, last_seq) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET events = chaos_accounts.events + 1, last_seq = EXCLUDED.last_seq",
            vec![key.into(), seq.into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            "INSERT INTO chaos_committed (key, seq, committed_at) VALUES ($1, $2, $3)",
            vec![key.into(), seq.into(), now_ms().into()],
        ))
        .await?;
        self.orm
            .topic::<ChaosEvent>()
            .publish(&txn, &ChaosEvent::new(key, seq))
            .await?;
        if need_bucket {
            // The relay bucket of the key, as the outbox row has it (for recovery figures).
            let sql = format!(
                "INSERT INTO chaos_keys (key, bucket) SELECT message_key, bucket FROM \"{}\" \
                 WHERE message_key = $1 ORDER BY id DESC LIMIT 1 ON CONFLICT (key) DO NOTHING",
                common::outbox_table()
            );
            txn.execute_raw(stmt(&sql, vec![key.into()])).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The key's last committed seq (0: none), retried until the database answers.
    async fn last_seq(&self, key: &str) -> i64 {
        loop {
            let row = self
                .db
                .query_one_raw(stmt(
                    "SELECT COALESCE(MAX(seq), 0) FROM chaos_committed WHERE key = $1",
                    vec![key.into()],
                ))
                .await;
            match row {
                Ok(Some(r)) => {
                    if let Ok(v) = r.try_get_by_index::<i64>(0) {
                        return v;
                    }
                }
                Ok(None) => return 0,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An outbox relay with a stable instance name, until SIGTERM. `CHAOS_LEASE_TTL_MS` (and
/// `CHAOS_LEASE_RENEW_MS`) override the lease timing when set.
pub async fn relay(env: Env, name: String) -> Result<()> {
    let db = common::connect(&env.database_url, 10, Duration::from_secs(60)).await?;
    let orm = common::build_orm(&env, &db).await?;
    let mut builder = orm.outbox_relay().instance_id(name.clone());
    let ttl = std::env::var("CHAOS_LEASE_TTL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ttl) = ttl {
        let renew = std::env::var("CHAOS_LEASE_RENEW_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(ttl / 5);
        builder = builder.leases(Duration::from_millis(ttl), Duration::from_millis(renew));
    }
    let relay = builder.spawn().await?;
    common::mark(&db, &name, "started").await;
    say(&name, "relay started");
    loop {
        tokio::select! {
            _ = common::terminated() => break,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                let s = relay.stats();
                say(&name, format!(
                    "delivered {}, failed {}, buckets {}, listening {}, last error {:?}",
                    s.delivered, s.failed, s.owned_buckets, s.listening, s.last_error
                ));
            }
        }
    }
    say(&name, "SIGTERM: shutting down");
    let s = relay.stats();
    relay.shutdown().await?;
    say(
        &name,
        format!("stopped: delivered {}, failed {}", s.delivered, s.failed),
    );
    Ok(())
}

/// The consuming service: an inbox handler that inserts one `chaos_applied` row per
/// event in the handler's transaction and rejects poison, until SIGTERM.
///
/// With `stable`, the handler has `instance_id(NAME)` (static membership: a restart under
/// the same name gets its partitions back at once); without, it is an anonymous member.
pub async fn consumer(env: Env, name: String, stable: bool) -> Result<()> {
    let db = common::connect(&env.database_url, 12, Duration::from_secs(60)).await?;
    let orm = common::build_orm(&env, &db).await?;
    let who: Arc<str> = Arc::from(name.as_str());
    let mut builder = orm
        .topic::<ChaosEvent>()
        .handler(async move |txn, msg| apply(txn, msg, &who).await)
        .concurrency(6);
    if stable {
        builder = builder.instance_id(name.clone());
    }
    let handler = builder.spawn().await?;
    common::mark(&db, &name, "started").await;
    say(
        &name,
        format!(
            "consumer started ({})",
            if stable {
                "static member: instance_id = its name"
            } else {
                "anonymous member"
            }
        ),
    );
    let mut failed = None;
    loop {
        tokio::select! {
            _ = common::terminated() => break,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                let s = handler.stats();
                say(&name, format!(
                    "handled {}, duplicates {}, retries {}, dead-lettered {} ({} undecodable), db errors {}, assignments {}, revocations {}",
                    s.handled, s.duplicates, s.retries, s.dead_lettered, s.undecodable,
                    s.database_errors, s.assignments, s.revocations
                ));
                if handler.is_finished() {
                    failed = Some("the handler stopped on its own".to_string());
                    break;
                }
            }
        }
    }
    say(&name, "shutting down");
    match handler.shutdown().await {
        Ok(s) => say(
            &name,
            format!(
                "stopped: handled {}, duplicates {}, dead-lettered {}",
                s.handled, s.duplicates, s.dead_lettered
            ),
        ),
        Err(e) => return Err(format!("the handler failed: {e}").into()),
    }
    match failed {
        Some(f) => Err(f.into()),
        None => Ok(()),
    }
}

async fn apply(
    txn: &DatabaseTransaction,
    msg: &Delivery<ChaosEvent>,
    who: &str,
) -> std::result::Result<(), HandlerError> {
    if msg.poison {
        return Err(format!("poison `{}`: rejected by the handler", msg.key).into());
    }
    txn.execute_raw(stmt(
        "INSERT INTO chaos_applied (key, seq, consumer, applied_at, kafka_partition, kafka_offset, kafka_ts, attempt) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            msg.key.clone().into(),
            msg.seq.into(),
            who.into(),
            now_ms().into(),
            msg.partition().into(),
            msg.offset().into(),
            msg.timestamp_ms().unwrap_or(0).into(),
            (msg.attempt() as i32).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// How much poison to send.
#[derive(Debug, Clone, Default)]
pub struct PoisonArgs {
    /// Distinguishes the keys of several poison rounds in one run.
    pub tag: String,
    /// Bytes that are not JSON, produced directly: dead-lettered at once.
    pub undecodable: u32,
    /// Valid events marked `poison`, through the outbox: the handler rejects every
    /// attempt, so they are dead-lettered after their retries.
    pub rejected: u32,
    /// Events above the topic's `max.message.bytes`, through the outbox: the broker
    /// refuses them, so the relay keeps them (backing off) and blocks only their key.
    pub oversize_outbox: u32,
    /// The same, produced directly: `produce` returns the broker's error.
    pub oversize_direct: u32,
}

/// Sends poison and records each message in `chaos_poison` (kind, key, whether the
/// dead-letter topic should get it, what happened when it was sent).
pub async fn poison(env: Env, args: PoisonArgs) -> Result<()> {
    let db = common::connect(&env.database_url, 4, Duration::from_secs(60)).await?;
    common::create_tables(&db).await?;
    let orm = common::build_orm(&env, &db).await?;
    let tag = if args.tag.is_empty() {
        format!("{:x}", now_ms())
    } else {
        args.tag.clone()
    };
    let record = |kind: &'static str, key: String, expect_dlq: bool, outcome: String| {
        let db = db.clone();
        async move {
            say("poison", format!("{kind} `{key}`: {outcome}"));
            db.execute_raw(stmt(
                "INSERT INTO chaos_poison (kind, key, sent_at, expect_dlq, outcome) VALUES ($1, $2, $3, $4, $5)",
                vec![kind.into(), key.into(), now_ms().into(), expect_dlq.into(), outcome.into()],
            ))
            .await
        }
    };

    let raw: FutureProducer = orm
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()?;
    for i in 0..args.undecodable {
        let key = format!("{POISON_UNDECODABLE}{tag}-{i}");
        let payload: &[u8] = b"\xff\xfe this is not JSON {";
        let topic = env.topic();
        let sent = raw
            .send(
                FutureRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await;
        let (expect, outcome) = match sent {
            Ok(d) => (true, format!("produced at {}/{}", d.partition, d.offset)),
            Err((e, _)) => (false, format!("produce failed: {e}")),
        };
        record("undecodable", key, expect, outcome).await?;
    }
    for i in 0..args.rejected {
        let key = format!("{POISON_REJECTED}{tag}-{i}");
        let mut evt = ChaosEvent::new(key.clone(), i64::from(i) + 1);
        evt.poison = true;
        publish_one(&orm, &db, &evt).await?;
        record("rejected", key, true, "committed to the outbox".into()).await?;
    }
    for i in 0..args.oversize_outbox {
        let key = format!("{POISON_OVERSIZE_OUTBOX}{tag}-{i}");
        let mut evt = ChaosEvent::new(key.clone(), i64::from(i) + 1);
        evt.poison = true;
        evt.pad = "x".repeat(OVERSIZE_BYTES);
        publish_one(&orm, &db, &evt).await?;
        record(
            "oversize-outbox",
            key,
            false,
            format!("committed to the outbox ({OVERSIZE_BYTES} bytes of padding)"),
        )
        .await?;
    }
    for i in 0..args.oversize_direct {
        let key = format!("{POISON_OVERSIZE_DIRECT}{tag}-{i}");
        let mut evt = ChaosEvent::new(key.clone(), i64::from(i) + 1);
        evt.poison = true;
        evt.pad = "x".repeat(OVERSIZE_BYTES);
        let (expect, outcome) = match orm.topic::<ChaosEvent>().produce(&evt).await {
            // Accepted after all: then it is a poison message on the topic like any other.
            Ok(d) => (
                true,
                format!("ACCEPTED by the broker at {}/{}", d.partition, d.offset),
            ),
            Err(e) => (false, format!("refused: {e}")),
        };
        record("oversize-direct", key, expect, outcome).await?;
    }
    Ok(())
}

async fn publish_one(orm: &KafkaOrm, db: &DatabaseConnection, evt: &ChaosEvent) -> Result<()> {
    let mut tries = 0;
    loop {
        let attempt = async {
            let txn = db.begin().await?;
            orm.topic::<ChaosEvent>().publish(&txn, evt).await?;
            txn.commit().await?;
            Ok::<(), common::Error>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 20 => {
                tries += 1;
                say(
                    "poison",
                    format!("publishing `{}` failed ({e}); retrying", evt.key),
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
