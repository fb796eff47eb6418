//! The expansion stays clean under strict lints in the user's crate.
#![forbid(unsafe_code)]
#![deny(missing_docs, unused_qualifications, warnings)]
#![deny(clippy::all)]

use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

/// An event.
#[derive(Serialize, Deserialize, Topic)]
#[topic(key = ["tenant", "id"], outbox, inbox(dedup = "id"), retry, dlq)]
pub struct Audited {
    /// Tenant.
    pub tenant: String,
    /// Id.
    pub id: i64,
}

fn main() {
    assert_eq!(Audited::SPEC.name, "audited");
}
