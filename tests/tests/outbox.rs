//! The transactional outbox against real PostgreSQL and real Kafka (and SQLite where said).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use kafka_orm::deps::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use kafka_orm::{Delivery, KafkaOrm, KafkaOrmBuilder, Topic};
use kafka_orm_tests::{fresh_postgres, fresh_sqlite, real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "outbox.orders",
    key = "customer_id",
    outbox,
    partitions = 4,
    group = "outbox-tests"
)]
struct OrderPlaced {
    customer_id: String,
    seq: i64,
    note: String,
}

fn placed(customer: usize, seq: i64) -> OrderPlaced {
    OrderPlaced {
        customer_id: format!("c{customer}"),
        seq,
        note: String::new(),
    }
}

async fn setup(test: &str) -> Option<(KafkaOrm, DatabaseConnection)> {
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    Some((start(builder, &db).await, db))
}

async fn start(builder: KafkaOrmBuilder, db: &DatabaseConnection) -> KafkaOrm {
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL)",
    )
    .await
    .unwrap();
    builder.database(db.clone()).build().await.unwrap()
}

/// Publishes `events` in one transaction with a business row each, and commits.
async fn publish_committed(orm: &KafkaOrm, db: &DatabaseConnection, events: &[OrderPlaced]) {
    let txn = db.begin().await.unwrap();
    for e in events {
        insert_order(&txn, e).await;
    }
    orm.topic::<OrderPlaced>()
        .publish_all(&txn, events)
        .await
        .unwrap();
    txn.commit().await.unwrap();
}

async fn insert_order<C: ConnectionTrait>(conn: &C, e: &OrderPlaced) {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO orders (id, customer) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
        _ => "INSERT OR IGNORE INTO orders (id, customer) VALUES (?, ?)",
    };
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [e.seq.into(), e.customer_id.clone().into()],
    ))
    .await
    .unwrap();
}

/// Consumes until `n` messages arrived (or panics after `secs`), in arrival order.
async fn consume_n(orm: &KafkaOrm, n: usize, secs: u64) -> Vec<Delivery<OrderPlaced>> {
    let mut consumer = orm.topic::<OrderPlaced>().consume().await.unwrap();
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let d = within(
            secs,
            &format!("waiting for message {} of {n}", got.len() + 1),
            consumer.next(),
        )
        .await
        .unwrap()
        .unwrap();
        got.push(d);
    }
    consumer.shutdown().await.unwrap();
    got
}

/// Asserts that, per key, the sequence numbers arrive in increasing order (a redelivered
/// run may repeat a suffix, but never goes backwards past what it repeats).
fn assert_per_key_order(got: &[Delivery<OrderPlaced>]) {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for d in got {
        let prev = last.insert(&d.customer_id, d.seq);
        if let Some(prev) = prev {
            assert!(
                d.seq > prev,
                "key {} went from seq {prev} to {}",
                d.customer_id,
                d.seq
            );
        }
    }
}

