//! `bench-fanout`: one relay process serving 50 outbox topics at once, for the bench's
//! `relay_fanout` scenario (`examples/src/bench/scale.rs`), which fills the 50 outbox
//! tables, measures total throughput, fairness between the topics and this process's
//! peak RSS. A binary of its own because a context relays every registered outbox topic:
//! the 50 types must not be registered in the bench or in `bench-child`.
//!
//! ```text
//! bench-fanout relay
//! ```
//!
//! with `DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS` and `BENCH_NAMESPACE` of the scenario;
//! the line protocol is in `common.rs`. The topics are `bench.fanout.00` ..
//! `bench.fanout.49`, one partition each, shaped like the bench event (so that the
//! parent can copy bench-event rows into their outbox tables).

mod common;

use kafka_orm::Topic;
use serde::{Deserialize, Serialize};

/// Outbox topics of this program.
pub const TOPICS: usize = 50;

macro_rules! topics {
    ($($ty:ident $name:tt),* $(,)?) => {$(
        #[allow(dead_code)]
        #[derive(Debug, Clone, Serialize, Deserialize, Topic)]
        #[topic(name = $name, key = "key", outbox, partitions = 1)]
        pub struct $ty {
            pub key: String,
            pub seq: i64,
            pub sent_at_us: i64,
            pub pad: String,
        }
    )*
        /// The Kafka topic names (without the namespace).
        pub const NAMES: &[&str] = &[$($name),*];
    };
}

topics!(
    Fan00 "bench.fanout.00",
    Fan01 "bench.fanout.01",
    Fan02 "bench.fanout.02",
    Fan03 "bench.fanout.03",
    Fan04 "bench.fanout.04",
    Fan05 "bench.fanout.05",
    Fan06 "bench.fanout.06",
    Fan07 "bench.fanout.07",
    Fan08 "bench.fanout.08",
    Fan09 "bench.fanout.09",
    Fan10 "bench.fanout.10",
    Fan11 "bench.fanout.11",
    Fan12 "bench.fanout.12",
    Fan13 "bench.fanout.13",
    Fan14 "bench.fanout.14",
    Fan15 "bench.fanout.15",
    Fan16 "bench.fanout.16",
    Fan17 "bench.fanout.17",
    Fan18 "bench.fanout.18",
    Fan19 "bench.fanout.19",
    Fan20 "bench.fanout.20",
    Fan21 "bench.fanout.21",
    Fan22 "bench.fanout.22",
    Fan23 "bench.fanout.23",
    Fan24 "bench.fanout.24",
    Fan25 "bench.fanout.25",
    Fan26 "bench.fanout.26",
    Fan27 "bench.fanout.27",
    Fan28 "bench.fanout.28",
    Fan29 "bench.fanout.29",
    Fan30 "bench.fanout.30",
    Fan31 "bench.fanout.31",
    Fan32 "bench.fanout.32",
    Fan33 "bench.fanout.33",
    Fan34 "bench.fanout.34",
    Fan35 "bench.fanout.35",
    Fan36 "bench.fanout.36",
    Fan37 "bench.fanout.37",
    Fan38 "bench.fanout.38",
    Fan39 "bench.fanout.39",
    Fan40 "bench.fanout.40",
    Fan41 "bench.fanout.41",
    Fan42 "bench.fanout.42",
    Fan43 "bench.fanout.43",
    Fan44 "bench.fanout.44",
    Fan45 "bench.fanout.45",
    Fan46 "bench.fanout.46",
    Fan47 "bench.fanout.47",
    Fan48 "bench.fanout.48",
    Fan49 "bench.fanout.49",
);

#[tokio::main]
async fn main() {
    common::exit_on_error("bench-fanout", run().await);
}

async fn run() -> common::Result<()> {
    assert_eq!(NAMES.len(), TOPICS);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args != ["relay"] {
        return Err("usage: bench-fanout relay".into());
    }
    let mut commands = common::commands();
    let orm = common::context().await?;
    if orm.topics().len() != TOPICS {
        return Err(format!("{} topics registered, not {TOPICS}", orm.topics().len()).into());
    }
    common::relay(&orm, &mut commands).await
}
