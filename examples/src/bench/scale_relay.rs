//! The relay at scale, run as a measured child process (`children.rs`): its throughput and
//! peak RSS at growing backlogs, and one relay serving 50 outbox topics.
//!
//! - `relay_backlog`: the outbox table holds N rows before the relay starts (10k, 100k,
//!   1M; `--quick` 1k, 5k, 20k): 1,000 events published with `publish_all`, copied with
//!   fresh message ids by one `INSERT .. SELECT .. generate_series` (ids in the order
//!   publishing them would give, keys interleaved), then `ANALYZE` (as autovacuum would
//!   have while a real backlog built up). One `bench-child relay` (the bench event
//!   registered only, like the in-process relays) drains it; the clock runs from the
//!   child's first report past 5 % of the rows to its last row, on the child's clock.
//!   Baseline: the smallest backlog of the same run (flat: every ratio within 0.8..1.2);
//!   `extra.msg_per_s_by_tenth`: the rate over each tenth of the rows (does it slow down as
//!   the table fills with dead rows?).
//! - `relay_fanout`: one `bench-fanout relay` over 50 outbox topics (one partition each),
//!   each table filled the same way with 10k rows (`--quick` 200): total msg/s against
//!   `relay_backlog` of the closest size (one topic), and fairness: when half of all rows
//!   are delivered, each table's delivered count (one `count(*)` statement over all 50, one
//!   snapshot): min / max. A table's rows go in batches of 500, so fairness is measured
//!   in batches: 20 per table at full size.
//! - `relay_peak_rss`: `VmHWM` of each relay process at the end of its run, against its
//!   resident set once its context was built (before the relay started); goal ≤ 64 MiB at
//!   the 1M-row backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_orm::Topic;
use kafka_orm::deps::rdkafka::admin::{AdminClient, AdminOptions};
use kafka_orm::deps::rdkafka::client::DefaultClientContext;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::children::{Measured, Memory};
use crate::infra::{BenchEvent, Infra, PARTITIONS, Result, Scenario};
use crate::relay::publish_and_commit;
use crate::report::{Baseline, Figure, Outcome, Params, Progress};
use crate::{Baselines, Config};

/// Outbox topics of `bench-fanout` (`child/fanout.rs`), named `bench.fanout.00` ...
pub const FANOUT_TOPICS: usize = 50;

/// Events published for real; the rest of a backlog are copies of them.
const TEMPLATE: u64 = 1_000;

/// Peak RSS goal of a relay and a handler process.
pub const RSS_GOAL_MIB: f64 = 64.0;

pub async fn backlog(
    config: &Config,
    infra: &Infra,
    progress: &Arc<Progress>,
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    let mut first: Option<(u64, f64)> = None;
    let largest = config.backlogs.iter().copied().max().unwrap_or(0);
    for &n in &config.backlogs {
        let variant = format!("{} rows", short(n));
        let params = Params {
            messages: n,
            payload_bytes: config.payload_bytes,
            partitions: PARTITIONS,
            concurrency: 1,
        };
        progress.phase(format!("{variant}: filling the outbox (not timed)"));
        let run = async {
            let sc = infra.scenario(&format!("backlog_{n}")).await?;
            let r = async {
                let table = outbox_table()?;
                fill_template(&sc, n.min(TEMPLATE), config.payload_bytes).await?;
                copy_rows(&sc, table, &[table.to_string()], n, progress).await?;
                progress.phase(format!("{variant}: relaying"));
                drain(&sc, "bench-child", n, None, progress).await
            }
            .await;
            sc.cleanup().await;
            r
        };
        match run.await {
            Ok(r) => {
                let base = *first.get_or_insert((n, r.rate));
                let ratio = r.rate / base.1;
                let mut f = Figure::new(r.rate, "msg/s")
                    .baseline(Baseline::new(
                        format!("relay_backlog {} rows", short(base.0)),
                        base.1,
                    ))
                    .extra("seconds", r.secs)
                    .extra("failed_attempts", r.failed)
                    .extra("peak_rss_mib", r.peak.peak_mib)
                    .extra("msg_per_s_by_tenth", r.by_tenth.clone())
                    .extra(
                        "what",
                        "N rows in the outbox before one relay process (bench-child) starts; \
                         msg/s from 5 % delivered to the last row, on the child's clock",
                    );
                if n != base.0 {
                    f = f.goal(
                        "within 20 % of the smallest backlog",
                        (0.8..=1.2).contains(&ratio),
                    );
                }
                out.push(Outcome::measured("relay_backlog", params, f).variant(variant.clone()));
                let mut m = rss_figure(&r.ready, &r.peak, "a relay process (bench-child relay)");
                if n == largest {
                    m = m.goal(
                        format!("<= {RSS_GOAL_MIB} MiB at a {} backlog", short(n)),
                        r.peak.peak_mib <= RSS_GOAL_MIB,
                    );
                }
                out.push(
                    Outcome::measured("relay_peak_rss", params, m)
                        .variant(format!("relay, {variant} backlog")),
                );
            }
            Err(e) => {
                out.push(Outcome::failed("relay_backlog", params, e.to_string()).variant(variant))
            }
        }
    }
    Ok(out)
}

