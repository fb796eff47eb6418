//! Workers that follow the lag (KafkaFlow's `WithConsumerLagWorkerBalancer`): a handler
//! resizing images runs one call at a time while it keeps up, grows to eight when a
//! backlog builds, and goes back to one once it has caught up. Each album's images are
//! resized in order throughout: the workers bound how many lanes run at once, a lane still
//! takes one album's images one after another.
//!
//! Zero setup by default: the embedded broker, no database; `KAFKA_BOOTSTRAP_SERVERS`
//! points it at a real broker.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin workers
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_orm::{Concurrency, Delivery, HandlerError, KafkaOrm, RunningHandler, Topic};
use serde::{Deserialize, Serialize};

/// An uploaded image to resize.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "workers.uploads",
    key = "album", // one album's images in order
    partitions = 4,
    group = "resizer"
)]
pub struct ImageUploaded {
    /// Unique per image, in upload order.
    pub image_id: i64,
    /// The album it belongs to.
    pub album: String,
}

/// Each album's image ids, in the order they were resized.
type Resized = Arc<Mutex<BTreeMap<String, Vec<i64>>>>;

/// Resizing takes 10 ms: one worker keeps up with 100 images a second.
async fn resize(done: &Resized, image: &Delivery<ImageUploaded>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut done = done.lock().unwrap();
    done.entry(image.album.clone())
        .or_default()
        .push(image.image_id);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => KafkaOrm::builder()
            .bootstrap_servers(servers)
            .namespace(format!("example-{}.", std::process::id())), // rerunnable
        _ => KafkaOrm::builder().embedded(),
    };
    // The lag is sampled every metrics_interval (5 s by default; short for the demo).
    let orm = builder
        .metrics_interval(Duration::from_millis(200))
        .build()
        .await?;

    let done = Resized::default();
    let state = Arc::clone(&done);
    let resizer = orm
        .topic::<ImageUploaded>()
        .handler_without_database(async move |image| resize(&state, image).await)
        .key_concurrency(4) // 4 partitions × 4 lanes: up to 16 albums at once
        // 1 worker when idle, one more per 50 images of lag, at most 8; back down after
        // 1 s of low lag (30 s by default). A fixed count is `.concurrency(8)`.
        .concurrency(Concurrency::by_lag(1..=8, 50).cooldown(Duration::from_secs(1)))
        .spawn()
        .await?;

    // A burst: 1,500 images of 40 albums, far more than one worker handles in a second.
    let uploads: Vec<ImageUploaded> = (0..1500)
        .map(|image_id| ImageUploaded {
            image_id,
            album: format!("album-{}", image_id % 40),
        })
        .collect();
    orm.topic::<ImageUploaded>().produce_all(&uploads).await?;
    let started = Instant::now();
    let mut workers = vec![resizer.stats().concurrency];
    watch(&resizer, &mut workers, started, |r| {
        r.stats().handled == 1500
    })
    .await?;
    println!("backlog of 1500 done in {:?}", started.elapsed());
    // Idle now: the workers go back to the minimum.
    watch(&resizer, &mut workers, started, |r| {
        r.stats().concurrency == 1
    })
    .await?;
    let stats = resizer.shutdown().await?;
    println!("workers over time: {workers:?}; {} handled", stats.handled);

    // What the program shows, checked: scripts/examples runs it.
    let in_order = done.lock().unwrap().iter().all(|(album, ids)| {
        let sent = uploads
            .iter()
            .filter(|u| &u.album == album)
            .map(|u| u.image_id);
        ids.iter().copied().eq(sent)
    });
    if !workers.contains(&8) || workers.last() != Some(&1) || !in_order {
        return Err(format!("unexpected: workers {workers:?}, albums in order: {in_order}").into());
    }
    println!("every album's images resized in upload order");
    Ok(())
}

/// Polls the handler until `done`, printing each change of its worker count.
async fn watch(
    resizer: &RunningHandler,
    workers: &mut Vec<u64>,
    started: Instant,
    done: impl Fn(&RunningHandler) -> bool,
) -> Result<(), String> {
    let deadline = started + Duration::from_secs(120);
    loop {
        let finished = done(resizer);
        let stats = resizer.stats();
        if workers.last() != Some(&stats.concurrency) {
            println!(
                "{:>6} ms: {} workers ({} images resized)",
                started.elapsed().as_millis(),
                stats.concurrency,
                stats.handled
            );
            workers.push(stats.concurrency);
        }
        if finished {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not done in time: {stats:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
