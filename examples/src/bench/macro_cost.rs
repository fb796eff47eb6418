//! `macro_cost`: what `#[derive(Topic)]` costs at compile time.
//!
//! Crates are generated under `target/bench/macro_cost/<mode>/`, each with the same 50
//! structs (5 fields; every other one with `outbox`): `derive` with
//! `#[derive(Serialize, Deserialize, Topic)]`, `lean` the same with kafka-orm's default
//! `entities` feature off (no SeaORM entity modules), `serde` with the serde derives only,
//! `plain` with neither; `derive-full`, `lean-full` and `serde-full` are `derive`, `lean`
//! and `serde` with rustc's incremental compilation off for the crate. They depend on the workspace's `kafka-orm` by
//! path and build in `target/bench/macro-target` (the main target dir is left alone). In
//! quick mode the scenario is skipped while that directory is cold.
//!
//! - `macro_cost`: the debug build time of `touch src/lib.rs && cargo build` for `derive`
//!   and `lean`, baseline `serde`, after one warm-up build; median of 5 runs (1 in quick mode),
//!   alternating the crates. With incremental compilation (a developer's edit loop: the
//!   macros run again, most else is reused) and without (the whole crate compiled again).
//! - `macro_expansion`: lines of `rustc -Zunpretty=expanded` output (non-blank) per topic:
//!   (`derive` − `serde`) / 50 and (`lean` − `serde`) / 50, baseline (`serde` − `plain`) / 50,
//!   i.e. what serde's two derives expand to per struct. `-Z` flags need `RUSTC_BOOTSTRAP=1`; it is given to the
//!   final rustc only (through a `RUSTC_WRAPPER`), because setting it for the whole cargo
//!   run would rebuild proc-macro2 and everything above it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::report::{Baseline, Figure, Outcome, Params, Progress};
use crate::{Config, workspace_root};

type Result<T> = std::result::Result<T, String>;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Derive,
    /// `Derive` without kafka-orm's `entities` feature.
    Lean,
    Serde,
    Plain,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Derive => "derive",
            Variant::Lean => "lean",
            Variant::Serde => "serde",
            Variant::Plain => "plain",
        }
    }
}

/// One generated crate: a variant, built with rustc's incremental compilation (as `cargo
/// build` in a dev loop) or without it (the whole crate compiled again).
#[derive(Clone, Copy)]
struct Krate {
    variant: Variant,
    incremental: bool,
}

impl Krate {
    fn dir(self) -> String {
        if self.incremental {
            self.variant.name().to_string()
        } else {
            format!("{}-full", self.variant.name())
        }
    }
}

pub async fn run(config: &Config, progress: &Arc<Progress>) -> Vec<Outcome> {
    let config = config.clone();
    let progress = Arc::clone(progress);
    let params = Params {
        messages: config.macro_structs as u64,
        ..Params::default()
    };
    let result = tokio::task::spawn_blocking(move || measure(&config, &progress))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let build = |variant: &str, derive: f64, serde: f64, runs: usize, what: &str| {
        Outcome::measured(
            "macro_cost",
            params,
            Figure::new(derive, "s")
                .baseline(Baseline::new("serde derives only", serde))
                .extra("runs", runs)
                .extra("what", what),
        )
        .variant(variant)
    };
    let expansion = |variant: &str, lines: usize, serde: usize, plain: usize, what: &str| {
        let n = params.messages as f64;
        let per_topic = (lines as f64 - serde as f64) / n;
        let serde_per_struct = (serde as f64 - plain as f64) / n;
        Outcome::measured(
            "macro_expansion",
            params,
            Figure::new(per_topic, "lines/topic")
                .baseline(Baseline::new("serde's per struct", serde_per_struct))
                .extra("lines_derive", lines)
                .extra("lines_serde", serde)
                .extra("lines_plain", plain)
                .extra("what", what),
        )
        .variant(variant)
    };
    const INCREMENTAL: &str =
        "`touch src/lib.rs && cargo build` (debug, rustc incremental on), median";
    const FULL: &str =
        "`touch src/lib.rs && cargo build` (debug, incremental off for the crate), median";
    match result {
        Ok(Measured::Done {
            incremental,
            full,
            lines,
            runs,
        }) => {
            let [derive, lean, serde, plain] = lines;
            let (inc, fl) = (incremental, full);
            vec![
                build(
                    "touch + build, incremental",
                    inc.0,
                    inc.2,
                    runs,
                    INCREMENTAL,
                ),
                build("touch + build, crate recompiled", fl.0, fl.2, runs, FULL),
                build(
                    "touch + build, incremental, entities off",
                    inc.1,
                    inc.2,
                    runs,
                    INCREMENTAL,
                ),
                build(
                    "touch + build, crate recompiled, entities off",
                    fl.1,
                    fl.2,
                    runs,
                    FULL,
                ),
                expansion(
                    "expanded lines",
                    derive,
                    serde,
                    plain,
                    "non-blank lines of rustc -Zunpretty=expanded, (derive - serde) / structs",
                ),
                expansion(
                    "expanded lines, entities off",
                    lean,
                    serde,
                    plain,
                    "non-blank lines of rustc -Zunpretty=expanded, (lean - serde) / structs, \
                     kafka-orm without its `entities` feature",
                ),
            ]
        }
        Ok(Measured::Skipped(reason)) => vec![
            Outcome::skipped("macro_cost", params, reason.clone()).variant("build time"),
            Outcome::skipped("macro_expansion", params, reason).variant("expanded lines"),
        ],
        Err(e) => vec![Outcome::failed("macro_cost", params, e)],
    }
}

