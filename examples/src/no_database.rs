//! A consumer without a database: page views are counted in memory by a handler that takes
//! no transaction. It still gets what a handler in a transaction gets: a view that fails is
//! retried in place with backoff, then dead-lettered with where it came from and why; one
//! page's views are handled in order; offsets are committed by watermark. What it does not
//! get is the inbox: a view can be counted twice after a crash (at least once).
//!
//! Zero setup by default: the embedded broker, no database at all; `KAFKA_BOOTSTRAP_SERVERS`
//! points it at a real broker.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin no_database
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::deps::rdkafka::Message;
use kafka_orm::deps::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::message::Headers as _;
use kafka_orm::handler::{DLQ_ATTEMPTS, DLQ_ERROR};
use kafka_orm::{Delivery, HandlerError, KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

/// One page view. `glitch` fails its first attempt; `broken` fails every one.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "no-database.page-views",
    key = "page",                                           // one page's views in order
    partitions = 3,
    group = "view-counter",
    retry(attempts = 3, backoff = "50ms", max_backoff = "200ms"),
    dlq,                                                    // then no-database.page-views.dlq
)]
pub struct PageViewed {
    /// Unique per view.
    pub view_id: i64,
    /// The page viewed.
    pub page: String,
    /// Fails the first attempt (a flaky downstream).
    pub glitch: bool,
    /// Fails every attempt (a bug).
    pub broken: bool,
}

/// Views per page: the handler's state, shared with `main`.
#[derive(Debug, Default)]
struct Counts(Mutex<BTreeMap<String, u64>>);

/// What the handler does with one view: an `async fn` would do as well as this closure body.
async fn count(counts: &Counts, view: &Delivery<PageViewed>) -> Result<(), HandlerError> {
    if view.broken || (view.glitch && view.attempt() == 1) {
        return Err(format!(
            "view {} of {}: downstream refused it",
            view.view_id, view.page
        )
        .into());
    }
    *counts
        .0
        .lock()
        .unwrap()
        .entry(view.page.clone())
        .or_default() += 1;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No `.database(..)`: nothing here needs one.
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => KafkaOrm::builder()
            .bootstrap_servers(servers)
            .namespace(format!("example-{}.", std::process::id())), // rerunnable
        _ => KafkaOrm::builder().embedded(),
    };
    let orm = builder.build().await?;

    let counts = Arc::new(Counts::default());
    let state = Arc::clone(&counts);
    let counter = orm
        .topic::<PageViewed>()
        // `state` is used as captured: no clone per message written here.
        .handler_without_database(async move |view| count(&state, view).await)
        .key_concurrency(4) // pages run concurrently; one page's views stay in order
        .spawn()
        .await?;

    let pages = ["/", "/pricing", "/docs"];
    let views: Vec<PageViewed> = (1..=12)
        .map(|id| PageViewed {
            view_id: id,
            page: pages[id as usize % pages.len()].to_string(),
            glitch: id == 4,
            broken: id == 7,
        })
        .collect();
    orm.topic::<PageViewed>().produce_all(&views).await?;

    tokio::time::timeout(Duration::from_secs(60), async {
        while counter.stats().handled < 11 || counter.stats().dead_lettered < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|_| format!("views not handled in time: {:?}", counter.stats()))?;
    let stats = counter.shutdown().await?;
    println!("counted    {:?}", counts.0.lock().unwrap());
    println!(
        "handled    {} views, {} retries, {} dead-lettered",
        stats.handled, stats.retries, stats.dead_lettered
    );

    let dead = dead_letters(&orm).await?;
    for (attempts, error) in &dead {
        println!("dead letter after {attempts} attempts: {error}");
    }
    // What the program shows, checked: scripts/examples runs it.
    let counted: u64 = counts.0.lock().unwrap().values().sum();
    if counted != 11 || stats.retries != 3 || dead.len() != 1 || dead[0].0 != "3" {
        return Err(format!("unexpected outcome: {counted} counted, {stats:?}, {dead:?}").into());
    }
    Ok(())
}

/// `(attempts, error)` of each record in the dead-letter topic, read from the start.
async fn dead_letters(orm: &KafkaOrm) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let dlq = format!("{}.dlq", orm.topic_name(PageViewed::SPEC));
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{dlq}.reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let reader: StreamConsumer = cfg.create()?;
    reader.subscribe(&[&dlq])?;
    let mut out = Vec::new();
    // Dead letters are sent in Kafka transactions; read until the topic is quiet.
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
        let header = |name: &str| {
            m.headers()
                .and_then(|hs| hs.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        out.push((header(DLQ_ATTEMPTS), header(DLQ_ERROR)));
    }
    Ok(out)
}
