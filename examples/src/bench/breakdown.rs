//! Where the relay's time goes, from the outside: a minimal `tracing` subscriber that
//! sums the client-side duration of every SQL statement sqlx logs (target `sqlx::query`,
//! on for the relay scenario's connection pool only) by kind, the runtime's
//! `relay batch produced` events (target `kafka_orm::relay`: how long a batch took from
//! its task's start to its last acknowledgement) and the lifetime of its
//! `kafka_orm.relay_batch` spans (from the claim's result to the delete's end).
//!
//! Per batch: claim = the claim statement; produce + acks = the event's time; delete = the
//! `DELETE`; batch = the span. Per claim, from the runtime's `relay batch claimed` events:
//! the claim as the relay's loop saw it, and how long after the commit notification that
//! woke the loop it started. The relay pipelines batches (a claim runs while the previous
//! batch awaits its acknowledgements, deletes run in the background), so these overlap:
//! compare their sum with the wall time per batch. Summed over all instances (per-batch
//! averages stay meaningful).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const BATCH_SPAN: &str = "kafka_orm.relay_batch";
const RELAY_TARGET: &str = "kafka_orm::relay";

#[derive(Debug, Default, Clone)]
struct Sum {
    count: u64,
    secs: f64,
    /// Every value, in ms (for percentiles).
    values: Vec<f64>,
}

impl Sum {
    fn add(&mut self, secs: f64) {
        self.count += 1;
        self.secs += secs;
        self.values.push(secs * 1e3);
    }

    /// [p50, p99] in ms.
    fn percentiles(&self) -> Value {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let p = |q: f64| (crate::infra::percentile(&v, q) * 1000.0).round() / 1000.0;
        if v.is_empty() {
            Value::Null
        } else {
            json!([p(50.0), p(99.0)])
        }
    }
}

