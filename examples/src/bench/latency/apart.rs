//! The consuming services in a process of their own: this program again, started with
//! [`CHILD_ENV`] set, on the scenario's namespace and database. It runs the typed consumer
//! and the inbox handler, prints `ready` once both have seen messages, and on `stop FIRST
//! LAST` (a line on its stdin), once both saw every seq in `FIRST..LAST`, prints one JSON line, `{"seen": [[seq, µs]..], "committed": [[seq,
//! µs]..]}`: when each event reached the consumer, and when the handler's transaction of
//! each committed (as in this process: the k-th body to finish counts as committed when
//! `handled` reaches k). One clock: the machine's.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_orm::KafkaOrm;
use sea_orm::{ConnectOptions, Database};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use super::receiver::{Counter, Finished, Receiver, Watcher, handler_commits, start_handler};
use crate::infra::{Result, Scenario};

/// Set (to the namespace) in the child's environment; the database name is in [`DB_ENV`].
pub const CHILD_ENV: &str = "KAFKA_ORM_BENCH_CONSUMERS_NAMESPACE";
const DB_ENV: &str = "KAFKA_ORM_BENCH_CONSUMERS_DATABASE";

/// The consuming services' process, seen from the bench.
pub struct Apart {
    child: Child,
    stdin: ChildStdin,
    ready: Arc<AtomicBool>,
    report: Option<oneshot::Receiver<String>>,
}

/// What the other process reported: (seq, µs) seen and (index from `first`, µs) committed.
pub type Report = (Vec<(i64, i64)>, Vec<(usize, i64)>);

impl Apart {
    /// Starts the consuming services for `sc` in a new process.
    pub async fn spawn(sc: &Scenario) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_ENV, &sc.namespace)
            .env(DB_ENV, &sc.db_name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or("no stdin of the consumers' process")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout of the consumers' process")?;
        let ready = Arc::new(AtomicBool::new(false));
        let (tx, report) = oneshot::channel();
        let flag = Arc::clone(&ready);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "ready" {
                    flag.store(true, Ordering::Relaxed);
                } else if line.starts_with('{')
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        Ok(Apart {
            child,
            stdin,
            ready,
            report: Some(report),
        })
    }

    /// Whether the other process's consumers have seen messages.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Asks for the report and keeps the seqs `first..last`.
    pub async fn report(&mut self, first: i64, last: i64) -> Result<Report> {
        self.stdin
            .write_all(format!("stop {first} {last}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let report = self.report.take().ok_or("the report was asked for twice")?;
        let line = tokio::time::timeout(Duration::from_secs(60), report)
            .await
            .map_err(|_| "the consumers' process sent no report within 60 s")?
            .map_err(|_| "the consumers' process ended without a report")?;
        let doc: serde_json::Value = serde_json::from_str(&line)?;
        let pairs = |name: &str| -> Vec<(i64, i64)> {
            doc[name]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| Some((p[0].as_i64()?, p[1].as_i64()?)))
                        .filter(|(seq, _)| (first..last).contains(seq))
                        .collect()
                })
                .unwrap_or_default()
        };
        let seen = pairs("seen");
        if seen.len() as i64 != last - first {
            return Err(format!(
                "the consumers' process saw {} of {}",
                seen.len(),
                last - first
            )
            .into());
        }
        let committed = pairs("committed")
            .into_iter()
            .map(|(seq, at)| ((seq - first) as usize, at))
            .collect();
        Ok((seen, committed))
    }

    /// Ends the other process (after its report).
    pub async fn kill(mut self) -> Result<()> {
        let _ = self.stdin.shutdown().await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The other process: runs the consuming services until told to stop (see the module
/// docs). Called from `main` when [`CHILD_ENV`] is set.
pub async fn child_main() {
    if let Err(e) = serve().await {
        eprintln!("bench consumers: {e}");
        std::process::exit(1);
    }
}

/// Waits until the handler finished (and committed) every seq of `seqs`, at most 60 s.
async fn all_handled(
    handler: &kafka_orm::RunningHandler,
    finished: &Finished,
    seqs: std::ops::Range<i64>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (done, total) = {
            let f = finished.lock().unwrap();
            let done = f.iter().filter(|(seq, _)| seqs.contains(seq)).count();
            (done as i64, f.len() as u64)
        };
        if done >= seqs.end - seqs.start && handler.stats().handled >= total {
            // The watcher samples every 0.2 ms: let it see the last commit.
            tokio::time::sleep(Duration::from_millis(5)).await;
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the handler finished {done} of {} within 60 s",
                seqs.end - seqs.start
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve() -> Result<()> {
    let namespace = std::env::var(CHILD_ENV)?;
    let db_name = std::env::var(DB_ENV)?;
    let infra = crate::infra::Infra::from_env()?;
    let base = infra
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&infra.database_url);
    let mut opts = ConnectOptions::new(format!("{base}/{db_name}"));
    opts.max_connections(8).sqlx_logging(false);
    let db = Database::connect(opts).await?;
    let orm = KafkaOrm::builder()
        .bootstrap_servers(&infra.bootstrap)
        .namespace(&namespace)
        .connect_timeout(Duration::from_secs(30))
        .database(db.clone())
        .build()
        .await?;
    let finished: Finished = Arc::default();
    let handler = Arc::new(start_handler(&orm, &finished).await?);
    let receiver = Receiver::start(&orm, &db, false).await?;
    let watched = Arc::clone(&handler);
    let counters: Vec<Counter> = vec![Box::new(move || watched.stats().handled)];
    let watcher = Watcher::start(counters);
    let (stop_tx, mut stop_rx) = oneshot::channel::<(i64, i64)>();
    // A thread of its own: blocking reads of stdin.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            if words.next() == Some("stop") {
                let mut n = || words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let _ = stop_tx.send((n(), n()));
                return;
            }
        }
    });
    let mut said_ready = false;
    let (first, last) = loop {
        tokio::select! {
            range = &mut stop_rx => break range.unwrap_or((0, 0)),
            _ = tokio::time::sleep(Duration::from_millis(10)), if !said_ready => {
                if !receiver.seen.lock().unwrap().is_empty() && handler.stats().handled > 0 {
                    said_ready = true;
                    println!("ready");
                }
            }
        }
    };
    receiver.wait_all(first..last, 60).await?;
    all_handled(&handler, &finished, first..last).await?;
    let marks = watcher.stop()?;
    let mut finished = std::mem::take(&mut *finished.lock().unwrap());
    let committed = handler_commits(&mut finished, &marks[0], 0, 0)?;
    let seen: Vec<(i64, i64)> = receiver
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(seq, (got, _))| (*seq, *got))
        .collect();
    let committed: Vec<(i64, i64)> = committed
        .into_iter()
        .map(|(k, at)| (k as i64, at))
        .collect();
    println!(
        "{}",
        serde_json::json!({ "seen": seen, "committed": committed })
    );
    receiver.stop().await?;
    if let Ok(h) = Arc::try_unwrap(handler) {
        h.shutdown().await?;
    }
    Ok(())
}
