//! What a scenario reports, the readable table and the JSON file.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The size of a scenario, as recorded in the JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params {
    /// Messages (rows, transactions, structs for `macro_cost`) measured.
    pub messages: u64,
    /// Payload size of each message in bytes (0 where it does not apply).
    pub payload_bytes: usize,
    /// Partitions of the topic (0 where it does not apply).
    pub partitions: i32,
    /// Producers, relay instances or consumers working at once.
    pub concurrency: usize,
}

/// A figure a result is compared with, measured in the same run.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub name: String,
    pub figure: f64,
}

impl Baseline {
    pub fn new(name: impl Into<String>, figure: f64) -> Self {
        Baseline {
            name: name.into(),
            figure,
        }
    }
}

/// A goal from the issue, checked on the ratio or on the figure.
#[derive(Debug, Clone)]
pub struct Goal {
    pub text: String,
    pub met: bool,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub value: f64,
    pub unit: &'static str,
    /// `None` for a scenario that *is* a baseline.
    pub baseline: Option<Baseline>,
    /// Further baselines, each with its own ratio.
    pub more_baselines: Vec<Baseline>,
    pub goals: Vec<Goal>,
    /// Scenario-specific numbers (rates behind a time ratio, percentiles, ...).
    pub extra: Map<String, Value>,
}

impl Figure {
    pub fn new(value: f64, unit: &'static str) -> Self {
        Figure {
            value,
            unit,
            baseline: None,
            more_baselines: Vec::new(),
            goals: Vec::new(),
            extra: Map::new(),
        }
    }
    pub fn baseline(mut self, b: Baseline) -> Self {
        self.baseline = Some(b);
        self
    }
    pub fn also(mut self, b: Baseline) -> Self {
        self.more_baselines.push(b);
        self
    }
    pub fn goal(mut self, text: impl Into<String>, met: bool) -> Self {
        self.goals.push(Goal {
            text: text.into(),
            met,
        });
        self
    }
    pub fn extra(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }
    /// The ratio to the main baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|b| ratio(self.value, b.figure))
    }
}

fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        f64::NAN
    } else {
        value / baseline
    }
}

/// How a scenario ended.
#[derive(Debug, Clone)]
pub enum Result {
    Measured(Figure),
    /// The feature does not exist (yet), or cannot be measured here: never a made-up number.
    Skipped(String),
    /// The scenario failed; the run exits non-zero.
    Failed(String),
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub variant: Option<String>,
    pub params: Params,
    pub result: Result,
    pub seconds: f64,
}

impl Outcome {
    pub fn measured(name: &'static str, params: Params, figure: Figure) -> Self {
        Outcome {
            name,
            variant: None,
            params,
            result: Result::Measured(figure),
            seconds: 0.0,
        }
    }
    pub fn skipped(name: &'static str, params: Params, reason: impl Into<String>) -> Self {
        Outcome {
            name,
            variant: None,
            params,
            result: Result::Skipped(reason.into()),
            seconds: 0.0,
        }
    }
    pub fn failed(name: &'static str, params: Params, error: impl Into<String>) -> Self {
        Outcome {
            name,
            variant: None,
            params,
            result: Result::Failed(error.into()),
            seconds: 0.0,
        }
    }
    pub fn variant(mut self, v: impl Into<String>) -> Self {
        self.variant = Some(v.into());
        self
    }
    pub fn figure(&self) -> Option<&Figure> {
        match &self.result {
            Result::Measured(f) => Some(f),
            _ => None,
        }
    }

    pub fn to_json(&self, cores: usize) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), json!(self.name));
        o.insert("variant".into(), json!(self.variant));
        o.insert(
            "parameters".into(),
            json!({
                "messages": self.params.messages,
                "payload_bytes": self.params.payload_bytes,
                "partitions": self.params.partitions,
                "concurrency": self.params.concurrency,
            }),
        );
        o.insert("cores".into(), json!(cores));
        o.insert("seconds".into(), json!(round(self.seconds, 3)));
        match &self.result {
            Result::Measured(f) => {
                o.insert("figure".into(), sig(f.value));
                o.insert("unit".into(), json!(f.unit));
                o.insert(
                    "baseline_name".into(),
                    json!(f.baseline.as_ref().map(|b| b.name.clone())),
                );
                o.insert(
                    "baseline".into(),
                    json!(f.baseline.as_ref().map(|b| sig(b.figure))),
                );
                o.insert("ratio".into(), json!(f.ratio().map(sig)));
                o.insert(
                    "more_baselines".into(),
                    Value::Array(
                        f.more_baselines
                            .iter()
                            .map(|b| {
                                json!({
                                    "name": b.name,
                                    "figure": sig(b.figure),
                                    "ratio": sig(ratio(f.value, b.figure)),
                                })
                            })
                            .collect(),
                    ),
                );
                o.insert(
                    "goals".into(),
                    Value::Array(
                        f.goals
                            .iter()
                            .map(|g| json!({"goal": g.text, "met": g.met}))
                            .collect(),
                    ),
                );
                o.insert("extra".into(), Value::Object(f.extra.clone()));
            }
            Result::Skipped(reason) => {
                o.insert("skipped".into(), json!(reason));
            }
            Result::Failed(error) => {
                o.insert("error".into(), json!(error));
            }
        }
        Value::Object(o)
    }
}

