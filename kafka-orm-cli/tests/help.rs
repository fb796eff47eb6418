//! The binary without services: `--help` of every command against the plain-text
//! snapshots in `tests/help/` (the text an operator reads is reviewed like code;
//! `KAFKA_ORM_BLESS=1 cargo test -p kafka-orm-cli --test help` rewrites them, review the
//! diff), usage errors, and a reader that closes the pipe early.

use std::path::Path;
use std::process::Command;

const COMMANDS: &[&[&str]] = &[
    &[],
    &["topics"],
    &["outbox"],
    &["outbox", "status"],
    &["outbox", "retry"],
    &["dlq"],
    &["dlq", "list"],
    &["dlq", "show"],
    &["dlq", "replay"],
    &["lag"],
];

#[test]
fn help_texts_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/help");
    let bless = std::env::var("KAFKA_ORM_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for command in COMMANDS {
        let out = Command::new(env!("CARGO_BIN_EXE_kafka-orm"))
            .args(*command)
            .arg("--help")
            // The help would show none of them (hide_env_values), but be sure.
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env_remove("DATABASE_URL")
            .env_remove("KAFKA_ORM_TOPICS")
            .output()
            .expect("running kafka-orm");
        assert!(out.status.success(), "{command:?}: {out:?}");
        let text = String::from_utf8(out.stdout).expect("UTF-8 help");
        let name = if command.is_empty() {
            "kafka-orm".to_string()
        } else {
            command.join("-")
        };
        let file = dir.join(format!("{name}.txt"));
        if bless {
            std::fs::write(&file, &text).expect("writing a snapshot");
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(format!("{}:\n{text}", file.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "help differs from its snapshot (KAFKA_ORM_BLESS=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn bad_usage_exits_2_with_the_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-orm"))
        .args(["dlq", "show", "orders", "not-an-offset"])
        .output()
        .expect("running kafka-orm");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a position"), "{err}");
}

#[test]
fn a_reader_that_stops_early_is_not_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    // Enough topics that the table outgrows the pipe's buffer.
    let topics: Vec<serde_json::Value> = (0..20_000)
        .map(|i| {
            serde_json::json!({
                "type_name": format!("app::T{i}"), "name": format!("t{i}"), "kafka_topic": format!("t{i}"),
                "key_fields": [], "format": "json", "direction": "both", "group": null,
                "kafka_group": null, "partitions": null, "replication": null, "outbox": null,
                "inbox": null, "retry": null, "retry_topics": false, "dlq": null, "kafka_dlq": null,
            })
        })
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("many-topics-{}.json", std::process::id()));
    let text = serde_json::json!({ "version": 1, "namespace": "", "topics": topics });
    std::fs::write(&file, text.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-orm"))
        .args(["topics", "--topics"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kafka-orm");
    let mut first = [0u8; 5];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"TOPIC");
    // The pipe is closed here, with most of the table unwritten.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
