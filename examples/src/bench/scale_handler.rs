//! The handler at scale, run as a measured child process (`bench-child handler`, the
//! bench's own handlers, concurrency 8): catching up a lag, and on a large inbox table.
//!
//! - `handler_lag`: the topic holds N messages (100k; `--quick` 2k) before the handler
//!   process starts; msg/s from 5 % handled to the last, batch and per-message mode, against
//!   the in-process `inbox_throughput` of the same mode and concurrency when it ran.
//!   Two more runs show what the memory is made of: batch mode with `max_pending(2000)` per
//!   partition (the default is 40 batches = 20,000 in batch mode, 5,000 per message), and
//!   that with librdkafka's prefetch bounded as well (`queued.max.messages.kbytes` 4096
//!   through `consumer_set`; its default is 64 MiB).
//! - `handler_peak_rss`: `VmHWM` of each handler process at the end of its run (goal ≤ 64
//!   MiB at the 100k lag), against its resident set once its context was built;
//!   `extra.held_at_most`: the messages the handler may hold (min(lag, partitions ×
//!   max_pending)).
//! - `inbox_prefilled`: the inbox table holds 10M rows (`--quick` 100k) of the handler's
//!   own consumer group before it starts, written by one `INSERT .. SELECT
//!   generate_series`, then `VACUUM ANALYZE` and `CHECKPOINT` (not timed). The handled
//!   messages' dedup keys (`seq`) are every S-th key of that range and the pre-filled rows
//!   the keys between them, so inserts land all over the unique index (not only at its right
//!   end, as ever-growing keys would). Batch mode (`--messages`) then per-message mode
//!   (`per_message` messages), each against the same run on an empty inbox with the same
//!   keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;

use crate::Baselines;
use crate::Config;
use crate::business::BUSINESS_TABLE;
use crate::children::{Measured, Memory};
use crate::infra::{Infra, PARTITIONS, Result, Scenario};
use crate::produce::{Msg, send_all};
use crate::report::{Baseline, Figure, Outcome, Params, Progress};
use crate::scale_relay::{RSS_GOAL_MIB, rss_figure, short};

/// The handler processes' concurrency (the handler's default).
const CONCURRENCY: usize = 8;

/// What one handler process did.
struct Handled {
    rate: f64,
    secs: f64,
    transactions: u64,
    duplicates: u64,
    txn_p50_ms: f64,
    ready: Memory,
    peak: Memory,
}

#[derive(Clone, Copy)]
enum Mode {
    Batch,
    Single,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Single => "single",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Single => "per message",
        }
    }
}

fn params(config: &Config, messages: u64) -> Params {
    Params {
        messages,
        payload_bytes: config.payload_bytes,
        partitions: PARTITIONS,
        concurrency: CONCURRENCY,
    }
}

pub async fn lag(
    config: &Config,
    infra: &Infra,
    baselines: &Baselines,
    progress: &Arc<Progress>,
) -> Result<Vec<Outcome>> {
    let n = config.lag;
    let mut out = Vec::new();
    // The defaults, then batch mode with a lower `max_pending` (what the handler may hold
    // per partition: the defaults are 5,000 and, in batch mode, 40 batches = 20,000), then
    // that with librdkafka's prefetch queue bounded too (its default is 64 MiB).
    let runs = [
        (Mode::Batch, None, None),
        (Mode::Single, None, None),
        (Mode::Batch, Some(LOW_PENDING), None),
        (Mode::Batch, Some(LOW_PENDING), Some(LOW_PREFETCH_KIB)),
    ];
    for (mode, max_pending, prefetch) in runs {
        let mut variant = mode.name().to_string();
        if let Some(p) = max_pending {
            variant.push_str(&format!(", max_pending {p}"));
        }
        if let Some(k) = prefetch {
            // librdkafka's `queued.max.messages.kbytes`.
            variant.push_str(&format!(", prefetch {} MiB", k / 1024));
        }
        variant.push_str(&format!(", {} lag", short(n)));
        progress.phase(format!("{variant}: filling the topic (not timed)"));
        let run = async {
            let sc = infra.scenario(&format!("lag_{}", mode.arg())).await?;
            let r = async {
                sc.db.execute_unprepared(BUSINESS_TABLE).await?;
                fill_topic(&sc, 0..n, 1, config.payload_bytes, progress).await?;
                progress.phase(format!("{variant}: handling"));
                handle(&sc, mode, max_pending, prefetch, n, progress).await
            }
            .await;
            sc.cleanup().await;
            r
        };
        match run.await {
            Ok(h) => {
                let f = handled_figure(&h).extra(
                    "what",
                    "N messages in the topic before one handler process (bench-child, \
                     concurrency 8, inbox) starts; msg/s from 5 % handled to the last",
                );
                let in_process = format!("{}, concurrency {CONCURRENCY}", mode.name());
                let f = f
                    .extra("max_pending_per_partition", pending_cap(mode, max_pending))
                    .extra(
                        "queued_max_messages_kbytes",
                        prefetch.map_or(DEFAULT_PREFETCH_KIB, u64::from),
                    );
                let f = match baselines.inbox.iter().find(|(v, _)| *v == in_process) {
                    Some((_, rate)) => f.baseline(Baseline::new(
                        format!("inbox_throughput {in_process} (in process)"),
                        *rate,
                    )),
                    None => f,
                };
                out.push(
                    Outcome::measured("handler_lag", params(config, n), f).variant(variant.clone()),
                );
                out.push(
                    Outcome::measured(
                        "handler_peak_rss",
                        params(config, n),
                        rss_figure(&h.ready, &h.peak, "a handler process (bench-child handler)")
                            .extra(
                                "held_at_most",
                                n.min(pending_cap(mode, max_pending) * PARTITIONS as u64),
                            )
                            .goal(
                                format!("<= {RSS_GOAL_MIB} MiB at a {} lag", short(n)),
                                h.peak.peak_mib <= RSS_GOAL_MIB,
                            ),
                    )
                    .variant(format!("handler, {variant}")),
                );
            }
            Err(e) => out.push(
                Outcome::failed("handler_lag", params(config, n), e.to_string()).variant(variant),
            ),
        }
    }
    Ok(out)
}