pub async fn fanout(
    config: &Config,
    infra: &Infra,
    baselines: &Baselines,
    progress: &Arc<Progress>,
) -> Result<Vec<Outcome>> {
    let total = config.fanout_rows * FANOUT_TOPICS as u64;
    let params = Params {
        messages: total,
        payload_bytes: config.payload_bytes,
        partitions: 1,
        concurrency: FANOUT_TOPICS,
    };
    let sc = infra.scenario("fanout").await?;
    let topics: Vec<String> = (0..FANOUT_TOPICS)
        .map(|i| format!("{}bench.fanout.{i:02}", sc.namespace))
        .collect();
    let run = async {
        progress.phase(format!(
            "{FANOUT_TOPICS} topics: starting the relay process (creates the topics and tables)"
        ));
        fill_template(&sc, config.fanout_rows.min(TEMPLATE), config.payload_bytes).await?;
        // The child creates the 50 tables when it builds its context; the relay starts on
        // `start`, after they are filled.
        let child = Measured::spawn("bench-fanout", &["relay"], &sc).await?;
        let tables = fanout_tables(&sc).await?;
        if tables.len() != FANOUT_TOPICS {
            return Err(format!("{} fanout tables, not {FANOUT_TOPICS}", tables.len()).into());
        }
        progress.phase(format!(
            "{FANOUT_TOPICS} topics: filling {} rows each (not timed)",
            config.fanout_rows
        ));
        copy_rows(&sc, outbox_table()?, &tables, config.fanout_rows, progress).await?;
        sc.db
            .execute_unprepared(&format!("TRUNCATE \"{}\"", outbox_table()?))
            .await?;
        progress.phase(format!("{FANOUT_TOPICS} topics: relaying {total} rows"));
        drain_child(child, &sc, total, Some(&tables), progress).await
    }
    .await;
    sc.cleanup().await;
    delete_topics(infra, &topics).await;
    let r = run?;
    let mut out = Vec::new();
    let mut f = Figure::new(r.rate, "msg/s")
        .extra("seconds", r.secs)
        .extra("topics", FANOUT_TOPICS as u64)
        .extra("rows_per_topic", config.fanout_rows)
        .extra("failed_attempts", r.failed)
        .extra("peak_rss_mib", r.peak.peak_mib)
        .extra("msg_per_s_by_tenth", r.by_tenth.clone())
        .extra(
            "what",
            "one relay process (bench-fanout) over 50 outbox topics of N/50 rows each, filled \
             before it starts; total msg/s from 5 % delivered to the last row",
        );
    // The backlog of one topic closest in size (the backlogs' rates should be flat anyway).
    let closest = baselines.relay_backlog.iter().min_by(|a, b| {
        let d = |n: u64| (n as f64 / total as f64).ln().abs();
        d(a.0).total_cmp(&d(b.0))
    });
    if let Some((n, rate)) = closest {
        f = f.baseline(Baseline::new(
            format!("relay_backlog {} rows (one topic)", short(*n)),
            *rate,
        ));
    }
    out.push(Outcome::measured("relay_fanout", params, f).variant("total"));
    if let Some(fair) = &r.fairness {
        let min = fair.iter().copied().min().unwrap_or(0) as f64;
        let max = fair.iter().copied().max().unwrap_or(0) as f64;
        let f = Figure::new(if max > 0.0 { min / max } else { f64::NAN }, "min/max")
            .extra("delivered_per_topic_at_half", fair.clone())
            .extra(
                "what",
                "each topic's delivered rows when half of all rows were delivered (one \
                 snapshot of the 50 tables): smallest / largest",
            );
        out.push(Outcome::measured("relay_fanout", params, f).variant("fairness"));
    }
    out.push(
        Outcome::measured(
            "relay_peak_rss",
            params,
            rss_figure(
                &r.ready,
                &r.peak,
                "a relay process serving 50 outbox topics",
            ),
        )
        .variant(format!("relay, {FANOUT_TOPICS} topics")),
    );
    Ok(out)
}

