//! The typed dead-letter reader and replay, against real Kafka and PostgreSQL: dead letters
//! read back typed with their headers parsed, an undecodable payload raw, and a replay of a
//! filtered subset delivered once per dead letter even when it runs twice or crashes
//! mid-way, through the outbox and through Kafka transactions.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_orm::deps::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::error::KafkaError;
use kafka_orm::deps::rdkafka::message::{Headers as _, Message};
use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka_orm::deps::rdkafka::{Offset, TopicPartitionList};
use kafka_orm::deps::sea_orm::DatabaseConnection;
use kafka_orm::dlq::{DlqFilter, Page, Payload, Position, REPLAY_OF_HEADER, ReplayOf};
use kafka_orm::{HandlerError, KafkaOrm, MESSAGE_ID_HEADER, RunningHandler, Topic};
use kafka_orm_tests::{fresh_postgres, publish_committed, real_kafka, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "dlq.orders",
    key = "customer",
    outbox,
    inbox(dedup = "id"),
    group = "dlq-orders",
    retry(attempts = 2, backoff = "10ms", max_backoff = "10ms"),
    dlq,
    partitions = 2
)]
struct Order {
    id: i64,
    customer: String,
    fail: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "dlq.pings",
    key = "id",
    group = "dlq-pings",
    retry(attempts = 1, backoff = "10ms", max_backoff = "10ms"),
    dlq,
    partitions = 2
)]
struct Ping {
    id: i64,
    fail: bool,
}

const GARBAGE: &[u8] = b"\xffnot json";

async fn setup(test: &str) -> Option<(KafkaOrm, DatabaseConnection)> {
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    Some((builder.database(db.clone()).build().await.unwrap(), db))
}

fn refuse(fail: bool, id: i64) -> Result<(), HandlerError> {
    match fail {
        true => Err(format!("refused: order {id}").into()),
        false => Ok(()),
    }
}

