//! The OS processes of a run: spawned from this very binary with a subcommand, each with
//! its own log file, killed, frozen, thawed and stopped by pid.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::{Result, say};

pub struct Procs {
    exe: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    pids: PathBuf,
    live: BTreeMap<String, (Vec<String>, Child)>,
}

impl Procs {
    pub fn new(exe: PathBuf, env: Vec<(String, String)>, logs: PathBuf, pids: PathBuf) -> Self {
        Procs {
            exe,
            env,
            logs,
            pids,
            live: BTreeMap::new(),
        }
    }

    /// Starts `chaos <args..>` as process `name`, appending its output to `<logs>/<name>.log`.
    pub fn spawn(&mut self, name: &str, args: &[String]) -> Result<u32> {
        std::fs::create_dir_all(&self.logs)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))?;
        let err = log.try_clone()?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pids)
        {
            let _ = writeln!(f, "{pid} {name}");
        }
        self.live.insert(name.to_string(), (args.to_vec(), child));
        Ok(pid)
    }

    /// Starts `name` again with the arguments it had.
    pub fn respawn(&mut self, name: &str, args: &[String]) -> Result<u32> {
        self.spawn(name, args)
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.live.get(name).and_then(|(_, c)| c.id())
    }

    pub fn is_live(&self, name: &str) -> bool {
        self.live.contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    /// SIGKILL, and wait until it is gone. Returns its arguments (to restart it).
    pub async fn kill(&mut self, name: &str) -> Option<Vec<String>> {
        let (args, mut child) = self.live.remove(name)?;
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        Some(args)
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) to the process.
    pub async fn signal(&self, name: &str, sig: &str) -> Result<()> {
        let pid = self
            .pid(name)
            .ok_or_else(|| format!("process {name} is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .await?;
        if !status.success() {
            return Err(format!("kill -{sig} {pid} ({name}) failed").into());
        }
        Ok(())
    }

    /// SIGCONT + SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status.
    pub async fn terminate(&mut self, name: &str, timeout: Duration) -> Option<ExitStatus> {
        let _ = self.signal(name, "CONT").await;
        let _ = self.signal(name, "TERM").await;
        let (_, mut child) = self.live.remove(name)?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                say(
                    "driver",
                    format!("{name} ignored SIGTERM for {timeout:?}: SIGKILL"),
                );
                let _ = child.start_kill();
                child.wait().await.ok()
            }
        }
    }

    /// Processes that exited on their own since the last call, with their arguments.
    pub fn exited(&mut self) -> Vec<(String, Vec<String>, ExitStatus)> {
        let mut out = Vec::new();
        let names: Vec<String> = self.live.keys().cloned().collect();
        for name in names {
            let done = match self.live.get_mut(&name) {
                Some((_, child)) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = done
                && let Some((args, _)) = self.live.remove(&name)
            {
                out.push((name, args, status));
            }
        }
        out
    }

    /// Stops every process (CONT + TERM in parallel, then KILL the stragglers).
    pub async fn stop_all(&mut self, timeout: Duration) {
        let names = self.names();
        for n in &names {
            let _ = self.signal(n, "CONT").await;
            let _ = self.signal(n, "TERM").await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for n in names {
            if let Some((_, mut child)) = self.live.remove(&n) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if tokio::time::timeout(left, child.wait()).await.is_err() {
                    say("driver", format!("{n} did not stop in time: SIGKILL"));
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }
}