/// A process's peak RSS against its RSS once its context was built.
pub fn rss_figure(ready: &Memory, peak: &Memory, what: &str) -> Figure {
    Figure::new(peak.peak_mib, "MiB")
        .baseline(Baseline::new(
            "the same process, context built, before start",
            ready.rss_mib,
        ))
        .extra("rss_at_end_mib", peak.rss_mib)
        .extra(
            "what",
            format!("VmHWM of {what} from /proc/<pid>/status at the end of its run"),
        )
}

/// `1000` → `1k`, `1000000` → `1M`, `10160000` → `10.2M`.
pub fn short(n: u64) -> String {
    let (v, unit) = match n {
        1_000_000.. => (n as f64 / 1e6, "M"),
        1_000.. => (n as f64 / 1e3, "k"),
        _ => return n.to_string(),
    };
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    format!("{}{unit}", s.trim_end_matches(".0"))
}

fn outbox_table() -> Result<&'static str> {
    Ok(BenchEvent::SPEC
        .outbox
        .ok_or("BenchEvent has no outbox")?
        .table)
}

/// Publishes `n` bench events through the outbox for real (the rows the copies are made
/// of).
async fn fill_template(sc: &Scenario, n: u64, payload_bytes: usize) -> Result<()> {
    publish_and_commit(sc, 0, n, payload_bytes).await
}

/// Fills each of `targets` up to `per_table` rows with copies of `template`'s rows
/// (fresh message ids, ids in publishing order: copy by copy, keys interleaved; the
/// lateral join keeps that order without sorting the copies), in one statement per
/// table, then `ANALYZE`s it.
async fn copy_rows(
    sc: &Scenario,
    template: &str,
    targets: &[String],
    per_table: u64,
    progress: &Progress,
) -> Result<()> {
    let have = count(sc, template).await?;
    if have == 0 || !per_table.is_multiple_of(have) {
        return Err(format!("{per_table} rows cannot be made of {have} template rows").into());
    }
    for (i, target) in targets.iter().enumerate() {
        let columns = copied_columns(sc, template, target).await?;
        let already = if target == template { have } else { 0 };
        let copies = (per_table - already) / have;
        if copies > 0 {
            let list = columns.join(", ");
            let from: Vec<String> = columns.iter().map(|c| format!("s.{c}")).collect();
            sc.db
                .execute_unprepared(&format!(
                    "INSERT INTO \"{target}\" ({list}, message_id) \
                     SELECT {}, gen_random_uuid()::text \
                     FROM generate_series(1, {copies}) g, LATERAL \
                     (SELECT * FROM \"{template}\" WHERE g > 0 ORDER BY id) s",
                    from.join(", ")
                ))
                .await?;
        }
        sc.db
            .execute_unprepared(&format!("ANALYZE \"{target}\""))
            .await?;
        progress.count(i as u64 + 1, targets.len() as u64);
    }
    let rows = count(sc, &targets[0]).await?;
    if rows != per_table {
        return Err(format!("{} holds {rows} rows, not {per_table}", targets[0]).into());
    }
    Ok(())
}

/// The columns a copy takes from the template: those both tables have, but the row id,
/// the message id and the delivery bookkeeping.
async fn copied_columns(sc: &Scenario, template: &str, target: &str) -> Result<Vec<String>> {
    let rows = sc
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.column_name::text FROM information_schema.columns a \
             JOIN information_schema.columns b ON b.column_name = a.column_name \
               AND b.table_name = $2 AND b.table_schema = a.table_schema \
             WHERE a.table_name = $1 AND a.table_schema = current_schema() \
               AND a.column_name NOT IN ('id', 'message_id', 'attempts', 'next_attempt_at', 'last_error') \
             ORDER BY a.ordinal_position",
            [template.into(), target.into()],
        ))
        .await?;
    let columns: Vec<String> = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).map(|c| format!("\"{c}\"")))
        .collect::<std::result::Result<_, _>>()?;
    if columns.is_empty() {
        return Err(format!("no columns to copy from {template} into {target}").into());
    }
    Ok(columns)
}

