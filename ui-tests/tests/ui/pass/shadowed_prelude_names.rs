// A module with its own `Result`, `Option`-like names next to an outbox/inbox topic: the
// generated entity modules must not pick them up.
#![allow(dead_code)]
use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, String>;
struct Vec;
struct String;

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "account", outbox, inbox(dedup = "id"))]
struct Transfer {
    id: i64,
    account: std::string::String,
}

fn main() {
    let _: Result<()> = Ok(());
    let _ = transfer_outbox::Entity;
    let _ = transfer_inbox::Entity;
}
