//! The benchmark program cannot rot: its quick mode runs against the real Kafka and
//! PostgreSQL (`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`) and its JSON has every field.
//!
//! It runs `cargo run -p kafka-orm-examples --bin bench -- --quick` in this test's profile
//! (the figures of a debug build mean nothing; that the program works does) and writes
//! `target/bench/quick-test.json`, leaving `target/bench/latest.json` to real runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_orm_tests::{kafka_bootstrap, postgres_url};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// Rows the quick run must report (measured or skipped with a reason, never failed).
const EXPECTED: &[&str] = &[
    "raw_produce",
    "raw_claim",
    "relay_throughput",
    "publish_overhead",
    "relay_latency",
    "outbox_to_consumer_latency",
    "inbox_throughput",
    "raw_consume_batch_insert",
    "raw_per_message_txn",
    "inbox_txn_limit",
    "end_to_end_latency",
    "relay_backlog",
    "relay_peak_rss",
    "relay_fanout",
    "handler_lag",
    "handler_peak_rss",
    "inbox_prefilled",
    "macro_cost",
];

#[test]
fn bench_quick_mode_runs_and_reports_every_field() {
    let (Some(_), Some(_)) = (kafka_bootstrap(), postgres_url()) else {
        return;
    };
    let root = workspace_root();
    let out = root.join("target/bench/quick-test.json");
    let _ = std::fs::remove_file(&out);

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "run",
            "-q",
            "-p",
            "kafka-orm-examples",
            "--bin",
            "bench",
            "--",
        ])
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .current_dir(&root)
        .stdin(Stdio::null())
        .spawn()
        .expect("running cargo");
    // Building the program may take a while on a cold tree; the run itself is short.
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the quick bench did not finish within 20 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the quick bench failed: {status}");

    let text = std::fs::read_to_string(&out).expect("the bench wrote its JSON");
    let doc: Value = serde_json::from_str(&text).expect("the bench's JSON parses");
    assert_eq!(doc["mode"], "quick");
    assert!(
        doc["date"].as_str().is_some_and(|d| d.len() == 10),
        "{}",
        doc["date"]
    );
    let cores = doc["cores"].as_u64().expect("cores");
    assert!(cores >= 1);
    let scenarios = doc["scenarios"].as_array().expect("scenarios");

    for name in EXPECTED {
        assert!(
            scenarios.iter().any(|s| s["name"] == *name),
            "no `{name}` in the report"
        );
    }
    for s in scenarios {
        let name = s["name"].as_str().expect("name");
        let params = &s["parameters"];
        for p in ["messages", "payload_bytes", "partitions", "concurrency"] {
            assert!(params[p].is_u64(), "{name}: parameters.{p} missing: {s}");
        }
        assert_eq!(s["cores"].as_u64(), Some(cores), "{name}: cores");
        assert!(s.get("error").is_none(), "{name} failed: {}", s["error"]);
        if let Some(reason) = s.get("skipped") {
            assert!(
                reason.as_str().is_some_and(|r| !r.is_empty()),
                "{name}: a skip says why"
            );
            assert!(
                s.get("figure").is_none(),
                "{name}: a skipped row has no figure"
            );
            continue;
        }
        let figure = s["figure"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: figure: {s}"));
        assert!(figure.is_finite(), "{name}: figure {figure}");
        assert!(
            s["unit"].as_str().is_some_and(|u| !u.is_empty()),
            "{name}: unit"
        );
        for key in ["baseline", "baseline_name", "ratio"] {
            assert!(s.get(key).is_some(), "{name}: `{key}` missing: {s}");
        }
        if let Some(baseline) = s["baseline"].as_f64() {
            let ratio = s["ratio"].as_f64().expect("a baseline comes with a ratio");
            assert!(
                (ratio - figure / baseline).abs() <= 1e-3 * ratio.abs(),
                "{name}: ratio {ratio} is not {figure} / {baseline}"
            );
        }
    }

    // Throughput figures are real numbers, not placeholders.
    for name in [
        "raw_produce",
        "raw_claim",
        "relay_throughput",
        "publish_overhead",
    ] {
        for s in scenarios.iter().filter(|s| s["name"] == name) {
            assert!(s["figure"].as_f64().is_some_and(|f| f > 0.0), "{name}: {s}");
        }
    }
    let relays: Vec<u64> = scenarios
        .iter()
        .filter(|s| s["name"] == "relay_throughput")
        .map(|s| s["parameters"]["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(
        relays,
        vec![1, 2, 4],
        "relay_throughput with 1, 2 and 4 instances"
    );
    let relay = scenarios
        .iter()
        .find(|s| s["name"] == "relay_throughput")
        .unwrap();
    assert_eq!(relay["baseline_name"], "serial limit");

    // Every handler row is measured against a same-shape limit, and the measured child
    // processes report a peak RSS.
    for s in scenarios.iter().filter(|s| s["name"] == "inbox_throughput") {
        let baseline = s["baseline_name"].as_str().unwrap_or_default();
        assert!(baseline.starts_with("inbox_txn_limit"), "{s}");
    }
    for name in ["relay_peak_rss", "handler_peak_rss"] {
        for s in scenarios.iter().filter(|s| s["name"] == name) {
            assert!(
                s["figure"].as_f64().is_some_and(|mib| mib > 1.0),
                "{name}: {s}"
            );
            assert_eq!(s["unit"], "MiB", "{name}");
        }
    }
}