/// Sends `payload` to `topic` as another producer would (no kafka-orm headers).
async fn produce_raw(orm: &KafkaOrm, topic: &str, key: &str, payload: &[u8]) {
    let producer: FutureProducer = orm.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

async fn until_dead_lettered(h: &RunningHandler, n: u64) {
    within(60, "the handler dead-letters", async {
        while h.stats().dead_lettered < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Orders 1..=6, of which 2, 4 and 5 fail every attempt, and one undecodable payload:
/// four dead letters.
async fn dead_letter_orders(orm: &KafkaOrm, db: &DatabaseConnection) {
    let orders: Vec<Order> = (1..=6)
        .map(|id| Order {
            id,
            customer: format!("c-{id}"),
            fail: [2, 4, 5].contains(&id),
        })
        .collect();
    publish_committed(orm, db, &orders).await;
    produce_raw(orm, &orm.topic::<Order>().name(), "c-x", GARBAGE).await;
    let relay = orm.outbox_relay().spawn().await.unwrap();
    let handler = orm
        .topic::<Order>()
        .handler_boxed(|_txn, m| Box::pin(async move { refuse(m.fail, m.id) }))
        .spawn()
        .await
        .unwrap();
    until_dead_lettered(&handler, 4).await;
    handler.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_read_back_typed_with_their_headers_parsed_and_undecodable_ones_raw() {
    let Some((orm, db)) = setup("dlq-read").await else {
        return;
    };
    dead_letter_orders(&orm, &db).await;
    let topic = orm.topic::<Order>();
    let dlq = orm.dlq::<Order>();
    assert_eq!(topic.dlq_name().as_deref(), Some(dlq.name()));
    assert_eq!(dlq.name(), format!("{}.dlq", topic.name()));
    assert!(dlq.name().starts_with("t.dlq-read."), "{}", dlq.name());

    let page = dlq.list(&DlqFilter::all(), Page::first(100)).await.unwrap();
    assert_eq!(page.letters.len(), 4);
    assert_eq!(page.next, None);
    let namespace = topic.name().strip_suffix("dlq.orders").unwrap().to_string();
    let mut decoded = Vec::new();
    for letter in &page.letters {
        let info = &letter.record.info;
        assert_eq!(info.source_topic.as_deref(), Some(topic.name().as_str()));
        assert!(
            info.source_partition.is_some_and(|p| (0..2).contains(&p)),
            "{info:?}"
        );
        assert!(info.source_offset.is_some_and(|o| o >= 0), "{info:?}");
        assert_eq!(info.group, Some(format!("{namespace}dlq-orders")));
        let (first, last) = (
            info.first_failure_ms.unwrap(),
            info.last_failure_ms.unwrap(),
        );
        assert!(0 < first && first <= last, "{info:?}");
        assert_eq!(letter.record.replayed, Some(false));
        match &letter.payload {
            Payload::Decoded(order) => {
                assert_eq!(info.attempts, Some(2));
                assert_eq!(
                    info.error.as_deref(),
                    Some(format!("refused: order {}", order.id).as_str())
                );
                assert_eq!(letter.record.key_str(), Some(order.customer.as_str()));
                assert!(letter.record.message_id().is_some());
                decoded.push(order.id);
            }
            Payload::Raw { bytes, reason } => {
                assert_eq!(bytes, GARBAGE);
                assert!(!reason.is_empty());
                assert_eq!(info.attempts, Some(0));
                assert_eq!(letter.record.key_str(), Some("c-x"));
            }
        }
    }
    decoded.sort_unstable();
    assert_eq!(decoded, [2, 4, 5]);

    filters_and_pages(&dlq).await;
}

/// Filters, pages and one dead letter by its position.
async fn filters_and_pages(dlq: &kafka_orm::dlq::Dlq<Order>) {
    let refused = dlq
        .list(&DlqFilter::all().error_contains("REFUSED"), Page::first(10))
        .await
        .unwrap();
    assert_eq!(refused.letters.len(), 3);
    let c4 = dlq
        .list(&DlqFilter::all().key("c-4"), Page::first(10))
        .await
        .unwrap();
    assert_eq!(c4.letters.len(), 1);
    assert_eq!(c4.letters[0].payload.decoded().map(|o| o.id), Some(4));
    let raw = dlq
        .list(&DlqFilter::all().undecodable(true), Page::first(10))
        .await
        .unwrap();
    assert_eq!(raw.letters.len(), 1);
    let first = dlq.list(&DlqFilter::all(), Page::first(3)).await.unwrap();
    assert_eq!(first.letters.len(), 3);
    let rest = dlq
        .list(&DlqFilter::all(), Page::after(first.next.unwrap(), 3))
        .await
        .unwrap();
    assert_eq!(rest.letters.len(), 1);
    assert_eq!(rest.next, None);
    let at = c4.letters[0].record.position;
    assert_eq!(
        dlq.get(at).await.unwrap().unwrap().record,
        c4.letters[0].record
    );
    assert!(
        dlq.get(Position::new(0, 1_000_000))
            .await
            .unwrap()
            .is_none()
    );
}

/// Every record of `topic` with a replay link, read `read_committed` from the start:
/// the link, the message id and the payload.
async fn replays_in(orm: &KafkaOrm, topic: &str) -> Vec<(ReplayOf, String, Vec<u8>)> {
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{topic}-replays"))
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    let reader: StreamConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&tpl).unwrap();
    let (mut out, mut ended) = (Vec::new(), 0);
    while ended < 2 {
        match within(30, "reading the source topic", reader.recv()).await {
            Err(KafkaError::PartitionEOF(_)) => ended += 1,
            Err(e) => panic!("{e}"),
            Ok(m) => {
                let header = |name: &str| {
                    m.headers()?
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                if let Some(link) = header(REPLAY_OF_HEADER) {
                    let id = header(MESSAGE_ID_HEADER).unwrap();
                    out.push((
                        ReplayOf::parse(&link).unwrap(),
                        id,
                        m.payload().unwrap().to_vec(),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_outbox_delivers_each_selected_dead_letter_once_across_reruns_and_a_crash()
 {
    let Some((orm, db)) = setup("dlq-replay-outbox").await else {
        return;
    };
    dead_letter_orders(&orm, &db).await;
    let dlq = orm.dlq::<Order>();
    let refused = DlqFilter::all().error_contains("refused");
    let chosen = dlq.list(&refused, Page::first(10)).await.unwrap().letters;
    assert_eq!(chosen.len(), 3);

    let dry = dlq.replay(refused.clone()).dry_run(true).await.unwrap();
    assert_eq!(
        (dry.replayed.len(), dry.already_replayed, dry.dry_run),
        (3, 0, true)
    );
    assert_eq!(
        orm.outbox_status().await.unwrap()[0].backlog,
        0,
        "a dry run writes nothing"
    );

    let crashed = dlq.replay(refused.clone()).batch(1).crash_after(2).await;
    assert!(crashed.is_err(), "{crashed:?}");
    assert_eq!(
        orm.outbox_status().await.unwrap()[0].backlog,
        1,
        "the first batch committed"
    );
    let rest = dlq.replay(refused.clone()).await.unwrap();
    assert_eq!(
        (rest.matched, rest.replayed.len(), rest.already_replayed),
        (3, 2, 1)
    );
    assert_eq!(rest.outbox, Some("order_outbox"));
    let again = dlq.replay(refused.clone()).await.unwrap();
    assert_eq!((again.replayed.len(), again.already_replayed), (0, 3));

    let relay = orm.outbox_relay().spawn().await.unwrap();
    within(60, "the relay delivers the replays", async {
        while orm.outbox_status().await.unwrap()[0].backlog > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    relay.shutdown().await.unwrap();
    let replays = replays_in(&orm, &orm.topic::<Order>().name()).await;
    let by_link: BTreeMap<Position, (String, Vec<u8>)> = replays
        .iter()
        .map(|(l, id, p)| (l.position, (id.clone(), p.clone())))
        .collect();
    assert_eq!(replays.len(), 3, "each dead letter once: {replays:?}");
    for letter in &chosen {
        let (id, payload) = &by_link[&letter.record.position];
        assert_eq!(
            Some(id.as_str()),
            letter.record.message_id(),
            "the original message id"
        );
        assert_eq!(Some(payload), letter.record.payload.as_ref());
    }
    assert!(replays.iter().all(|(l, ..)| l.dlq_topic == dlq.name()));
    let listed = dlq
        .list(&DlqFilter::all(), Page::first(10))
        .await
        .unwrap()
        .letters;
    let replayed: Vec<Option<bool>> = listed.iter().map(|l| l.record.replayed).collect();
    assert_eq!(
        replayed.iter().filter(|r| **r == Some(true)).count(),
        3,
        "{replayed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_without_an_outbox_delivers_each_selected_dead_letter_once_in_kafka_transactions()
{
    let Some((orm, _db)) = setup("dlq-replay-kafka").await else {
        return;
    };
    let pings: Vec<Ping> = (1..=5).map(|id| Ping { id, fail: id != 5 }).collect();
    orm.topic::<Ping>().produce_all(&pings).await.unwrap();
    let handler = orm
        .topic::<Ping>()
        .handler_boxed(|_txn, m| Box::pin(async move { refuse(m.fail, m.id) }))
        .spawn()
        .await
        .unwrap();
    until_dead_lettered(&handler, 4).await;
    handler.shutdown().await.unwrap();
    let dlq = orm.dlq::<Ping>();
    let all = dlq
        .list(&DlqFilter::all(), Page::first(10))
        .await
        .unwrap()
        .letters;
    assert_eq!(all.len(), 4);
    let subset = all[..3]
        .iter()
        .fold(DlqFilter::all(), |f, l| f.at(l.record.position));

    let crashed = dlq.replay(subset.clone()).batch(2).crash_after(3).await;
    assert!(crashed.is_err(), "{crashed:?}");
    let rest = dlq.replay(subset.clone()).await.unwrap();
    assert_eq!(
        (rest.matched, rest.replayed.len(), rest.already_replayed),
        (3, 1, 2)
    );
    assert_eq!(rest.outbox, None);
    let again = dlq.replay(subset.clone()).await.unwrap();
    assert_eq!((again.replayed.len(), again.already_replayed), (0, 3));

    let replays = replays_in(&orm, &orm.topic::<Ping>().name()).await;
    let mut links: Vec<Position> = replays.iter().map(|(l, ..)| l.position).collect();
    links.sort_unstable();
    let mut want: Vec<Position> = all[..3].iter().map(|l| l.record.position).collect();
    want.sort_unstable();
    assert_eq!(
        links, want,
        "each selected dead letter once, the crashed batch's never"
    );
    let listed = dlq
        .list(&DlqFilter::all(), Page::first(10))
        .await
        .unwrap()
        .letters;
    let replayed: Vec<Option<bool>> = listed.iter().map(|l| l.record.replayed).collect();
    assert_eq!(
        replayed.iter().filter(|r| **r == Some(true)).count(),
        3,
        "{replayed:?}"
    );
    assert!(replayed.contains(&Some(false)));
}
