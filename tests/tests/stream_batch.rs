//! The plain stream's batches against the real broker: `next_batch` is bounded by its
//! size and its wait, and `commit_batch` commits exactly past the batch.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_orm::{Delivery, KafkaOrm, Topic, TopicConsumer};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "stream.batches",
    key = "key",
    partitions = 3,
    group = "batches"
)]
struct Tick {
    n: i64,
    key: String,
}

fn ticks(range: std::ops::Range<i64>) -> Vec<Tick> {
    range
        .map(|n| Tick {
            n,
            key: format!("k{}", n % 7),
        })
        .collect()
}

fn numbers(batch: &[Delivery<Tick>]) -> BTreeSet<i64> {
    batch.iter().map(|d| d.n).collect()
}

async fn batch(
    stream: &mut TopicConsumer<Tick>,
    max: usize,
    wait: Duration,
) -> (Vec<Delivery<Tick>>, Duration) {
    let started = Instant::now();
    let batch = stream
        .next_batch(max, wait)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (batch, started.elapsed())
}

/// Everything the group has not committed, read by a new consumer until nothing more
/// comes for a while.
async fn rest_of_the_group(orm: &KafkaOrm) -> BTreeSet<i64> {
    let mut stream = orm.topic::<Tick>().consume().await.unwrap();
    let mut got = BTreeSet::new();
    // The first delivery waits out the group join.
    let first = within(60, "the new consumer's first delivery", stream.next())
        .await
        .unwrap()
        .unwrap();
    got.insert(first.n);
    loop {
        let (more, _) = batch(&mut stream, 1_000, Duration::from_secs(3)).await;
        if more.is_empty() {
            break;
        }
        for d in more {
            assert!(got.insert(d.n), "tick {} delivered twice", d.n);
        }
    }
    stream.shutdown().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_batch_is_bounded_by_size_and_wait_and_commit_batch_commits_past_it() {
    let Some(builder) = real_kafka("stream-batch") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let topic = orm.topic::<Tick>();
    topic.produce_all(&ticks(0..40)).await.unwrap();
    let mut stream = topic.consume().await.unwrap();
    // The first delivery waits out the group join; keep it in the first batch's count.
    let first = within(60, "the first delivery", stream.next())
        .await
        .unwrap()
        .unwrap();

    // Bounded by size: 40 are there, 9 are asked for (10 with the first), then 15, each
    // long before the wait is over.
    let wait = Duration::from_secs(20);
    let (mut first_batch, took) = batch(&mut stream, 9, wait).await;
    assert_eq!(first_batch.len(), 9, "exactly max deliveries");
    assert!(
        took < Duration::from_secs(5),
        "a full batch does not wait: {took:?}"
    );
    first_batch.insert(0, first);
    let (second_batch, took) = batch(&mut stream, 15, wait).await;
    assert_eq!(second_batch.len(), 15, "exactly max deliveries");
    assert!(
        took < Duration::from_secs(5),
        "a full batch does not wait: {took:?}"
    );

    // Bounded by wait: 15 are left and 100 are asked for; the batch ends at max_wait
    // with what there is.
    let wait = Duration::from_millis(1_500);
    let (third_batch, took) = batch(&mut stream, 100, wait).await;
    assert_eq!(third_batch.len(), 15, "everything left");
    assert!(
        took >= wait - Duration::from_millis(50) && took < wait + Duration::from_secs(2),
        "a short batch waits max_wait: {took:?}"
    );
    // Nothing left: empty after max_wait.
    let (empty, took) = batch(&mut stream, 10, Duration::from_millis(500)).await;
    assert!(empty.is_empty());
    assert!(took >= Duration::from_millis(450), "{took:?}");

    // Commit the first two batches (25 deliveries over several partitions) at once: a
    // new consumer of the group starts right after them in every partition, so it gets
    // exactly the other 15.
    let done: Vec<Delivery<Tick>> = first_batch.into_iter().chain(second_batch).collect();
    let partitions: BTreeSet<i32> = done.iter().map(|d| d.partition()).collect();
    assert!(
        partitions.len() > 1,
        "the batch spans partitions: {partitions:?}"
    );
    stream.commit_batch(&done).await.unwrap();
    let committed = numbers(&done);
    assert_eq!(committed.len(), 25);
    stream.shutdown().await.unwrap();
    let rest = rest_of_the_group(&orm).await;
    let expected: BTreeSet<i64> = (0..40).filter(|n| !committed.contains(n)).collect();
    assert_eq!(
        rest, expected,
        "the group resumes exactly past the committed batch"
    );
    assert_eq!(rest, numbers(&third_batch));
}
