//! The metrics of `kafka_orm::telemetry`, scraped from the Prometheus exporter's text with
//! real values: publish → relay → handler and a plain stream on the real broker and
//! PostgreSQL, and the relay's failures and backlog while librdkafka's mock broker is down.
//!
//! Every metric of `telemetry::METRICS` must appear for this test's topic, and each has a
//! value check: a metric that is not recorded fails here.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka_orm::deps::sea_orm::DatabaseConnection;
use kafka_orm::telemetry::{METRICS, MetricKind, metrics::name};
use kafka_orm::{Error, KafkaOrm, Topic};
use kafka_orm_tests::{Gate, fresh_postgres, mock_kafka, publish_committed, real_kafka, within};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "metrics.orders",
    key = "customer",
    outbox,
    inbox(dedup = "id"),
    partitions = 2,
    group = "metrics-billing",
    retry(attempts = 2, backoff = "10ms", max_backoff = "20ms"),
    dlq
)]
struct Order {
    id: i64,
    customer: String,
    fail: bool,
}

fn order(id: i64, fail: bool) -> Order {
    Order {
        id,
        customer: format!("c{}", id % 4),
        fail,
    }
}

/// The transactional pipeline's input: every second one fails once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "metrics.payments",
    key = "id",
    partitions = 2,
    group = "metrics-pipeline"
)]
struct Payment {
    id: i64,
}

/// The pipeline's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "metrics.receipts", key = "id", partitions = 2)]
struct Receipt {
    id: i64,
}

/// Handlers wait while this is shut.
static GATE: Gate = Gate::open();

/// The process-wide recorder (one per test binary).
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("installing the Prometheus recorder")
    })
}

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape(Vec<Sample>);

/// The Prometheus form of a dotted name or label key.
fn prom(name: &str) -> String {
    name.replace('.', "_")
}

impl Scrape {
    fn take() -> Self {
        let handle = recorder();
        handle.run_upkeep();
        Scrape(handle.render().lines().filter_map(parse_line).collect())
    }

    /// Samples of `name` (dotted; `suffix` like `_count` appended) having every label of `with`.
    fn samples(&self, name: &str, suffix: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        let wanted = format!("{}{suffix}", prom(name));
        self.0
            .iter()
            .filter(|s| s.name == wanted)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(&prom(k)).is_some_and(|got| got == v))
            })
            .collect()
    }

    /// The sum over the matching samples, `None` when there is none.
    fn sum(&self, name: &str, suffix: &str, with: &[(&str, &str)]) -> Option<f64> {
        let found = self.samples(name, suffix, with);
        (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
    }

    /// Like [`Scrape::sum`] of a counter or gauge, failing the test when it is missing.
    fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.sum(name, "", with)
            .unwrap_or_else(|| panic!("no `{name}` with {with:?} in the scrape:\n{self:#?}"))
    }

    /// Samples without the excluded label key (e.g. successes: no `error.type`).
    fn value_without(&self, name: &str, with: &[(&str, &str)], without: &str) -> f64 {
        self.samples(name, "", with)
            .iter()
            .filter(|s| !s.labels.contains_key(&prom(without)))
            .map(|s| s.value)
            .sum()
    }

    /// The lag gauge of every partition of `group`.
    fn lags(&self, group: &str) -> Vec<f64> {
        self.samples(name::CONSUMER_LAG, "", &[(LABEL_GROUP, group)])
            .iter()
            .map(|s| s.value)
            .collect()
    }
}

const LABEL_TOPIC: &str = kafka_orm::telemetry::metrics::label::DESTINATION;
const LABEL_GROUP: &str = kafka_orm::telemetry::metrics::label::GROUP;
const LABEL_ERROR: &str = kafka_orm::telemetry::metrics::label::ERROR_TYPE;

fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while let Some((key, rest)) = text.split_once("=\"") {
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        text = &rest[end..];
    }
    out
}

