//! The event type every Kafka/PostgreSQL scenario sends, in a module of its own (apart
//! from the bench's `Result` alias, which code generated next to the type could pick up).

use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

/// Distinct message keys: spread over the 6 partitions and the relay's 64 buckets.
pub const KEYS: u64 = 1_000;

/// The event every Kafka/PostgreSQL scenario sends: keyed, published through the outbox,
/// handled with the inbox (deduplicated on `seq`), padded to the payload size under test.
/// `sent_at_us` carries a timestamp for the latency scenarios.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "bench.events",
    key = "key",
    outbox,
    inbox(dedup = "seq"),
    partitions = 6,
    group = "bench"
)]
pub struct BenchEvent {
    pub key: String,
    pub seq: i64,
    pub sent_at_us: i64,
    pub pad: String,
}

impl BenchEvent {
    /// Event `seq`, padded so that its JSON payload is exactly `payload_bytes` long (or
    /// as short as it can be).
    pub fn new(seq: u64, payload_bytes: usize) -> Self {
        let mut e = BenchEvent {
            key: format!("k{:04}", seq % KEYS),
            seq: seq as i64,
            sent_at_us: crate::infra::now_us(),
            pad: String::new(),
        };
        let base = serde_json::to_vec(&e).map(|v| v.len()).unwrap_or(0);
        e.pad = "x".repeat(payload_bytes.saturating_sub(base));
        e
    }

    /// The JSON payload, as kafka-orm's default codec writes it.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a BenchEvent always encodes")
    }
}
