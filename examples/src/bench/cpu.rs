//! How busy the machine's cores were over a measured interval (`/proc/stat`), so that a
//! throughput figure says whether the cores were its limit: the broker, PostgreSQL and the
//! bench share them.

use std::time::Instant;

/// The machine's CPU counters at one moment.
pub struct CpuSample {
    busy: u64,
    total: u64,
    at: Instant,
}

impl CpuSample {
    /// Now (`None` where `/proc/stat` cannot be read).
    pub fn now() -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        let total: u64 = ticks.iter().take(8).sum();
        Some(CpuSample {
            busy: total - idle,
            total,
            at: Instant::now(),
        })
    }

    /// The share of all cores busy since this sample (0..1), and over how many seconds.
    pub fn busy_since(&self) -> Option<(f64, f64)> {
        let now = CpuSample::now()?;
        let total = now.total.checked_sub(self.total)?.max(1);
        let busy = now.busy.checked_sub(self.busy)?;
        Some((busy as f64 / total as f64, self.at.elapsed().as_secs_f64()))
    }
}

/// `figure`'s `extra.machine_cpu_busy`: the share of all cores busy since `since`, rounded.
pub fn busy_extra(since: &Option<CpuSample>) -> serde_json::Value {
    match since.as_ref().and_then(CpuSample::busy_since) {
        Some((share, _)) => serde_json::json!((share * 1000.0).round() / 1000.0),
        None => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sample_reads_proc_stat_and_a_share_is_a_fraction() {
        let Some(s) = super::CpuSample::now() else {
            return; // not Linux
        };
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let (share, secs) = s.busy_since().expect("a second sample");
        assert!((0.0..=1.0).contains(&share), "{share}");
        assert!(secs >= 0.0);
    }
}
