//! The measured child processes (`bench-child`, `bench-fanout`; protocol in
//! `child/common.rs`): built on first use with `cargo build` in this program's profile,
//! spawned on a scenario's database and namespace, driven over stdin/stdout, their memory
//! read from `/proc/<pid>/status` while they live (`VmHWM`: peak resident set; `VmRSS`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::OnceCell;

use crate::infra::{Result, Scenario};
use crate::workspace_root;

/// The child programs, next to this one.
const PROGRAMS: [&str; 2] = ["bench-child", "bench-fanout"];

/// Builds the child programs once per run (a no-op when they are fresh).
async fn build() -> Result<()> {
    static BUILT: OnceCell<std::result::Result<(), String>> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "-p", "kafka-orm-examples"]);
            for p in PROGRAMS {
                cmd.args(["--bin", p]);
            }
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            if workspace_root().join("Cargo.lock").exists() {
                cmd.arg("--locked");
            }
            let status = cmd
                .current_dir(workspace_root())
                .stdin(Stdio::null())
                .status()
                .await
                .map_err(|e| format!("running cargo build for {PROGRAMS:?}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("cargo build of {PROGRAMS:?} failed: {status}"))
            }
        })
        .await
        .clone()
        .map_err(Into::into)
}

fn program(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing after cargo build", path.display()).into())
    }
}

/// The URL of a scenario's own database.
pub fn database_url(sc: &Scenario) -> String {
    let base = sc
        .infra
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&sc.infra.database_url);
    format!("{base}/{}", sc.db_name)
}

/// Memory of a process, in MiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM`: the peak resident set so far.
    pub peak_mib: f64,
    /// `VmRSS`: resident now.
    pub rss_mib: f64,
}

/// Reads `/proc/<pid>/status`.
pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> Result<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
    };
    Ok(Memory {
        peak_mib: kib("VmHWM:")? / 1024.0,
        rss_mib: kib("VmRSS:")? / 1024.0,
    })
}

/// One `stats` line: the child's clock (seconds since `start`) and its counters.
#[derive(Debug, Clone)]
pub struct Stats {
    pub secs: f64,
    pub values: Vec<u64>,
}

/// A running child.
pub struct Measured {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Memory once its context was built, before `start`.
    pub at_ready: Memory,
}

impl Measured {
    /// Builds the programs if need be, starts `program args` on `sc`'s database and
    /// namespace and waits (at most 2 minutes) until it says `ready`.
    pub async fn spawn(program_name: &str, args: &[&str], sc: &Scenario) -> Result<Self> {
        Self::spawn_with_env(program_name, args, sc, &[]).await
    }

    /// [`Measured::spawn`] with more environment variables (`BENCH_CONSUMER_SET`:
    /// `key=value;..` given to the child's `consumer_set`).
    pub async fn spawn_with_env(
        program_name: &str,
        args: &[&str],
        sc: &Scenario,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        build().await?;
        let mut child = Command::new(program(program_name)?)
            .args(args)
            .envs(env.iter().copied())
            .env("DATABASE_URL", database_url(sc))
            .env("KAFKA_BOOTSTRAP_SERVERS", &sc.infra.bootstrap)
            .env("BENCH_NAMESPACE", &sc.namespace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {program_name}: {e}"))?;
        let pid = child.id().ok_or("the child exited at once")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut me = Measured {
            child,
            pid,
            stdin,
            lines: BufReader::new(stdout).lines(),
            at_ready: Memory::default(),
        };
        let line = me.line(Duration::from_secs(120)).await?;
        if line != "ready" {
            return Err(format!("{program_name} said `{line}` instead of `ready`").into());
        }
        me.at_ready = memory(pid)?;
        Ok(me)
    }

    async fn line(&mut self, within: Duration) -> Result<String> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => {
                let status = self.child.wait().await?;
                Err(format!("the child exited ({status}); see its stderr above").into())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(format!("the child said nothing for {within:?}").into()),
        }
    }

    async fn send(&mut self, command: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Starts the relay or handler.
    pub async fn start(&mut self) -> Result<()> {
        self.send("start").await
    }

    /// The next `stats` line.
    pub async fn stats(&mut self) -> Result<Stats> {
        loop {
            let line = self.line(Duration::from_secs(30)).await?;
            let mut words = line.split_whitespace();
            if words.next() != Some("stats") {
                continue;
            }
            let micros: u64 = words.next().and_then(|w| w.parse().ok()).ok_or("stats")?;
            let values = words.map(|w| w.parse().unwrap_or(0)).collect();
            return Ok(Stats {
                secs: micros as f64 / 1e6,
                values,
            });
        }
    }

    /// Its memory now.
    pub fn memory(&self) -> Result<Memory> {
        memory(self.pid)
    }

    /// Reads its memory, asks it to stop and waits (at most a minute) until it exited.
    pub async fn stop(mut self) -> Result<Memory> {
        let memory = self.memory()?;
        self.send("stop").await?;
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(_)) = self.lines.next_line().await {}
            self.child.wait().await
        })
        .await;
        match waited {
            Ok(Ok(status)) if status.success() => Ok(memory),
            Ok(Ok(status)) => Err(format!("the child exited with {status} on stop").into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err("the child did not stop within a minute".into())
            }
        }
    }
}
