//! Kafka transactions without a database (consume → process → produce) against the real
//! broker started by `./scripts/test`: exactly-once output for `read_committed` readers,
//! aborted transactions after errors, panics and crashes, zombie fencing, undecodable input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_orm::deps::rdkafka::consumer::{BaseConsumer, Consumer};
use kafka_orm::deps::rdkafka::message::{Headers as _, Message};
use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use kafka_orm::deps::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use kafka_orm::handler::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_GROUP, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC,
};
use kafka_orm::transactional::{self, HandlerError, Outputs, PipelineStats, StatsHandle};
use kafka_orm::{Delivery, KafkaOrm, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "txn.orders",
    key = "customer_id",
    partitions = 3,
    group = "txn-billing",
    dlq
)]
struct TxOrder {
    order_id: i64,
    customer_id: String,
    total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "txn.payments",
    key = "customer_id",
    partitions = 2,
    group = "txn-payments"
)]
struct TxPayment {
    payment_id: i64,
    customer_id: String,
}

/// The output; `run` tells which pipeline instance (or attempt) wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "txn.invoices", key = "customer_id", partitions = 3)]
struct TxInvoice {
    order_id: i64,
    customer_id: String,
    amount_cents: i64,
    run: u32,
}

const INVOICE_PARTITIONS: i32 = 3;

fn order(i: i64) -> TxOrder {
    TxOrder {
        order_id: i,
        customer_id: format!("customer-{}", i % 17),
        total_cents: 100 * i,
    }
}

fn invoice(o: &TxOrder, run: u32) -> TxInvoice {
    TxInvoice {
        order_id: o.order_id,
        customer_id: o.customer_id.clone(),
        amount_cents: o.total_cents,
        run,
    }
}

/// A pipeline task and the means to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<kafka_orm::Result<PipelineStats>>,
    stats: StatsHandle,
}

impl Running {
    async fn stop(self) -> PipelineStats {
        let _ = self.stop.send(());
        within(60, "stopping the pipeline", self.task)
            .await
            .expect("the pipeline task")
            .expect("the pipeline ended with an error")
    }
}

/// Starts the plain order → invoice pipeline (marking outputs with `run`).
fn spawn_billing(orm: &KafkaOrm, id: &str, run: u32) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let builder = orm
        .topic::<TxOrder>()
        .transactional(
            async move |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
                for o in batch {
                    out.send(&invoice(o, run))?;
                }
                Ok(())
            },
        )
        .transactional_id(id)
        .batch(25, Duration::from_millis(100));
    let stats = builder.stats();
    let task = tokio::spawn(builder.run_until(async move {
        let _ = stopped.await;
    }));
    Running { stop, task, stats }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
