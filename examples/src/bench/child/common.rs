//! What both measured child processes share: the context (built as the parent's scenario
//! builds its own), the line protocol with the parent, and the relay's loop.
//!
//! Protocol, one line each: the child prints `ready` once its context is built (the parent
//! reads its memory then) and waits for `start`; it then prints `stats <µs since start>
//! <counters..>` every 10 ms until `stop` (or stdin closes), shuts down, prints `stopped
//! <counters..>` and exits 0. Errors go to stderr with exit code 1.

use std::time::{Duration, Instant};

use kafka_orm::KafkaOrm;
use sea_orm::{ConnectOptions, Database};
use tokio::sync::mpsc;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| format!("`{name}` is not set (the bench sets it)").into())
}

/// The context on the scenario's database (`DATABASE_URL`), broker
/// (`KAFKA_BOOTSTRAP_SERVERS`) and namespace (`BENCH_NAMESPACE`), with the pool settings
/// of the parent's scenarios, and the consumer settings of `BENCH_CONSUMER_SET`.
pub async fn context() -> Result<KafkaOrm> {
    let mut opts = ConnectOptions::new(var("DATABASE_URL")?);
    opts.max_connections(16)
        .min_connections(2)
        .sqlx_logging(false);
    let db = Database::connect(opts).await?;
    let mut builder = KafkaOrm::builder()
        .bootstrap_servers(var("KAFKA_BOOTSTRAP_SERVERS")?)
        .namespace(var("BENCH_NAMESPACE")?)
        .connect_timeout(Duration::from_secs(30))
        .database(db);
    // `key=value;..`: consumer settings of a run (e.g. a bounded prefetch).
    for pair in std::env::var("BENCH_CONSUMER_SET")
        .unwrap_or_default()
        .split(';')
    {
        if let Some((key, value)) = pair.split_once('=') {
            builder = builder.consumer_set(key.trim(), value.trim());
        }
    }
    Ok(builder.build().await?)
}

/// The parent's lines, read by a thread of their own; closed when stdin is.
pub fn commands() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(line.trim().to_string()).is_err() {
                return;
            }
            line.clear();
        }
    });
    rx
}

/// Says `ready` and waits for `start`.
pub async fn ready(commands: &mut mpsc::UnboundedReceiver<String>) -> Result<()> {
    println!("ready");
    loop {
        match commands.recv().await.as_deref() {
            Some("start") => return Ok(()),
            Some(_) => continue,
            None => return Err("stdin closed before `start`".into()),
        }
    }
}

/// Prints `stats <µs> <counters..>` every 10 ms until `stop` or the end of stdin.
pub async fn report_until_stop(
    commands: &mut mpsc::UnboundedReceiver<String>,
    counters: impl Fn() -> Vec<u64>,
) {
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            c = commands.recv() => match c.as_deref() {
                Some("stop") | None => return,
                Some(_) => {}
            },
            _ = tick.tick() => {
                let values: Vec<String> = counters().iter().map(u64::to_string).collect();
                println!("stats {} {}", t0.elapsed().as_micros(), values.join(" "));
            }
        }
    }
}

/// One relay instance over every registered outbox topic; counters: delivered, failed,
/// owned buckets.
pub async fn relay(orm: &KafkaOrm, commands: &mut mpsc::UnboundedReceiver<String>) -> Result<()> {
    ready(commands).await?;
    let relay = orm
        .outbox_relay()
        .instance_id("bench-child-relay")
        .spawn()
        .await?;
    report_until_stop(commands, || {
        let s = relay.stats();
        vec![s.delivered, s.failed, s.owned_buckets as u64]
    })
    .await;
    let s = relay.shutdown().await?;
    println!("stopped {} {}", s.delivered, s.failed);
    Ok(())
}

/// Exits 1 with the error on stderr.
pub fn exit_on_error(program: &str, r: Result<()>) {
    if let Err(e) = r {
        eprintln!("{program}: {e}");
        std::process::exit(1);
    }
}
