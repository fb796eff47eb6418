//! `bench-child`: a relay or a handler process whose memory the bench measures (peak RSS,
//! `VmHWM` in `/proc/<pid>/status`, read by the parent). Started by the bench's scale
//! scenarios (`examples/src/bench/scale.rs`), never by hand:
//!
//! ```text
//! bench-child relay
//! bench-child handler batch|single CONCURRENCY [MAX_PENDING]
//! ```
//!
//! with `DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS` and `BENCH_NAMESPACE` of the scenario.
//! Only the bench event is registered, so the relay serves one outbox table, as the
//! in-process scenarios' relays do; the handler is the bench's own (`business.rs`). The
//! line protocol is in `common.rs`.

// The bench's handlers and event type, exactly as the in-process scenarios use them.
#[allow(dead_code)]
#[path = "../business.rs"]
mod business;
mod common;
#[allow(dead_code)]
#[path = "../events.rs"]
mod events;

/// What `events.rs` takes from the bench's `infra` module.
mod infra {
    /// Microseconds since the Unix epoch (the events' timestamps).
    pub fn now_us() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

use common::Result;
use events::BenchEvent;

#[tokio::main]
async fn main() {
    common::exit_on_error("bench-child", run().await);
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut commands = common::commands();
    match args.as_slice() {
        ["relay"] => {
            let orm = common::context().await?;
            common::relay(&orm, &mut commands).await
        }
        [
            "handler",
            mode @ ("batch" | "single"),
            concurrency,
            rest @ ..,
        ] if rest.len() <= 1 => {
            let concurrency: usize = concurrency.parse()?;
            let max_pending: Option<usize> = rest.first().map(|n| n.parse()).transpose()?;
            let orm = common::context().await?;
            common::ready(&mut commands).await?;
            let topic = orm.topic::<BenchEvent>();
            // `max_pending(n)` when MAX_PENDING was given; the handler's defaults otherwise.
            macro_rules! spawn {
                ($builder:expr) => {
                    match max_pending {
                        Some(n) => $builder.max_pending(n).spawn().await?,
                        None => $builder.spawn().await?,
                    }
                };
            }
            let running = if *mode == "batch" {
                spawn!(
                    topic
                        .batch_handler(
                            business::BATCH,
                            business::BATCH_WAIT,
                            business::handle_batch
                        )
                        .concurrency(concurrency)
                )
            } else {
                spawn!(topic.handler(business::handle).concurrency(concurrency))
            };
            common::report_until_stop(&mut commands, || {
                let s = running.stats();
                vec![
                    s.handled,
                    s.duplicates,
                    s.transactions,
                    s.latency_p50.as_micros() as u64,
                    s.latency_p99.as_micros() as u64,
                    u64::from(running.is_finished()),
                ]
            })
            .await;
            let s = running.stats();
            running.shutdown().await?;
            println!("stopped {} {}", s.handled, s.duplicates);
            Ok(())
        }
        _ => {
            Err("usage: bench-child relay | handler batch|single CONCURRENCY [MAX_PENDING]".into())
        }
    }
}
