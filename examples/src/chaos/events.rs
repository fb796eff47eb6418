//! The event every chaos process sends and receives, in a module of its own (apart from
//! the program's `Result` alias, which code generated next to the type could pick up).

use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

/// One business event: key `key`'s `seq`-th change (1, 2, 3, .. per key, in commit order).
///
/// Published through the outbox, applied by the consumers through the inbox, deduplicated
/// on `(key, seq)`. `poison = true` marks a message the handler rejects on every attempt,
/// so it goes to the dead-letter topic after its retries. `pad` makes an oversize one.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "chaos-events",
    key = "key",
    outbox,
    inbox(dedup = ["key", "seq"]),
    group = "chaos",
    retry(attempts = 3, backoff = "100ms", max_backoff = "400ms"),
    dlq,
    partitions = 6,
    replication = 3
)]
pub struct ChaosEvent {
    pub key: String,
    pub seq: i64,
    #[serde(default)]
    pub poison: bool,
    #[serde(default)]
    pub pad: String,
}

impl ChaosEvent {
    pub fn new(key: impl Into<String>, seq: i64) -> Self {
        ChaosEvent {
            key: key.into(),
            seq,
            poison: false,
            pad: String::new(),
        }
    }
}
