//! `--help` of every command against the plain-text snapshots in `tests/help/`: the text
//! an operator reads is reviewed like code. `KAFKA_ORM_BLESS=1 cargo test -p kafka-orm-cli
//! --test help` rewrites them; review the diff.

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