async fn count(sc: &Scenario, table: &str) -> Result<u64> {
    let row = sc
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*) FROM \"{table}\""),
        ))
        .await?
        .ok_or("count(*) returned no row")?;
    Ok(row.try_get_by_index::<i64>(0)? as u64)
}

/// The outbox tables `bench-fanout` created, in topic order.
async fn fanout_tables(sc: &Scenario) -> Result<Vec<String>> {
    let rows = sc
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename LIKE '%outbox' AND tablename <> $1 ORDER BY tablename",
            [outbox_table()?.into()],
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<std::result::Result<_, _>>()?)
}

/// What one relay process did.
pub struct Drained {
    rate: f64,
    secs: f64,
    failed: u64,
    ready: Memory,
    peak: Memory,
    /// Delivered rows per table when half of all were delivered.
    fairness: Option<Vec<u64>>,
    /// msg/s over the 2nd .. 10th tenth of the rows.
    by_tenth: Vec<f64>,
}

/// Starts `program relay` on `sc` and lets it deliver `total` rows.
async fn drain(
    sc: &Scenario,
    program: &str,
    total: u64,
    tables: Option<&[String]>,
    progress: &Progress,
) -> Result<Drained> {
    let child = Measured::spawn(program, &["relay"], sc).await?;
    drain_child(child, sc, total, tables, progress).await
}

async fn drain_child(
    mut child: Measured,
    sc: &Scenario,
    total: u64,
    tables: Option<&[String]>,
    progress: &Progress,
) -> Result<Drained> {
    child.start().await?;
    let warm = (total / 20).max(500).min(total / 2);
    let mut t0: Option<(f64, u64)> = None;
    // The report before the one that passed the warm-up: a small backlog can be drained
    // between two reports, and then the timed window starts there.
    let mut prev: Option<(f64, u64)> = None;
    let mut fairness = None;
    let mut last = (0, Instant::now());
    // When each tenth of the rows was delivered, on the child's clock.
    let mut tenths: Vec<f64> = Vec::with_capacity(10);
    let ((secs, timed), failed) = loop {
        let s = child.stats().await?;
        let (delivered, failed) = (s.values[0], s.values[1]);
        if t0.is_none() && delivered >= warm {
            t0 = Some(match prev {
                Some(before) if delivered >= total => before,
                _ => (s.secs, delivered),
            });
        }
        while tenths.len() < 10 && delivered >= total * (tenths.len() as u64 + 1) / 10 {
            tenths.push(s.secs);
        }
        if let Some(tables) = tables
            && fairness.is_none()
            && delivered >= total / 2
        {
            fairness = Some(delivered_per_table(sc, tables, total / tables.len() as u64).await?);
        }
        if delivered >= total {
            let (t0, from) = t0.ok_or("no report past the warm-up")?;
            break ((s.secs - t0, delivered - from), failed);
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the relay stopped at {delivered} of {total} delivered rows ({failed} failed attempts)"
            )
            .into());
        }
        prev = Some((s.secs, delivered));
        progress.count(delivered, total);
    };
    if secs <= 0.0 {
        return Err(format!(
            "all {total} rows were delivered before the child's first report: too few to time"
        )
        .into());
    }
    let ready = child.at_ready;
    let peak = child.stop().await?;
    // msg/s over each tenth of the rows after the first (which includes the start-up).
    let by_tenth = tenths
        .windows(2)
        .map(|w| (total / 10) as f64 / (w[1] - w[0]).max(1e-6))
        .collect();
    Ok(Drained {
        rate: timed as f64 / secs,
        secs,
        failed,
        ready,
        peak,
        fairness,
        by_tenth,
    })
}

/// Each table's delivered rows (`per_table` minus what is left), in one snapshot.
async fn delivered_per_table(sc: &Scenario, tables: &[String], per_table: u64) -> Result<Vec<u64>> {
    let sql = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("SELECT {i} AS i, count(*) AS n FROM \"{t}\""))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = sc
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("{sql} ORDER BY i"),
        ))
        .await?;
    rows.iter()
        .map(|r| Ok(per_table.saturating_sub(r.try_get_by_index::<i64>(1)? as u64)))
        .collect()
}

/// Deletes topics the scenario's context does not know (best effort).
async fn delete_topics(infra: &Infra, topics: &[String]) {
    let admin: std::result::Result<AdminClient<DefaultClientContext>, _> =
        infra.client_config().create();
    if let Ok(admin) = admin {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        if let Err(e) = admin.delete_topics(&names, &opts).await {
            eprintln!("bench: could not delete the fanout topics: {e}");
        }
    }
}