/// Rounds to `digits` decimals; NaN and infinities become null in the JSON.
pub fn round(v: f64, digits: i32) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    let f = 10f64.powi(digits);
    json!((v * f).round() / f)
}

/// Rounds to 6 significant digits, so that small figures (seconds, ms) keep precision.
pub fn sig(v: f64) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    if v == 0.0 {
        return json!(0.0);
    }
    let digits = 5 - v.abs().log10().floor() as i32;
    round(v, digits.max(0))
}

/// A number for people: thousands separators, three significant digits below 100.
pub fn human(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v.abs() >= 100.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The readable table, one row per outcome.
pub fn table(outcomes: &[Outcome]) -> String {
    let header = [
        "scenario", "variant", "size", "figure", "baseline", "ratio", "goal",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut notes = Vec::new();
    for o in outcomes {
        let variant = o.variant.clone().unwrap_or_default();
        let size = if o.params.messages >= 100 {
            human(o.params.messages as f64)
        } else if o.params.messages > 0 {
            o.params.messages.to_string()
        } else {
            String::new()
        };
        match &o.result {
            Result::Measured(f) => {
                let baseline = f
                    .baseline
                    .as_ref()
                    .map(|b| format!("{} {} {}", b.name, human(b.figure), f.unit))
                    .unwrap_or_else(|| "(baseline)".into());
                let shown = f.ratio().map(|r| format!("{r:.2}")).unwrap_or_default();
                let goal = f
                    .goals
                    .iter()
                    .map(|g| format!("{} {}", g.text, if g.met { "met" } else { "MISSED" }))
                    .collect::<Vec<_>>()
                    .join("; ");
                rows.push([
                    o.name.to_string(),
                    variant,
                    size,
                    format!("{} {}", human(f.value), f.unit),
                    baseline,
                    shown,
                    goal,
                ]);
                for b in &f.more_baselines {
                    rows.push([
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        format!("{} {} {}", b.name, human(b.figure), f.unit),
                        format!("{:.2}", ratio(f.value, b.figure)),
                        String::new(),
                    ]);
                }
            }
            Result::Skipped(reason) => {
                rows.push([
                    o.name.to_string(),
                    variant,
                    size,
                    "skipped".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                notes.push(format!("{}: skipped: {reason}", o.name));
            }
            Result::Failed(error) => {
                rows.push([
                    o.name.to_string(),
                    variant,
                    size,
                    "FAILED".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                notes.push(format!("{}: FAILED: {error}", o.name));
            }
        }
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            // Numbers right-aligned, words left-aligned.
            if matches!(i, 2 | 3 | 5) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    out.push_str(&line(&widths.map(|w| "-".repeat(w))));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// Today's date (UTC) as `YYYY-MM-DD`, and the time as `HH:MM:SSZ`.
pub fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!(
            "{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        ),
    )
}

/// The progress line on stderr: rewritten in place on a terminal, a line per step
/// (and at most one count every few seconds) otherwise.
pub struct Progress {
    tty: bool,
    state: Mutex<ProgressState>,
}

struct ProgressState {
    step: String,
    phase: String,
    started: Instant,
    last_print: Option<Instant>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(ProgressState {
                step: String::new(),
                phase: String::new(),
                started: Instant::now(),
                last_print: None,
            }),
        }
    }

    /// A new scenario starts: `[3/8] relay_throughput`.
    pub fn step(&self, step: String) {
        let mut s = self.state.lock().unwrap();
        s.step = step;
        s.phase.clear();
        s.last_print = None;
        drop(s);
        self.print(None, true);
    }

    /// A new phase inside the scenario.
    pub fn phase(&self, phase: impl Into<String>) {
        self.state.lock().unwrap().phase = phase.into();
        self.print(None, true);
    }

    /// Progress inside the phase.
    pub fn count(&self, done: u64, total: u64) {
        self.print(Some((done, total)), false);
    }

    fn print(&self, count: Option<(u64, u64)>, force: bool) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if !force && s.last_print.is_some_and(|t| now - t < every) {
            return;
        }
        s.last_print = Some(now);
        let elapsed = s.started.elapsed().as_secs_f64();
        let mut line = format!("{:>6.1}s {}", elapsed, s.step);
        if !s.phase.is_empty() {
            line.push_str(": ");
            line.push_str(&s.phase);
        }
        if let Some((done, total)) = count {
            let pct = if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            };
            line.push_str(&format!(" {pct:5.1}% ({done}/{total})"));
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the in-place line (terminal only).
    pub fn done(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}
