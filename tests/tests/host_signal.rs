//! `run_until_signal()` stops every handler of the host on SIGTERM and returns their stats.
//! A binary of its own: the test sends SIGTERM to its own process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_orm::Topic;
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "signal.ticks", partitions = 2, group = "signal-ticks")]
struct Tick {
    id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "signal.tocks", partitions = 1, group = "signal-tocks")]
struct Tock {
    id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_every_handler_of_the_host_down() {
    let Some(builder) = real_kafka("host_signal") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let (ticks, tocks) = (Arc::clone(&handled), Arc::clone(&handled));
    let host = orm
        .host()
        .handler(
            orm.topic::<Tick>()
                .handler_without_database(async move |_| {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
        )
        .handler(
            orm.topic::<Tock>()
                .handler_without_database(async move |_| {
                    tocks.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
        )
        .run_until_signal();
    let running = tokio::spawn(host);
    orm.topic::<Tick>().produce(&Tick { id: 1 }).await.unwrap();
    orm.topic::<Tock>().produce(&Tock { id: 1 }).await.unwrap();
    // Both handled: the host is up, so its signal handlers are installed.
    within(60, "both handlers running", async {
        while handled.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let stats = within(30, "the host shutting down on SIGTERM", running)
        .await
        .expect("the host task")
        .expect("a graceful shutdown");
    assert_eq!(stats.iter().map(|s| s.handled).collect::<Vec<_>>(), [1, 1]);
}