/// Every metric of the table has a sample for `topic` (histograms: a `_count`).
fn assert_every_metric_is_there(scrape: &Scrape, topic: &str, except: &[&str]) {
    for m in METRICS.iter().filter(|m| !except.contains(&m.name)) {
        let suffix = match m.kind {
            MetricKind::Histogram => "_count",
            _ => "",
        };
        assert!(
            scrape
                .sum(m.name, suffix, &[(LABEL_TOPIC, topic)])
                .is_some(),
            "`{}` was not recorded for `{topic}`",
            m.name
        );
    }
}

async fn build(builder: kafka_orm::KafkaOrmBuilder, db: &DatabaseConnection) -> KafkaOrm {
    builder
        .metrics_interval(Duration::from_millis(200))
        .database(db.clone())
        .build()
        .await
        .unwrap()
}

/// Polls scrapes until `done` holds, at most `secs`; returns the last scrape.
async fn until(secs: u64, what: &str, mut done: impl FnMut(&Scrape) -> bool) -> Scrape {
    within(secs, what, async {
        loop {
            let scrape = Scrape::take();
            if done(&scrape) {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_relay_handler_and_stream_metrics_carry_real_values() {
    recorder();
    let Some(builder) = real_kafka("metrics") else {
        return;
    };
    let Some(db) = fresh_postgres("metrics").await else {
        return;
    };
    let orm = build(builder, &db).await;
    let topic = orm.topic::<Order>().name();
    let namespace = topic.strip_suffix(Order::SPEC.name).unwrap();
    let group = format!("{namespace}metrics-billing");
    let audit = format!("{namespace}metrics-audit");
    let on_topic = [(LABEL_TOPIC, topic.as_str())];

    // 20 through the outbox, 6 produced directly (one of them a duplicate of an outbox
    // event, one that always fails), and one payload that is not JSON.
    let published: Vec<Order> = (0..20).map(|i| order(i, false)).collect();
    publish_committed(&orm, &db, &published).await;
    let direct: Vec<Order> = (100..105).map(|i| order(i, i == 104)).collect();
    orm.topic::<Order>().produce_all(&direct).await.unwrap();
    orm.topic::<Order>()
        .produce(&order(0, false))
        .await
        .unwrap();
    let raw: FutureProducer = orm.client_config().create().unwrap();
    raw.send(
        FutureRecord::to(&topic).key("c1").payload("not json"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    // Long leases: the relay's batch deadline (a third of the TTL) never passes on a busy
    // machine, so nothing is sent twice and every count is exact.
    let relay = orm
        .outbox_relay()
        .leases(Duration::from_secs(30), Duration::from_secs(1))
        .spawn()
        .await
        .unwrap();
    // The handler waits until the test saw its lag, then takes 30 ms a message.
    GATE.set_open(false);
    let handler = orm
        .topic::<Order>()
        .handler_boxed(|_txn, msg| {
            Box::pin(async move {
                GATE.pass().await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                if msg.fail {
                    return Err("this order always fails".into());
                }
                Ok(())
            })
        })
        .max_pending(2)
        .spawn()
        .await
        .unwrap();

    // The handler's committed-offset lag shows (every record waits), then goes to 0; the
    // outbox empties.
    let waiting = until(60, "the lag of every record", |s| {
        s.lags(&group).iter().sum::<f64>() >= 27.0
    })
    .await;
    assert_eq!(waiting.lags(&group).len(), 2, "one gauge per partition");
    GATE.set_open(true);
    let scrape = until(90, "handler done, lag 0, backlog 0", |s| {
        let lags = s.lags(&group);
        let stats = handler.stats();
        stats.handled == 24
            && stats.dead_lettered == 2
            && !lags.is_empty()
            && lags.iter().all(|l| *l == 0.0)
            && s.sum(name::OUTBOX_BACKLOG, "", &on_topic) == Some(0.0)
    })
    .await;
    assert_eq!(scrape.lags(&group).len(), 2, "one gauge per partition");

    // A plain stream in another group reads all 27 records and commits them.
    let mut stream = orm
        .topic::<Order>()
        .group("metrics-audit")
        .consume()
        .await
        .unwrap();
    let mut done: Vec<(i32, i64)> = Vec::new();
    within(60, "the stream reads 27 records", async {
        while done.len() < 27 {
            match stream.next().await.unwrap() {
                Ok(d) => done.push((d.partition(), d.offset())),
                Err(Error::Decode {
                    partition, offset, ..
                }) => done.push((partition, offset)),
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    until(30, "the stream's lag before its commit", |s| {
        s.lags(&audit).iter().sum::<f64>() == 27.0
    })
    .await;
    stream.commit_all(&done).await.unwrap();
    let scrape = until(30, "the stream's lag goes to 0", |s| {
        let lags = s.lags(&audit);
        !lags.is_empty() && lags.iter().all(|l| *l == 0.0)
    })
    .await;
    stream.shutdown().await.unwrap();

    let relay_stats = relay.stats();
    relay.shutdown().await.unwrap();
    let stats = handler.shutdown().await.unwrap();
    // The pipeline's metrics have a test of their own.
    let pipeline = [
        name::PIPELINE_TRANSACTIONS,
        name::PIPELINE_TRANSACTION_DURATION,
        name::PIPELINE_OUTPUTS,
    ];
    assert_every_metric_is_there(&scrape, &topic, &pipeline);

    // Producing and publishing.
    let sent = [
        (LABEL_TOPIC, topic.as_str()),
        ("messaging.operation.name", "send"),
    ];
    assert_eq!(
        scrape.value_without(name::SENT_MESSAGES, &sent, LABEL_ERROR),
        6.0
    );
    assert_eq!(scrape.value(name::OUTBOX_PUBLISHED, &on_topic), 20.0);

    // The relay.
    assert_eq!(scrape.value(name::RELAY_DELIVERED, &on_topic), 20.0);
    assert_eq!(relay_stats.delivered, 20);
    assert_eq!(scrape.value(name::RELAY_FAILED, &on_topic), 0.0);
    assert_eq!(scrape.value(name::RELAY_FENCED, &on_topic), 0.0);
    let batches = scrape
        .sum(name::RELAY_BATCH_SIZE, "_count", &on_topic)
        .unwrap();
    assert!(batches >= 1.0, "{batches} batches");
    assert_eq!(
        scrape.sum(name::RELAY_BATCH_SIZE, "_sum", &on_topic),
        Some(20.0)
    );
    assert_eq!(
        scrape.sum(name::RELAY_BATCH_DURATION, "_count", &on_topic),
        Some(batches),
        "one duration per batch"
    );
    assert!(
        scrape
            .sum(name::RELAY_BATCH_DURATION, "_sum", &on_topic)
            .unwrap()
            > 0.0
    );
    assert_eq!(
        scrape.value(name::RELAY_BUCKETS, &on_topic),
        64.0,
        "leased, alone"
    );
    assert_eq!(scrape.value(name::OUTBOX_BACKLOG, &on_topic), 0.0);
    assert_eq!(scrape.value(name::OUTBOX_OLDEST_AGE, &on_topic), 0.0);

    // The handler: 26 decodable records, one of them a duplicate, one failing twice.
    let on_group = [(LABEL_TOPIC, topic.as_str()), (LABEL_GROUP, group.as_str())];
    let counted = |metric| scrape.value(metric, &on_group) as u64;
    assert_eq!(counted(name::CONSUMED_MESSAGES), 27);
    assert_eq!((counted(name::HANDLER_HANDLED), stats.handled), (24, 24));
    assert_eq!(
        (counted(name::HANDLER_DUPLICATES), stats.duplicates),
        (1, 1)
    );
    assert_eq!((counted(name::HANDLER_RETRIES), stats.retries), (1, 1));
    assert_eq!(
        (counted(name::HANDLER_DEAD_LETTERED), stats.dead_lettered),
        (2, 2)
    );
    assert_eq!(
        (counted(name::CONSUMER_UNDECODABLE), stats.undecodable),
        (1, 1)
    );
    assert!(stats.pauses > 0, "max_pending 2 pauses: {stats:?}");
    assert_eq!(counted(name::HANDLER_PAUSES), stats.pauses);
    // Scraped while it ran: the default fixed workers (0 once stopped).
    assert_eq!(
        (counted(name::HANDLER_CONCURRENCY), stats.concurrency),
        (8, 8)
    );
    let assigned = [
        (LABEL_GROUP, group.as_str()),
        ("kafka_orm.rebalance", "assign"),
    ];
    assert_eq!(
        scrape.value(name::HANDLER_REBALANCES, &assigned) as u64,
        stats.assignments
    );
    assert!(stats.assignments >= 1);
    let ok = scrape.samples(name::PROCESS_DURATION, "_count", &on_group);
    let ok: f64 = ok
        .iter()
        .filter(|s| !s.labels.contains_key(&prom(LABEL_ERROR)))
        .map(|s| s.value)
        .sum();
    assert_eq!(
        ok as u64, stats.transactions,
        "one duration per transaction"
    );
    assert_eq!(stats.transactions, 24);
    let failed = [
        (LABEL_TOPIC, topic.as_str()),
        (LABEL_GROUP, group.as_str()),
        (LABEL_ERROR, "handler_error"),
    ];
    assert_eq!(
        scrape.sum(name::PROCESS_DURATION, "_count", &failed),
        Some(2.0),
        "the failing order's two attempts"
    );
    let slow = scrape
        .sum(name::PROCESS_DURATION, "_sum", &on_group)
        .unwrap();
    assert!(
        slow >= 24.0 * 0.03,
        "handlers sleep 30 ms each: {slow} s in all"
    );

    // The plain stream.
    let on_audit = [(LABEL_TOPIC, topic.as_str()), (LABEL_GROUP, audit.as_str())];
    assert_eq!(scrape.value(name::CONSUMED_MESSAGES, &on_audit), 27.0);
    assert_eq!(scrape.value(name::CONSUMER_UNDECODABLE, &on_audit), 1.0);

    // The revocation when the handler's consumer leaves the group.
    let revoked = [
        (LABEL_GROUP, group.as_str()),
        ("kafka_orm.rebalance", "revoke"),
    ];
    until(30, "the revocation on leaving", |s| {
        s.sum(name::HANDLER_REBALANCES, "", &revoked) >= Some(1.0)
    })
    .await;
}

/// The relay's failures, backlog and oldest age while the broker is down, and their
/// recovery; on librdkafka's mock cluster (the shared broker cannot be stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_failures_and_backlog_show_while_the_broker_is_down() {
    recorder();
    let Some(db) = fresh_postgres("metrics-down").await else {
        return;
    };
    let topics = [(Order::SPEC.name, 2), ("metrics.orders.dlq", 2)];
    let (mock, builder) = mock_kafka("metrics-down", &topics);
    let orm = build(builder, &db).await;
    let topic = orm.topic::<Order>().name();
    let on_topic = [(LABEL_TOPIC, topic.as_str())];

    mock.broker_down(1).unwrap();
    let events: Vec<Order> = (0..10).map(|i| order(i, false)).collect();
    publish_committed(&orm, &db, &events).await;
    let relay = orm
        .outbox_relay()
        .leases(Duration::from_secs(3), Duration::from_millis(200))
        .spawn()
        .await
        .unwrap();
    let down_since = Instant::now();
    let transient = [(LABEL_TOPIC, topic.as_str()), (LABEL_ERROR, "transient")];
    let scrape = until(60, "transient failures while the broker is down", |s| {
        s.sum(name::RELAY_FAILED, "", &transient) >= Some(10.0)
            && s.sum(name::OUTBOX_OLDEST_AGE, "", &on_topic) >= Some(1.0)
    })
    .await;
    assert_eq!(scrape.value(name::OUTBOX_BACKLOG, &on_topic), 10.0);
    assert_eq!(scrape.value(name::RELAY_DELIVERED, &on_topic), 0.0);
    let permanent = [(LABEL_TOPIC, topic.as_str()), (LABEL_ERROR, "permanent")];
    assert_eq!(scrape.value(name::RELAY_FAILED, &permanent), 0.0);
    let age = scrape.value(name::OUTBOX_OLDEST_AGE, &on_topic);
    assert!(
        age <= down_since.elapsed().as_secs_f64() + 1.0,
        "the age of rows published just before: {age}"
    );

    mock.broker_up(1).unwrap();
    let scrape = until(60, "delivered once the broker is back", |s| {
        s.sum(name::RELAY_DELIVERED, "", &on_topic) == Some(10.0)
            && s.sum(name::OUTBOX_BACKLOG, "", &on_topic) == Some(0.0)
    })
    .await;
    assert_eq!(scrape.value(name::OUTBOX_OLDEST_AGE, &on_topic), 0.0);
    assert_eq!(
        relay.stats().failed as f64,
        scrape.value(name::RELAY_FAILED, &on_topic)
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_pipeline_records_transactions_and_outputs() {
    recorder();
    let Some(builder) = real_kafka("metrics-pipeline") else {
        return;
    };
    let orm = builder
        .metrics_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let topic = orm.topic_name(Payment::SPEC);
    let payments: Vec<Payment> = (0..20).map(|id| Payment { id }).collect();
    orm.topic::<Payment>().produce_all(&payments).await.unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut failed_once = false;
    let pipeline = orm
        .topic::<Payment>()
        .transactional(
            async move |batch: &[kafka_orm::Delivery<Payment>], out: &mut kafka_orm::Outputs| {
                if !failed_once {
                    failed_once = true;
                    return Err("the first transaction fails".into());
                }
                for p in batch {
                    out.send(&Receipt { id: p.id })?;
                }
                Ok(())
            },
        )
        .transactional_id("metrics-pipeline-0")
        .batch(5, Duration::from_millis(50))
        .backoff(Duration::from_millis(10), Duration::from_millis(50));
    let stats = pipeline.stats();
    let task = tokio::spawn(pipeline.run_until(async move {
        let _ = stopped.await;
    }));
    let on_topic = [(LABEL_TOPIC, topic.as_str())];
    let outcome = kafka_orm::telemetry::metrics::label::OUTCOME;
    let scrape = until(60, "every payment committed", |s| {
        s.sum(name::PIPELINE_OUTPUTS, "", &on_topic) == Some(20.0)
    })
    .await;
    stop.send(()).unwrap();
    let final_stats = within(60, "stopping", task).await.unwrap().unwrap();

    let committed = [(LABEL_TOPIC, topic.as_str()), (outcome, "committed")];
    let aborted = [(LABEL_TOPIC, topic.as_str()), (outcome, "aborted")];
    assert_eq!(
        scrape.value(name::PIPELINE_TRANSACTIONS, &committed),
        final_stats.committed as f64
    );
    assert_eq!(scrape.value(name::PIPELINE_TRANSACTIONS, &aborted), 1.0);
    assert_eq!(
        scrape.sum(name::PIPELINE_TRANSACTION_DURATION, "_count", &committed),
        Some(final_stats.committed as f64)
    );
    assert_eq!(
        scrape.sum(name::PIPELINE_TRANSACTION_DURATION, "_count", &aborted),
        Some(1.0)
    );
    assert_eq!(scrape.value(name::CONSUMED_MESSAGES, &on_topic), 20.0);
    assert_eq!(stats.snapshot().aborted, 1);
}