struct Raw {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Reads `topic` from the beginning with `isolation.level = isolation` (no consumer group,
/// so nothing waits for a rebalance) until at least `at_least` records arrived, then for
/// `settle` more to catch any extra record.
async fn read_topic(
    orm: &KafkaOrm,
    topic: String,
    partitions: i32,
    isolation: &'static str,
    at_least: usize,
    settle: Duration,
) -> Vec<Raw> {
    let mut cfg: ClientConfig = orm.client_config();
    // Assigned, not subscribed: the group id is only required, never joined.
    cfg.set("isolation.level", isolation)
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = cfg.create().expect("creating a reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assigning the reader");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut settle_until = None;
        let mut got = Vec::new();
        loop {
            let now = std::time::Instant::now();
            if settle_until.is_none() && got.len() >= at_least {
                settle_until = Some(now + settle);
            }
            match settle_until {
                Some(until) if now >= until => break,
                None if now >= deadline => panic!(
                    "{isolation} reader of `{topic}` saw {} of {at_least} records in 90 s",
                    got.len()
                ),
                _ => {}
            }
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("reading back");
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value =
                                    h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_string(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                got.push(Raw {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        got
    })
    .await
    .expect("the reader thread")
}

async fn read_invoices(
    orm: &KafkaOrm,
    isolation: &'static str,
    at_least: usize,
    settle: Duration,
) -> Vec<TxInvoice> {
    read_topic(
        orm,
        orm.topic_name(TxInvoice::SPEC),
        INVOICE_PARTITIONS,
        isolation,
        at_least,
        settle,
    )
    .await
    .into_iter()
    .map(|r| serde_json::from_slice(&r.payload).expect("an invoice"))
    .collect()
}

/// Asserts one invoice per order id `ids`, each written by `run`.
fn assert_exactly_once(invoices: &[TxInvoice], ids: impl IntoIterator<Item = i64>, run: u32) {
    let mut seen = BTreeMap::new();
    for i in invoices {
        *seen.entry(i.order_id).or_insert(0) += 1;
        assert_eq!(
            i.run, run,
            "committed invoice from an unexpected run: {i:?}"
        );
    }
    let expected: BTreeMap<i64, i32> = ids.into_iter().map(|id| (id, 1)).collect();
    assert_eq!(seen, expected, "each order invoiced exactly once");
}

/// The group's committed offsets of `topic`, summed over `partitions`.
async fn committed_total(orm: &KafkaOrm, group: String, topic: String, partitions: i32) -> i64 {
    let mut cfg = orm.client_config();
    cfg.set("group.id", &group);
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = cfg.create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        committed
            .elements()
            .iter()
            .filter_map(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .sum()
    })
    .await
    .unwrap()
}

fn namespace(orm: &KafkaOrm) -> String {
    orm.topic_name(TxOrder::SPEC)
        .strip_suffix(TxOrder::SPEC.name)
        .unwrap()
        .to_string()
}

async fn wait_for(stats: &StatsHandle, what: &str, cond: impl Fn(&PipelineStats) -> bool) {
    within(90, what, async {
        while !cond(&stats.snapshot()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_outputs_each_input_exactly_once_and_commits_offsets() {
    let Some(builder) = real_kafka("txn-exactly-once") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let n = 60;
    orm.topic::<TxOrder>()
        .produce_all(&(0..n).map(order).collect::<Vec<_>>())
        .await
        .unwrap();

    let running = spawn_billing(&orm, "billing-0", 1);
    let invoices = read_invoices(&orm, "read_committed", n as usize, Duration::from_secs(2)).await;
    assert_exactly_once(&invoices, 0..n, 1);
    wait_for(&running.stats, "offsets of every order", |s| {
        s.consumed == n as u64
    })
    .await;
    let stats = running.stop().await;
    assert!(stats.initialized);
    assert_eq!(
        (stats.consumed, stats.produced, stats.aborted),
        (n as u64, n as u64, 0)
    );
    assert!(stats.committed >= 3, "batches of at most 25: {stats:?}");

    // The input offsets were committed for the group, inside the transactions.
    let group = format!("{}txn-billing", namespace(&orm));
    let committed = committed_total(&orm, group, orm.topic_name(TxOrder::SPEC), 3).await;
    assert_eq!(committed, n, "committed offsets cover every order");

    // A restarted pipeline (same id, same group) only sees what came after.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let builder = orm
        .topic::<TxOrder>()
        .transactional(
            async move |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
                for o in batch {
                    seen_tx.send(o.order_id).unwrap();
                    out.send(&invoice(o, 1))?;
                }
                Ok(())
            },
        )
        .transactional_id("billing-0")
        .batch(25, Duration::from_millis(100));
    let task = tokio::spawn(builder.run_until(async move {
        let _ = stopped.await;
    }));
    orm.topic::<TxOrder>()
        .produce_all(&(n..n + 10).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    let invoices = read_invoices(
        &orm,
        "read_committed",
        n as usize + 10,
        Duration::from_secs(2),
    )
    .await;
    assert_exactly_once(&invoices, 0..n + 10, 1);
    stop.send(()).unwrap();
    let stats = within(60, "stopping", task).await.unwrap().unwrap();
    assert_eq!(stats.consumed, 10);
    let mut seen = BTreeSet::new();
    while let Ok(id) = seen_rx.try_recv() {
        seen.insert(id);
    }
    assert_eq!(
        seen,
        (n..n + 10).collect(),
        "no reprocessing after a restart"
    );
}

/// Starts an order → invoice pipeline that takes a little time per batch, so rebalances
/// find it in the middle of collecting.
fn spawn_slow_billing(orm: &KafkaOrm, id: &str) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let builder = orm
        .topic::<TxOrder>()
        .transactional(async |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
            for o in batch {
                out.send(&invoice(o, 1))?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .transactional_id(id)
        .batch(10, Duration::from_millis(50));
    let stats = builder.stats();
    let task = tokio::spawn(builder.run_until(async move {
        let _ = stopped.await;
    }));
    Running { stop, task, stats }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_and_leaving_the_group_keep_exactly_once() {
    let Some(builder) = real_kafka("txn-rebalance") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    // Orders keep coming for about 10 s, while instances join and leave.
    let total = 1_000;
    let orders = orm.topic::<TxOrder>();
    let producing = tokio::spawn(async move {
        for chunk in (0..total).collect::<Vec<i64>>().chunks(10) {
            orders
                .produce_all(&chunk.iter().copied().map(order).collect::<Vec<_>>())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let a = spawn_slow_billing(&orm, "billing-a");
    wait_for(&a.stats, "the first instance at work", |s| s.consumed >= 50).await;
    // A second instance joins: the partitions are shared out.
    let b = spawn_slow_billing(&orm, "billing-b");
    wait_for(&b.stats, "the second instance at work", |s| s.consumed > 0).await;
    // The first one leaves: the second takes everything over.
    let a_stats = a.stop().await;
    assert!(a_stats.consumed >= 50);
    within(60, "producing", producing).await.unwrap();
    wait_for(&b.stats, "everything committed", |s| {
        a_stats.consumed + s.consumed >= total as u64
    })
    .await;
    let committed = read_invoices(
        &orm,
        "read_committed",
        total as usize,
        Duration::from_secs(3),
    )
    .await;
    assert_exactly_once(&committed, 0..total, 1);
    let b_stats = b.stop().await;
    assert_eq!(
        a_stats.consumed + b_stats.consumed,
        total as u64,
        "no input committed twice: {a_stats:?} {b_stats:?}"
    );
    assert_eq!(a_stats.produced + b_stats.produced, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_transaction_is_aborted_and_the_restart_fences_the_zombie() {
    let Some(builder) = real_kafka("txn-crash") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let n = 30;
    orm.topic::<TxOrder>()
        .produce_all(&(0..n).map(order).collect::<Vec<_>>())
        .await
        .unwrap();

    // Instance 1 produces its outputs (acknowledged by the broker), then hangs before the
    // commit: the task is then aborted, as a crash would end it.
    let (produced_tx, mut produced_rx) = mpsc::unbounded_channel::<usize>();
    let (_never_stop, never) = oneshot::channel::<()>();
    let crashing = tokio::spawn(
        orm.topic::<TxOrder>()
            .transactional(
                async move |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
                    for o in batch {
                        out.send(&invoice(o, 1))?;
                    }
                    out.flush().await?;
                    produced_tx.send(out.len()).unwrap();
                    std::future::pending::<()>().await;
                    Ok(())
                },
            )
            .transactional_id("billing-0")
            .batch(1_000, Duration::from_secs(1))
            // Far longer than this test: only fencing can end the open transaction in time.
            .transaction_timeout(Duration::from_secs(600))
            .run_until(async move {
                let _ = never.await;
            }),
    );
    let k = within(60, "the first instance's outputs", produced_rx.recv())
        .await
        .unwrap();
    assert!(k > 0);

    // The outputs are in the log, in an open transaction.
    let uncommitted = read_invoices(&orm, "read_uncommitted", k, Duration::from_millis(500)).await;
    assert_eq!(uncommitted.len(), k);
    assert!(uncommitted.iter().all(|i| i.run == 1));
    crashing.abort();
    assert!(crashing.await.unwrap_err().is_cancelled());
    let started = std::time::Instant::now();

    // The restarted instance, same transactional id: `init_transactions` fences the dead
    // one and aborts its transaction; then every order is invoiced exactly once.
    let running = spawn_billing(&orm, "billing-0", 2);
    let committed = read_invoices(&orm, "read_committed", n as usize, Duration::from_secs(3)).await;
    assert_exactly_once(&committed, 0..n, 2);
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the open transaction ended by fencing, not by its 600 s timeout"
    );
    // The aborted outputs are still in the log: read_uncommitted sees both runs.
    let all = read_invoices(
        &orm,
        "read_uncommitted",
        n as usize + k,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(all.iter().filter(|i| i.run == 1).count(), k);
    assert_eq!(all.iter().filter(|i| i.run == 2).count(), n as usize);
    wait_for(&running.stats, "offsets of every order", |s| {
        s.consumed == n as u64
    })
    .await;
    let stats = running.stop().await;
    assert_eq!((stats.produced, stats.aborted), (n as u64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_zombie_is_fenced_and_cannot_commit() {
    let Some(builder) = real_kafka("txn-zombie") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let n = 20;
    orm.topic::<TxOrder>()
        .produce_all(&(0..n).map(order).collect::<Vec<_>>())
        .await
        .unwrap();

    // The zombie: produces, then stalls (a long pause) and only then tries to commit.
    let (produced_tx, mut produced_rx) = mpsc::unbounded_channel::<usize>();
    let (resume_tx, resume_rx) = oneshot::channel::<()>();
    let mut resume_rx = Some(resume_rx);
    let (_never_stop, never) = oneshot::channel::<()>();
    let zombie = tokio::spawn(
        orm.topic::<TxOrder>()
            .transactional(
                async move |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
                    for o in batch {
                        out.send(&invoice(o, 1))?;
                    }
                    out.flush().await?;
                    produced_tx.send(out.len()).unwrap();
                    if let Some(resume) = resume_rx.take() {
                        let _ = resume.await;
                    }
                    Ok(())
                },
            )
            .transactional_id("billing-0")
            .batch(1_000, Duration::from_secs(1))
            .run_until(async move {
                let _ = never.await;
            }),
    );
    let k = within(60, "the zombie's outputs", produced_rx.recv())
        .await
        .unwrap();

    // Its successor starts with the same transactional id: its init fences the zombie.
    let successor = spawn_billing(&orm, "billing-0", 2);
    wait_for(&successor.stats, "the successor's init_transactions", |s| {
        s.initialized
    })
    .await;
    resume_tx.send(()).unwrap();
    let err = within(60, "the zombie's end", zombie)
        .await
        .unwrap()
        .expect_err("a fenced zombie cannot commit");
    assert!(transactional::is_fenced(&err), "{err}");
    assert!(transactional::is_fatal(&err), "{err}");

    let committed = read_invoices(&orm, "read_committed", n as usize, Duration::from_secs(3)).await;
    assert_exactly_once(&committed, 0..n, 2);
    let all = read_invoices(
        &orm,
        "read_uncommitted",
        n as usize + k,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(all.iter().filter(|i| i.run == 1).count(), k);
    successor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_aborts_and_the_batch_is_retried() {
    let Some(builder) = real_kafka("txn-retry") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let n = 30;
    orm.topic::<TxOrder>()
        .produce_all(&(0..n).map(order).collect::<Vec<_>>())
        .await
        .unwrap();

    let (calls_tx, mut calls_rx) = mpsc::unbounded_channel::<(u32, Vec<i64>)>();
    let mut failed_once = false;
    let (stop, stopped) = oneshot::channel::<()>();
    let builder = orm
        .topic::<TxOrder>()
        .transactional(
            async move |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
                calls_tx
                    .send((out.attempt(), batch.iter().map(|d| d.order_id).collect()))
                    .unwrap();
                assert!(batch.iter().all(|d| d.attempt() == out.attempt()));
                // Outputs of the failing attempt reach the broker, then the handler fails.
                for o in batch {
                    out.send(&invoice(o, out.attempt()))?;
                }
                if !failed_once {
                    failed_once = true;
                    out.flush().await?;
                    return Err::<(), HandlerError>("the price service is down".into());
                }
                Ok(())
            },
        )
        .transactional_id("billing-0")
        .batch(1_000, Duration::from_millis(500))
        .backoff(Duration::from_millis(50), Duration::from_secs(1));
    let stats = builder.stats();
    let task = tokio::spawn(builder.run_until(async move {
        let _ = stopped.await;
    }));
    wait_for(&stats, "every order committed", |s| s.consumed == n as u64).await;
    let committed = read_invoices(&orm, "read_committed", n as usize, Duration::from_secs(2)).await;
    // The retried batch was written by attempt 2; later batches (if any) by attempt 1.
    let mut per_order = BTreeMap::new();
    for i in &committed {
        *per_order.entry(i.order_id).or_insert(0) += 1;
    }
    assert_eq!(
        per_order,
        (0..n).map(|id| (id, 1)).collect(),
        "exactly once"
    );

    stop.send(()).unwrap();
    let stats = within(60, "stopping", task).await.unwrap().unwrap();
    assert_eq!(stats.aborted, 1, "{stats:?}");
    assert_eq!(stats.consumed, n as u64);

    let calls: Vec<(u32, Vec<i64>)> = std::iter::from_fn(|| calls_rx.try_recv().ok()).collect();
    let (first_attempt, first_batch) = &calls[0];
    assert_eq!(*first_attempt, 1);
    let (second_attempt, second_batch) = &calls[1];
    assert_eq!(*second_attempt, 2, "the failed batch is retried: {calls:?}");
    // The consumer was rewound: the retry starts where the failed batch started.
    let first: BTreeSet<i64> = first_batch.iter().copied().collect();
    let retried: BTreeSet<i64> = second_batch.iter().copied().collect();
    assert!(
        first.is_subset(&retried) || retried.is_subset(&first),
        "the retry re-reads the failed batch: {first:?} vs {retried:?}"
    );
    let first_retried = second_batch.first().unwrap();
    assert!(first.contains(first_retried));
    // Uncommitted readers also see the aborted attempt's outputs.
    let all = read_invoices(
        &orm,
        "read_uncommitted",
        n as usize + first_batch.len(),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(all.len(), n as usize + first_batch.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_aborts_before_the_panic_propagates() {
    let Some(builder) = real_kafka("txn-panic") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let n = 10;
    orm.topic::<TxOrder>()
        .produce_all(&(0..n).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    let (produced_tx, mut produced_rx) = mpsc::unbounded_channel::<usize>();
    let task = tokio::spawn(
        orm.topic::<TxOrder>()
            .transactional(
                async move |batch: &[Delivery<TxOrder>], out: &mut Outputs| {
                    for o in batch {
                        out.send(&invoice(o, 1))?;
                    }
                    out.flush().await?;
                    produced_tx.send(out.len()).unwrap();
                    panic!("bug in the handler");
                },
            )
            .transactional_id("billing-0")
            .batch(1_000, Duration::from_millis(500))
            .run_until(std::future::pending::<()>()),
    );
    let err = within(60, "the panic", task).await.unwrap_err();
    assert!(err.is_panic());
    let k = produced_rx.recv().await.unwrap();
    // Aborted (not left open): read_committed readers get past it at once and see nothing.
    let marker = TxInvoice {
        order_id: -1,
        customer_id: "marker".into(),
        amount_cents: 0,
        run: 0,
    };
    for p in 0..INVOICE_PARTITIONS {
        // One committed marker per partition (non-transactional), after the aborted ones.
        let raw: FutureProducer = orm.client_config().create().unwrap();
        raw.send(
            FutureRecord::to(&orm.topic_name(TxInvoice::SPEC))
                .partition(p)
                .key("marker")
                .payload(&serde_json::to_vec(&marker).unwrap()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        raw.flush(Duration::from_secs(10)).unwrap();
    }
    let committed = read_invoices(
        &orm,
        "read_committed",
        INVOICE_PARTITIONS as usize,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        committed.iter().all(|i| i.order_id == -1),
        "aborted outputs are invisible: {committed:?}"
    );
    let all = read_invoices(
        &orm,
        "read_uncommitted",
        k + INVOICE_PARTITIONS as usize,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(all.len(), k + INVOICE_PARTITIONS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_input_is_dead_lettered_inside_the_transaction() {
    let Some(builder) = real_kafka("txn-dlq") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let name = orm.topic_name(TxOrder::SPEC);
    let raw: FutureProducer = orm.client_config().create().unwrap();
    let (partition, bad_offset) = raw
        .send(
            FutureRecord::to(&name)
                .key("customer-1")
                .payload("{not json")
                .headers(
                    kafka_orm::deps::rdkafka::message::OwnedHeaders::new().insert(
                        kafka_orm::deps::rdkafka::message::Header {
                            key: "tenant",
                            value: Some("acme"),
                        },
                    ),
                ),
            Duration::from_secs(10),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .unwrap();
    let n = 12;
    orm.topic::<TxOrder>()
        .produce_all(&(0..n).map(order).collect::<Vec<_>>())
        .await
        .unwrap();

    let running = spawn_billing(&orm, "billing-0", 1);
    let invoices = read_invoices(&orm, "read_committed", n as usize, Duration::from_secs(1)).await;
    assert_exactly_once(&invoices, 0..n, 1);
    let dlq = format!("{}{}", namespace(&orm), TxOrder::SPEC.dlq.unwrap().topic);
    let dead = read_topic(&orm, dlq, 3, "read_committed", 1, Duration::from_secs(1)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.payload, b"{not json");
    assert_eq!(d.key.as_deref(), Some(&b"customer-1"[..]));
    assert_eq!(d.headers["tenant"], "acme");
    assert_eq!(d.headers[DLQ_SOURCE_TOPIC], name);
    assert_eq!(d.headers[DLQ_SOURCE_PARTITION], partition.to_string());
    assert_eq!(d.headers[DLQ_SOURCE_OFFSET], bad_offset.to_string());
    assert_eq!(
        d.headers[DLQ_GROUP],
        format!("{}txn-billing", namespace(&orm))
    );
    assert_eq!(d.headers[DLQ_ATTEMPTS], "0");
    assert!(!d.headers[DLQ_ERROR].is_empty());
    wait_for(&running.stats, "every message committed", |s| {
        s.consumed == n as u64 + 1
    })
    .await;
    let stats = running.stop().await;
    assert_eq!((stats.dead_lettered, stats.skipped), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_input_without_dlq_is_skipped_and_counted() {
    let Some(builder) = real_kafka("txn-skip") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let name = orm.topic_name(TxPayment::SPEC);
    let raw: FutureProducer = orm.client_config().create().unwrap();
    raw.send(
        FutureRecord::to(&name).key("customer-1").payload("[1,2"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let payments: Vec<TxPayment> = (0..5)
        .map(|i| TxPayment {
            payment_id: i,
            customer_id: "customer-1".into(),
        })
        .collect();
    orm.topic::<TxPayment>()
        .produce_all(&payments)
        .await
        .unwrap();

    let (stop, stopped) = oneshot::channel::<()>();
    let builder = orm
        .topic::<TxPayment>()
        .transactional(async |batch: &[Delivery<TxPayment>], out: &mut Outputs| {
            for p in batch {
                out.send(&TxInvoice {
                    order_id: p.payment_id,
                    customer_id: p.customer_id.clone(),
                    amount_cents: 0,
                    run: 1,
                })?;
            }
            Ok(())
        })
        .transactional_id("payments-0")
        .batch(2, Duration::from_millis(100));
    let stats = builder.stats();
    let task = tokio::spawn(builder.run_until(async move {
        let _ = stopped.await;
    }));
    let invoices = read_invoices(&orm, "read_committed", 5, Duration::from_secs(1)).await;
    assert_exactly_once(&invoices, 0..5, 1);
    wait_for(&stats, "every message committed", |s| s.consumed == 6).await;
    stop.send(()).unwrap();
    let stats = within(60, "stopping", task).await.unwrap().unwrap();
    assert_eq!((stats.skipped, stats.dead_lettered), (1, 0));
    let group = format!("{}txn-payments", namespace(&orm));
    assert_eq!(committed_total(&orm, group, name, 2).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_transactional_id_is_a_config_error() {
    let Some(builder) = real_kafka("txn-config") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let err = orm
        .topic::<TxOrder>()
        .transactional(async |_: &[Delivery<TxOrder>], _: &mut Outputs| Ok(()))
        .run_until(std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(matches!(err, kafka_orm::Error::Config(_)), "{err}");
    assert!(err.to_string().contains("transactional_id"), "{err}");
}