#[derive(Default)]
struct State {
    /// Open batch spans: start, rows, handles.
    open: HashMap<u64, (Instant, u64, u64)>,
    batches: Sum,
    batch_rows: u64,
    produced: Sum,
    /// Claims as the relay's loop saw them (scheduling included).
    claimed: Sum,
    /// Commit notification → the claim it led to.
    woken: Sum,
    statements: HashMap<&'static str, Sum>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Installs the collector as the global subscriber (once, at start-up).
pub fn install() {
    let _ = tracing::subscriber::set_global_default(Collector);
}

/// Starts collecting from zero.
pub fn reset() {
    *STATE.lock().unwrap() = Some(State::default());
}

/// Stops collecting and returns the per-batch breakdown, in milliseconds.
pub fn take() -> Value {
    let Some(s) = STATE.lock().unwrap().take() else {
        return Value::Null;
    };
    let stmt = |k: &str| s.statements.get(k).cloned().unwrap_or_default();
    let (claim, delete, lease, other) =
        (stmt("claim"), stmt("delete"), stmt("lease"), stmt("other"));
    let batches = s.batches.count.max(1) as f64;
    let ms = |secs: f64| (secs * 1e3 / batches * 1000.0).round() / 1000.0;
    let per = |sum: &Sum| (sum.secs * 1e3 / sum.count.max(1) as f64 * 1000.0).round() / 1000.0;
    json!({
        "batches": s.batches.count,
        "rows_per_batch": (s.batch_rows as f64 / batches * 10.0).round() / 10.0,
        "claim_ms_per_batch": ms(claim.secs),
        "claims": claim.count,
        "empty_or_extra_claims": claim.count.saturating_sub(s.batches.count),
        "produce_and_acks_ms_per_batch": ms(s.produced.secs),
        "delete_ms_per_batch": ms(delete.secs),
        "batch_span_ms_per_batch": ms(s.batches.secs),
        "claim_in_loop_ms_per_claim": per(&s.claimed),
        "notified_to_claim_ms": per(&s.woken),
        "notified_claims": s.woken.count,
        "lease_statements": lease.count,
        "lease_ms_total": (lease.secs * 1e4).round() / 10.0,
        "other_statements": other.count,
        "other_ms_total": (other.secs * 1e4).round() / 10.0,
        "p50_p99_ms": {
            "claim": claim.percentiles(),
            "claim_in_loop": s.claimed.percentiles(),
            "notified_to_claim": s.woken.percentiles(),
            "produce_and_acks": s.produced.percentiles(),
            "delete": delete.percentiles(),
            "batch_span": s.batches.percentiles(),
        },
    })
}

/// Adds the wall time per batch of a run that took `secs` (batches overlap: it is less
/// than the sum of their parts when the pipeline works).
pub fn with_wall(mut breakdown: Value, secs: f64) -> Value {
    if let Some(b) = breakdown.as_object_mut() {
        let batches = b
            .get("batches")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            .max(1.0);
        let ms = (secs * 1e3 / batches * 1000.0).round() / 1000.0;
        b.insert("wall_ms_per_batch".into(), json!(ms));
    }
    breakdown
}

struct Collector;

#[derive(Default)]
struct Fields {
    statement: Option<String>,
    elapsed_secs: Option<f64>,
    rows: Option<u64>,
    produce_us: Option<u64>,
    claim_us: Option<u64>,
    wake_us: Option<u64>,
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows" => self.rows = Some(value),
            "produce_us" => self.produce_us = Some(value),
            "claim_us" => self.claim_us = Some(value),
            "wake_us" => self.wake_us = Some(value),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "rows" {
            self.rows = Some(value.max(0) as u64);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "db.statement" || (field.name() == "summary" && self.statement.is_none())
        {
            self.statement = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "db.statement" {
            self.statement = Some(format!("{value:?}"));
        }
    }
}

fn kind(statement: &str) -> &'static str {
    // Identifiers may be quoted (`"message_id"`, or backquoted on SQLite).
    let unquoted = statement.trim_start().replace(['"', '`'], "");
    let s = unquoted.as_str();
    // The claim reads the rows' payloads (whatever shape the query has), or counts its
    // window when it found nothing; the delete of delivered rows names the lease table in
    // its fence; lease upkeep touches only the lease and member tables.
    let reads = (s.starts_with("SELECT") || s.starts_with("WITH")) && s.contains("payload");
    let counts =
        s.starts_with("SELECT COUNT(*) FROM (SELECT 1 FROM") && s.contains("next_attempt_at");
    if (reads && s.contains("message_id")) || counts {
        "claim"
    } else if s.starts_with("DELETE FROM") && !s.starts_with("DELETE FROM kafka_orm_relay") {
        "delete"
    } else if s.contains("kafka_orm_relay") {
        "lease"
    } else {
        "other"
    }
}

impl Subscriber for Collector {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
            || metadata.target() == RELAY_TARGET
            || metadata.name() == BATCH_SPAN
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if span.metadata().name() == BATCH_SPAN {
            let mut f = Fields::default();
            span.record(&mut f);
            if let Some(s) = STATE.lock().unwrap().as_mut() {
                s.open.insert(id, (Instant::now(), f.rows.unwrap_or(0), 1));
            }
        }
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        if event.metadata().target() == RELAY_TARGET {
            event.record(&mut f);
            if let Some(s) = STATE.lock().unwrap().as_mut() {
                for (us, sum) in [
                    (f.produce_us, &mut s.produced),
                    (f.claim_us, &mut s.claimed),
                    (f.wake_us, &mut s.woken),
                ] {
                    if let Some(us) = us {
                        sum.add(us as f64 / 1e6);
                    }
                }
            }
            return;
        }
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        event.record(&mut f);
        if let (Some(statement), Some(secs)) = (f.statement, f.elapsed_secs)
            && let Some(s) = STATE.lock().unwrap().as_mut()
        {
            s.statements.entry(kind(&statement)).or_default().add(secs);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(s) = STATE.lock().unwrap().as_mut()
            && let Some(open) = s.open.get_mut(&id.into_u64())
        {
            open.2 += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut state = STATE.lock().unwrap();
        let Some(s) = state.as_mut() else {
            return true;
        };
        let key = id.into_u64();
        let Some(open) = s.open.get_mut(&key) else {
            return true;
        };
        open.2 -= 1;
        if open.2 > 0 {
            return false;
        }
        let (start, rows, _) = s.open.remove(&key).expect("present");
        s.batches.add(start.elapsed().as_secs_f64());
        s.batch_rows += rows;
        true
    }
}