async fn backlog(orm: &KafkaOrm) -> u64 {
    orm.outbox_status().await.unwrap()[0].backlog
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_sends_nothing_and_commit_sends_exactly_the_events_in_key_order() {
    let Some((orm, db)) = setup("outbox-commit").await else {
        return;
    };
    let topic = orm.topic::<OrderPlaced>();

    let txn = db.begin().await.unwrap();
    insert_order(&txn, &placed(0, 999)).await;
    topic.publish(&txn, &placed(0, 999)).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(
        backlog(&orm).await,
        0,
        "a rolled-back publish leaves no row"
    );

    let events: Vec<OrderPlaced> = (0..200).map(|i| placed(i as usize % 7, i)).collect();
    let txn = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for e in &events {
        insert_order(&txn, e).await;
        ids.push(topic.publish(&txn, e).await.unwrap());
    }
    txn.commit().await.unwrap();
    assert_eq!(backlog(&orm).await, 200);

    let relay = orm.outbox_relay().spawn().await.unwrap();
    let got = consume_n(&orm, 200, 60).await;
    assert_per_key_order(&got);
    let seqs: HashSet<i64> = got.iter().map(|d| d.seq).collect();
    assert_eq!(seqs.len(), 200, "every event exactly once");
    assert!(!seqs.contains(&999), "the rolled-back event never arrives");
    let sent_ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
    for d in &got {
        assert!(
            sent_ids.contains(d.message_id().unwrap()),
            "message id header is the row's"
        );
        assert_eq!(d.key(), Some(d.customer_id.as_bytes()));
    }
    // Delivered rows are deleted once acknowledged.
    within(30, "backlog to drain", async {
        while backlog(&orm).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(relay.stats().delivered, 200);
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_committing_lower_id_is_delivered_and_keys_stay_in_order() {
    let Some((orm, db)) = setup("outbox-gap").await else {
        return;
    };
    let topic = orm.topic::<OrderPlaced>();
    let relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(50))
        .spawn()
        .await
        .unwrap();

    // T1 publishes key c1 (the lowest id) and stays open.
    let t1 = db.begin().await.unwrap();
    topic.publish(&t1, &placed(1, 1)).await.unwrap();

    // Other keys commit after it and are delivered while T1 is still open.
    publish_committed(&orm, &db, &[placed(2, 2), placed(3, 3)]).await;
    let early = consume_n(&orm, 2, 60).await;
    let early: HashSet<i64> = early.iter().map(|d| d.seq).collect();
    assert_eq!(early, HashSet::from([2, 3]));

    // A second publisher of key c1 waits for T1 (same key: serialized) ...
    let orm2 = orm.clone();
    let db2 = db.clone();
    let second = tokio::spawn(async move {
        publish_committed(&orm2, &db2, &[placed(1, 4)]).await;
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "publishing key c1 must wait for the open transaction on c1"
    );

    // ... and once T1 commits, both arrive, T1's first.
    t1.commit().await.unwrap();
    within(30, "second publisher", second).await.unwrap();
    let all = consume_n(&orm, 4, 60).await;
    let c1: Vec<i64> = all
        .iter()
        .filter(|d| d.customer_id == "c1")
        .map(|d| d.seq)
        .collect();
    assert_eq!(c1, vec![1, 4], "the late lower id is delivered, and first");
    relay.shutdown().await.unwrap();
}

/// Asserts per-key order where a crash may have caused redelivery: the first occurrences
/// of each key's sequence numbers must be increasing (a repeated suffix is allowed).
fn assert_per_key_order_with_redelivery(got: &[Delivery<OrderPlaced>]) {
    let mut seen: HashSet<i64> = HashSet::new();
    let mut last_new: HashMap<&str, i64> = HashMap::new();
    for d in got {
        if seen.insert(d.seq)
            && let Some(prev) = last_new.insert(&d.customer_id, d.seq)
        {
            assert!(
                d.seq > prev,
                "key {} went from seq {prev} to {}",
                d.customer_id,
                d.seq
            );
        }
    }
}

async fn drain(orm: &KafkaOrm, secs: u64) {
    within(secs, "the outbox backlog to drain", async {
        while backlog(orm).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn relays(orm: &KafkaOrm, n: usize) -> Vec<kafka_orm::OutboxRelay> {
    let mut relays = Vec::with_capacity(n);
    for i in 0..n {
        let relay = orm
            .outbox_relay()
            .instance_id(format!("relay-{i}"))
            .batch(200)
            .leases(Duration::from_secs(3), Duration::from_millis(100))
            .spawn()
            .await
            .unwrap();
        relays.push(relay);
    }
    relays
}

/// Waits until the instances share the 64 buckets fairly.
async fn balanced(relays: &[kafka_orm::OutboxRelay]) {
    within(30, "leases to balance", async {
        loop {
            let owned: Vec<usize> = relays.iter().map(|r| r.stats().owned_buckets).collect();
            let fair = 64usize.div_ceil(relays.len());
            if owned.iter().sum::<usize>() == 64 && owned.iter().all(|o| *o > 0 && *o <= fair) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_never_reorder_a_key_nor_share_a_row() {
    let Some((orm, db)) = setup("outbox-scale").await else {
        return;
    };
    let relays = relays(&orm, 3).await;
    balanced(&relays).await;
    let total = 10_000;
    let events: Vec<OrderPlaced> = (0..total).map(|i| placed(i as usize % 100, i)).collect();
    for chunk in events.chunks(1_000) {
        publish_committed(&orm, &db, chunk).await;
    }
    let got = consume_n(&orm, total as usize, 120).await;
    assert_per_key_order(&got);
    let distinct: HashSet<i64> = got.iter().map(|d| d.seq).collect();
    assert_eq!(
        distinct.len(),
        total as usize,
        "nothing lost, nothing twice"
    );
    drain(&orm, 30).await;
    let per_instance: Vec<u64> = relays.iter().map(|r| r.stats().delivered).collect();
    assert_eq!(
        per_instance.iter().sum::<u64>(),
        total as u64,
        "no row delivered by two instances"
    );
    assert!(
        per_instance.iter().all(|d| *d > 0),
        "all three shared the work: {per_instance:?}"
    );
    for r in relays {
        r.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_relays_buckets_are_taken_over() {
    let Some((orm, db)) = setup("outbox-takeover").await else {
        return;
    };
    let mut relays = relays(&orm, 2).await;
    balanced(&relays).await;
    // The first instance dies without releasing its leases.
    relays.remove(0).abort();
    let events: Vec<OrderPlaced> = (0..2_000).map(|i| placed(i as usize % 50, i)).collect();
    publish_committed(&orm, &db, &events).await;
    // Its buckets come back after the lease TTL (3 s), and everything is delivered.
    let got = consume_n(&orm, 2_000, 60).await;
    assert_per_key_order_with_redelivery(&got);
    drain(&orm, 30).await;
    assert_eq!(
        relays[0].stats().owned_buckets,
        64,
        "the survivor owns every bucket"
    );
    assert_eq!(relays[0].stats().delivered, 2_000);
    relays.remove(0).shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_between_produce_and_delete_redelivers_everything() {
    let Some((orm, db)) = setup("outbox-crash").await else {
        return;
    };
    let events: Vec<OrderPlaced> = (0..300).map(|i| placed(i as usize % 5, i)).collect();
    publish_committed(&orm, &db, &events).await;
    // Make the delete fail: the relay produces, then cannot record the delivery, as if it
    // had crashed right after the broker acknowledged.
    db.execute_unprepared(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'crash'; END $$;
         CREATE TRIGGER refuse_delete BEFORE DELETE ON order_placed_outbox FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await
    .unwrap();
    let relay = orm.outbox_relay().spawn().await.unwrap();
    let first = consume_n(&orm, 300, 60).await;
    relay.abort();
    assert_eq!(
        backlog(&orm).await,
        300,
        "nothing was deleted before the crash"
    );

    db.execute_unprepared("DROP TRIGGER refuse_delete ON order_placed_outbox")
        .await
        .unwrap();
    let relay = orm.outbox_relay().spawn().await.unwrap();
    within(60, "backlog to drain after restart", async {
        while backlog(&orm).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    relay.shutdown().await.unwrap();
    // The group committed nothing, so a new consumer sees both runs.
    let all = consume_n(&orm, 600, 60).await;
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &all {
        *count.entry(d.seq).or_default() += 1;
    }
    assert_eq!(count.len(), 300, "nothing lost");
    assert!(
        count.values().all(|c| *c >= 2),
        "each row was delivered again after the crash"
    );
    let _ = first;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_backs_off_visibly_while_other_keys_go_on() {
    let Some(builder) = real_kafka("outbox-poison") else {
        return;
    };
    let Some(db) = fresh_postgres("outbox-poison").await else {
        return;
    };
    // The producer refuses messages over 20 kB, as a broker would refuse an oversized one.
    let orm = start(builder.producer_set("message.max.bytes", "20000"), &db).await;
    let poison = OrderPlaced {
        customer_id: "poison".into(),
        seq: 0,
        note: "x".repeat(50_000),
    };
    publish_committed(&orm, &db, std::slice::from_ref(&poison)).await;
    let after_poison = OrderPlaced {
        customer_id: "poison".into(),
        seq: 1,
        note: String::new(),
    };
    publish_committed(&orm, &db, &[after_poison]).await;
    let others: Vec<OrderPlaced> = (2..52).map(|i| placed(i as usize % 3, i)).collect();
    publish_committed(&orm, &db, &others).await;

    let relay = orm
        .outbox_relay()
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .spawn()
        .await
        .unwrap();
    let got = consume_n(&orm, 50, 60).await;
    assert!(
        got.iter().all(|d| d.customer_id != "poison"),
        "the poison key is blocked"
    );
    let status = &orm.outbox_status().await.unwrap()[0];
    assert_eq!(
        status.backlog, 2,
        "the poison row and the row behind it wait"
    );
    let failing = &status.failing[0];
    assert_eq!(failing.key.as_deref(), Some("poison"));
    assert!(failing.attempts >= 1);
    let error = failing.last_error.as_deref().unwrap_or_default();
    assert!(error.to_lowercase().contains("too large"), "{error}");
    assert!(relay.stats().last_error.is_some());
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_during_relay_keeps_rows_until_it_is_back() {
    // A broker outage is injected with librdkafka's mock cluster (real Kafka is shared by
    // the whole suite and cannot be stopped under other tests); the database is real.
    let Some(db) = fresh_postgres("outbox-broker-down").await else {
        return;
    };
    let mock = kafka_orm::deps::rdkafka::mocking::MockCluster::new(1).unwrap();
    // The mock has no admin API: create the topic through it, before the context.
    mock.create_topic(OrderPlaced::SPEC.name, 4, 1).unwrap();
    let builder = KafkaOrm::builder()
        .bootstrap_servers(mock.bootstrap_servers())
        .create_topics(false)
        .producer_set("message.timeout.ms", "1500");
    let orm = start(builder, &db).await;
    let relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(100), Duration::from_millis(500))
        .spawn()
        .await
        .unwrap();
    mock.broker_down(1).unwrap();
    let events: Vec<OrderPlaced> = (0..20).map(|i| placed(i as usize % 4, i)).collect();
    publish_committed(&orm, &db, &events).await;
    within(30, "a failed attempt while the broker is down", async {
        while relay.stats().failed == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        backlog(&orm).await,
        20,
        "rows stay while the broker is down"
    );
    mock.broker_up(1).unwrap();
    let got = consume_n(&orm, 20, 60).await;
    assert_per_key_order(&got);
    within(30, "backlog to drain", async {
        while backlog(&orm).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_trip() {
    let Some(builder) = real_kafka("outbox-sqlite") else {
        return;
    };
    let db = fresh_sqlite("outbox-sqlite").await;
    let orm = start(builder, &db).await;
    let relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(20))
        .spawn()
        .await
        .unwrap();
    let events: Vec<OrderPlaced> = (0..100).map(|i| placed(i as usize % 4, i)).collect();
    publish_committed(&orm, &db, &events[..50]).await;
    let txn = db.begin().await.unwrap();
    orm.topic::<OrderPlaced>()
        .publish(&txn, &placed(9, 999))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    publish_committed(&orm, &db, &events[50..]).await;
    let got = consume_n(&orm, 100, 60).await;
    assert_per_key_order(&got);
    let seqs: HashSet<i64> = got.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (0..100).collect::<HashSet<_>>());
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_wakes_the_relay_without_polling() {
    let Some((orm, db)) = setup("outbox-notify").await else {
        return;
    };
    // Nothing but the commit's NOTIFY may wake the relay within the window: single-node
    // mode has no lease keeper (whose renewals would wake it), and it polls once a minute.
    let relay = orm
        .outbox_relay()
        .single_node()
        .poll_interval(Duration::from_secs(60))
        .spawn()
        .await
        .unwrap();
    within(30, "the LISTEN connection", async {
        while !relay.stats().listening {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Let the first (empty) claim and the wake-up LISTEN sends when it connects pass, so
    // the relay is asleep in its 60 s poll when we commit.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(relay.stats().delivered, 0);
    const WINDOW: Duration = Duration::from_millis(1500);
    for round in 0..3 {
        let committed = std::time::Instant::now();
        publish_committed(&orm, &db, &[placed(round, round as i64)]).await;
        tokio::time::timeout(WINDOW, async {
            while relay.stats().delivered < round as u64 + 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "round {round}: not delivered within {WINDOW:?} of the commit; only NOTIFY can wake the relay that early ({:?})",
                relay.stats()
            )
        });
        eprintln!(
            "round {round}: delivered {:?} after the commit",
            committed.elapsed()
        );
        // Idle again before the next commit.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_key_with_a_long_backlog_does_not_starve_other_keys() {
    let Some(builder) = real_kafka("outbox-blocked-backlog") else {
        return;
    };
    let Some(db) = fresh_postgres("outbox-blocked-backlog").await else {
        return;
    };
    let orm = start(builder.producer_set("message.max.bytes", "20000"), &db).await;
    // A poison row, then 2,000 rows of its key, then other keys: the lowest ids the
    // relay looks at first all belong to the blocked key.
    let poison = OrderPlaced {
        customer_id: "poison".into(),
        seq: 0,
        note: "x".repeat(50_000),
    };
    publish_committed(&orm, &db, std::slice::from_ref(&poison)).await;
    let blocked: Vec<OrderPlaced> = (1..=2_000)
        .map(|seq| OrderPlaced {
            customer_id: "poison".into(),
            seq,
            note: String::new(),
        })
        .collect();
    publish_committed(&orm, &db, &blocked).await;
    let others: Vec<OrderPlaced> = (10_000..10_100)
        .map(|i| placed(i as usize % 5, i))
        .collect();
    publish_committed(&orm, &db, &others).await;
    let relay = orm
        .outbox_relay()
        .batch(100)
        .backoff(Duration::from_secs(30), Duration::from_secs(60))
        .spawn()
        .await
        .unwrap();
    let got = consume_n(&orm, 100, 60).await;
    assert!(got.iter().all(|d| d.customer_id != "poison"));
    assert_per_key_order(&got);
    relay.shutdown().await.unwrap();
}

/// Rows of the lease tables that say some relay instance is around: owned buckets, and
/// members.
async fn lease_activity(db: &DatabaseConnection) -> (i64, i64) {
    let count = |sql: &'static str| async move {
        db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    };
    (
        count("SELECT COUNT(*) FROM kafka_orm_relay_leases WHERE owner IS NOT NULL").await,
        count("SELECT COUNT(*) FROM kafka_orm_relay_members").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_on_postgres_delivers_everything_in_key_order_without_leases() {
    let Some((orm, db)) = setup("outbox-single-pg").await else {
        return;
    };
    let relay = orm
        .outbox_relay()
        .single_node()
        .batch(100)
        .poll_interval(Duration::from_millis(50))
        .spawn()
        .await
        .unwrap();
    // Some rows before the relay's first claim, the rest while it runs, in many
    // transactions, each key's rows spread over all of them.
    let total = 2_000;
    let events: Vec<OrderPlaced> = (0..total).map(|i| placed(i as usize % 16, i)).collect();
    for chunk in events.chunks(137) {
        publish_committed(&orm, &db, chunk).await;
    }
    let got = consume_n(&orm, total as usize, 60).await;
    assert_per_key_order(&got);
    let seqs: HashSet<i64> = got.iter().map(|d| d.seq).collect();
    assert_eq!(
        seqs,
        (0..total).collect::<HashSet<_>>(),
        "every event, once"
    );
    drain(&orm, 30).await;
    let stats = relay.stats();
    assert_eq!(stats.delivered, total as u64, "{stats:?}");
    assert_eq!(stats.owned_buckets, 64, "single node owns every bucket");
    // Single-node mode on PostgreSQL takes no lease and registers no member: the relay
    // really ran without the lease machinery.
    assert_eq!(lease_activity(&db).await, (0, 0));
    relay.shutdown().await.unwrap();
}