pub async fn prefilled(
    config: &Config,
    infra: &Infra,
    progress: &Arc<Progress>,
) -> Result<Vec<Outcome>> {
    let runs = [
        (Mode::Batch, config.messages),
        (Mode::Single, config.per_message),
    ];
    let warm = |n: u64| (n / 20).max(200);
    let total: u64 = runs.iter().map(|(_, n)| warm(*n) + n).sum();
    // Every `stride`-th key is a message's, the keys between them pre-filled rows.
    let stride = config.inbox_prefill.div_ceil(total) + 1;
    let prefill = total * (stride - 1);
    let mut empty: Vec<Handled> = Vec::new();
    let mut out = Vec::new();
    for filled in [false, true] {
        let sc = infra
            .scenario(if filled {
                "inbox_filled"
            } else {
                "inbox_empty"
            })
            .await?;
        let r = async {
            sc.db.execute_unprepared(BUSINESS_TABLE).await?;
            if filled {
                progress.phase(format!(
                    "pre-filling the inbox with {} rows (not timed)",
                    short(prefill)
                ));
                prefill_inbox(&sc, total * stride, stride).await?;
            }
            let mut from = 0;
            let mut done = Vec::new();
            for (mode, n) in runs {
                let count = warm(n) + n;
                let state = if filled {
                    short(prefill)
                } else {
                    "empty".into()
                };
                progress.phase(format!("{}, inbox {state}: filling the topic", mode.name()));
                fill_topic(
                    &sc,
                    from..from + count,
                    stride,
                    config.payload_bytes,
                    progress,
                )
                .await?;
                from += count;
                progress.phase(format!("{}, inbox {state}: handling", mode.name()));
                done.push(handle(&sc, mode, None, None, count, progress).await?);
            }
            Result::Ok(done)
        }
        .await;
        sc.cleanup().await;
        let done = r?;
        if !filled {
            empty = done;
            continue;
        }
        for (((mode, n), h), e) in runs.iter().zip(&done).zip(&empty) {
            let variant = format!("{}, concurrency {CONCURRENCY}", mode.name());
            let f = handled_figure(h)
                .baseline(Baseline::new(
                    format!("the same on an empty inbox ({variant})"),
                    e.rate,
                ))
                .extra("prefilled_rows", prefill)
                .extra("stride", stride)
                .extra("empty_inbox_txn_p50_ms", e.txn_p50_ms)
                .extra(
                    "what",
                    "one handler process (bench-child, inbox) with the inbox table pre-filled \
                     (its own consumer group; the messages' dedup keys interleaved through \
                     the pre-filled ones); msg/s from 5 % handled to the last",
                );
            out.push(
                Outcome::measured("inbox_prefilled", params(config, *n), f)
                    .variant(format!("{variant}, {} rows", short(prefill))),
            );
            out.push(
                Outcome::measured(
                    "handler_peak_rss",
                    params(config, *n),
                    rss_figure(&h.ready, &h.peak, "a handler process on a large inbox"),
                )
                .variant(format!(
                    "handler, {}, {}-row inbox",
                    mode.name(),
                    short(prefill)
                )),
            );
        }
    }
    Ok(out)
}

/// The lower `max_pending` of `handler_lag`'s last two runs.
const LOW_PENDING: usize = 2_000;

/// librdkafka's `queued.max.messages.kbytes` (prefetched messages of the consumer), its
/// default and the bound of `handler_lag`'s last run.
const DEFAULT_PREFETCH_KIB: u64 = 65_536;
const LOW_PREFETCH_KIB: u32 = 4_096;