enum Measured {
    Done {
        /// Median seconds (derive, lean, serde), incremental on.
        incremental: (f64, f64, f64),
        /// Median seconds (derive, lean, serde), the crate recompiled.
        full: (f64, f64, f64),
        /// Expanded lines of derive, lean, serde, plain.
        lines: [usize; 4],
        runs: usize,
    },
    Skipped(String),
}

fn measure(config: &Config, progress: &Progress) -> Result<Measured> {
    let root = workspace_root();
    let base =
        root.join("target/bench/macro_cost")
            .join(if config.quick { "quick" } else { "full" });
    let target = root.join("target/bench/macro-target");
    if config.quick && !warm(&target) {
        return Ok(Measured::Skipped(
            "quick mode and target/bench/macro-target is cold (its first build compiles every \
             dependency, minutes); run ./scripts/bench --scenario macro_cost once to warm it"
                .into(),
        ));
    }
    let krate = |variant, incremental| Krate {
        variant,
        incremental,
    };
    // The order of `Measured`: derive, lean, serde; incremental, then not.
    let timed = [
        krate(Variant::Derive, true),
        krate(Variant::Lean, true),
        krate(Variant::Serde, true),
        krate(Variant::Derive, false),
        krate(Variant::Lean, false),
        krate(Variant::Serde, false),
    ];
    let plain = krate(Variant::Plain, true);
    for k in timed.iter().chain([&plain]) {
        generate(&root, &base.join(k.dir()), *k, config.macro_structs)?;
    }
    progress.phase("warm-up builds (the first one ever compiles the dependencies)");
    for k in timed {
        cargo(&base.join(k.dir()), &target, &["build"], None)?;
    }
    let runs = if config.quick { 1 } else { 5 };
    let mut times: [Vec<f64>; 6] = Default::default();
    for i in 0..runs {
        progress.phase(format!("touch + build, run {}/{runs}", i + 1));
        for (k, times) in timed.iter().zip(times.iter_mut()) {
            let dir = base.join(k.dir());
            touch(&dir.join("src/lib.rs"))?;
            let t0 = Instant::now();
            cargo(&dir, &target, &["build"], None)?;
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    progress.phase("expanding");
    let wrapper = base.join("rustc-bootstrap.sh");
    std::fs::write(&wrapper, "#!/bin/sh\nRUSTC_BOOTSTRAP=1 exec \"$@\"\n")
        .map_err(|e| format!("writing {}: {e}", wrapper.display()))?;
    set_executable(&wrapper)?;
    let mut lines = [0usize; 4];
    for (i, k) in [timed[0], timed[1], timed[2], plain]
        .into_iter()
        .enumerate()
    {
        let out = cargo(
            &base.join(k.dir()),
            &target,
            &["rustc", "--lib", "--", "-Zunpretty=expanded"],
            Some(&wrapper),
        )?;
        lines[i] = out.lines().filter(|l| !l.trim().is_empty()).count();
    }
    let [a, b, c, d, e, f] = &mut times;
    Ok(Measured::Done {
        incremental: (median(a), median(b), median(c)),
        full: (median(d), median(e), median(f)),
        lines,
        runs,
    })
}

/// Whether the macro target dir holds a built kafka-orm runtime already.
fn warm(target: &Path) -> bool {
    std::fs::read_dir(target.join("debug/deps"))
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libkafka_orm_runtime-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn touch(path: &Path) -> Result<()> {
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(|e| format!("touching {}: {e}", path.display()))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// Runs cargo in the generated crate `dir`; returns its stdout.
fn cargo(dir: &Path, target: &Path, args: &[&str], wrapper: Option<&Path>) -> Result<String> {
    // Our flags go before a `--` (after it, they would be rustc's).
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut full: Vec<&str> = args[..split].to_vec();
    full.extend(["--offline", "--quiet"]);
    full.extend(&args[split..]);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(&full)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTC_BOOTSTRAP")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER");
    match wrapper {
        Some(w) => cmd.env("RUSTC_WRAPPER", w),
        None => cmd.env_remove("RUSTC_WRAPPER"),
    };
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo in {}: {e}", dir.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        return Err(format!(
            "cargo {} failed in {}:\n{}",
            args.join(" "),
            dir.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes the generated crate (only files whose content changed, so a warm crate stays
/// warm).
fn generate(root: &Path, dir: &Path, krate: Krate, structs: usize) -> Result<()> {
    let variant = krate.variant;
    let name = format!("macro-cost-{}", krate.dir());
    // Without incremental compilation, a touch recompiles the whole crate.
    let incremental = if krate.incremental {
        String::new()
    } else {
        format!("\n[profile.dev.package.{name}]\nincremental = false\n")
    };
    let kafka_orm = root.join("kafka-orm");
    let features = if variant == Variant::Lean {
        ", default-features = false"
    } else {
        ""
    };
    let manifest = format!(
        r#"# Generated by the kafka-orm bench (macro_cost); rewritten on each run.
[package]
name = "{name}"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
kafka-orm = {{ path = "{}"{features} }}
serde = {{ version = "1", features = ["derive"] }}

# Not part of the kafka-orm workspace.
[workspace]

# As the kafka-orm workspace builds.
[profile.dev]
debug = "line-tables-only"

[profile.dev.package."*"]
debug = false
{incremental}"#,
        kafka_orm.display()
    );
    let mut lib = String::from(
        "//! Generated by the kafka-orm bench (macro_cost).\n#![allow(dead_code)]\n\n",
    );
    match variant {
        Variant::Derive | Variant::Lean => {
            lib.push_str("use kafka_orm::Topic;\nuse serde::{Deserialize, Serialize};\n\n")
        }
        Variant::Serde => lib.push_str("use serde::{Deserialize, Serialize};\n\n"),
        Variant::Plain => {}
    }
    for i in 0..structs {
        match variant {
            Variant::Derive | Variant::Lean => {
                let outbox = if i % 2 == 0 { ", outbox" } else { "" };
                lib.push_str(&format!(
                    "#[derive(Debug, Clone, Serialize, Deserialize, Topic)]\n\
                     #[topic(name = \"bench.macro.topic-{i}\", key = \"customer_id\"{outbox}, partitions = 3, group = \"group-{i}\")]\n"
                ));
            }
            Variant::Serde => lib.push_str("#[derive(Debug, Clone, Serialize, Deserialize)]\n"),
            Variant::Plain => lib.push_str("#[derive(Debug, Clone)]\n"),
        }
        lib.push_str(&format!(
            "pub struct Event{i} {{\n    pub order_id: i64,\n    pub customer_id: String,\n    \
             pub total_cents: i64,\n    pub note: String,\n    pub created_at_ms: i64,\n}}\n\n"
        ));
    }
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    write_if_changed(&dir.join("src/lib.rs"), &lib)?;
    // The workspace's lock file: same dependency versions, and `--offline` works.
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    write_if_changed(&dir.join("Cargo.lock"), &lock)?;
    Ok(())
}

fn write_if_changed(path: &PathBuf, content: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(path, content).map_err(|e| format!("writing {}: {e}", path.display()))
}