/// What the handler holds per partition by default (`kafka-orm-runtime/src/handler`:
/// `HANDLER_MAX_PENDING`, raised to 40 batches in batch mode).
fn default_pending(mode: Mode) -> u64 {
    let base = kafka_orm::defaults::HANDLER_MAX_PENDING;
    match mode {
        Mode::Batch => base.max(crate::business::BATCH * 40) as u64,
        Mode::Single => base as u64,
    }
}

fn pending_cap(mode: Mode, max_pending: Option<usize>) -> u64 {
    max_pending.map_or_else(|| default_pending(mode), |p| p as u64)
}

fn handled_figure(h: &Handled) -> Figure {
    Figure::new(h.rate, "msg/s")
        .extra("seconds", h.secs)
        .extra("transactions", h.transactions)
        .extra("duplicates", h.duplicates)
        .extra("handler_txn_p50_ms", h.txn_p50_ms)
        .extra("peak_rss_mib", h.peak.peak_mib)
}

/// The rows of the messages `seq = i * stride` for `i` in `range`, produced raw (as
/// kafka-orm's producer would).
async fn fill_topic(
    sc: &Scenario,
    range: std::ops::Range<u64>,
    stride: u64,
    payload_bytes: usize,
    progress: &Progress,
) -> Result<()> {
    let producer = sc.infra.raw_producer()?;
    let msgs: Vec<Msg> = range.map(|i| Msg::new(i * stride, payload_bytes)).collect();
    send_all(&producer, &sc.topic(), &msgs, Some(progress)).await
}

/// Inbox rows of the handler's group for every key below `end` but the multiples of
/// `stride`, in one statement; then vacuumed, analyzed and checkpointed, so that neither
/// autovacuum nor a checkpoint of this load runs into the measurement.
async fn prefill_inbox(sc: &Scenario, end: u64, stride: u64) -> Result<()> {
    use kafka_orm::Topic;
    let table = crate::infra::BenchEvent::SPEC
        .inbox
        .ok_or("BenchEvent has no inbox")?
        .table;
    let group = format!("{}bench", sc.namespace);
    let now_ms = crate::infra::now_us() / 1000;
    sc.db
        .execute_unprepared(&format!(
            "INSERT INTO \"{table}\" (consumer_group, topic, kafka_partition, kafka_offset, \
               processed_at, dedup_seq) \
             SELECT '{group}', 'prefilled', 0, g, {now_ms}, g \
             FROM generate_series(0, {last}) g WHERE g % {stride} <> 0",
            last = end - 1
        ))
        .await?;
    sc.db
        .execute_unprepared(&format!("VACUUM (ANALYZE) \"{table}\""))
        .await?;
    // Needs superuser or pg_checkpoint; without them the checkpointer's own pace applies.
    if let Err(e) = sc.db.execute_unprepared("CHECKPOINT").await {
        eprintln!("bench: CHECKPOINT after the prefill: {e}");
    }
    Ok(())
}

/// Starts a handler process on `sc` and lets it handle `total` messages.
async fn handle(
    sc: &Scenario,
    mode: Mode,
    max_pending: Option<usize>,
    prefetch_kib: Option<u32>,
    total: u64,
    progress: &Progress,
) -> Result<Handled> {
    let concurrency = CONCURRENCY.to_string();
    let pending = max_pending.map(|p| p.to_string());
    let mut args = vec!["handler", mode.arg(), &concurrency];
    args.extend(pending.as_deref());
    let consumer_set = prefetch_kib.map(|k| format!("queued.max.messages.kbytes={k}"));
    let env: Vec<(&str, &str)> = consumer_set
        .as_deref()
        .map(|s| ("BENCH_CONSUMER_SET", s))
        .into_iter()
        .collect();
    let mut child = Measured::spawn_with_env("bench-child", &args, sc, &env).await?;
    child.start().await?;
    let warm = (total / 20).max(200).min(total / 2);
    let mut t0: Option<(f64, u64, u64)> = None;
    let mut last = (0, Instant::now());
    let h = loop {
        let s = child.stats().await?;
        let v = &s.values;
        let (done, txns) = (v[0] + v[1], v[2]);
        if t0.is_none() && done >= warm {
            t0 = Some((s.secs, done, txns));
        }
        if done >= total {
            let (t0, from, txns0) = t0.ok_or("no report past the warm-up")?;
            let secs = s.secs - t0;
            break Handled {
                rate: (done - from) as f64 / secs,
                secs,
                transactions: txns - txns0,
                duplicates: v[1],
                txn_p50_ms: v[3] as f64 / 1e3,
                ready: child.at_ready,
                peak: Memory::default(),
            };
        }
        if v[5] != 0 {
            return Err("the handler stopped on its own".into());
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            return Err(format!("the handler stalled at {done} of {total}").into());
        }
        progress.count(done, total);
    };
    let peak = child.stop().await?;
    Ok(Handled { peak, ..h })
}
