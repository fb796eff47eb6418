//! The type header on the real broker: a consumer never decodes a message of another type
//! as its own, whoever produced it; a topic enum carries several types on one topic, each
//! decoded as its own, through the outbox and the inbox, and an unknown type follows the
//! handler's policy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_orm::deps::rdkafka::Message as _;
use kafka_orm::deps::rdkafka::consumer::{Consumer as _, StreamConsumer};
use kafka_orm::deps::rdkafka::message::{Header, Headers as _, OwnedHeaders};
use kafka_orm::deps::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka_orm::{
    Delivery, Error, Handler, HandlerError, HandlerStats, KafkaOrm, OnUnknownType, OutboxRelay,
    RunningHandler, Topic,
};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};

mod paid {
    use super::*;

    /// A topic of one type.
    #[derive(Debug, Serialize, Deserialize, Topic)]
    #[topic(name = "types.paid", key = "order_id", group = "types")]
    pub struct OrderPaid {
        pub order_id: i64,
    }
}

/// Sends `payload` to `topic` with a raw client, as another service would: with the type
/// header `type_header`, or none.
async fn send_raw(orm: &KafkaOrm, topic: &str, type_header: Option<&str>, payload: &str) {
    let producer: FutureProducer = orm.client_config().create().unwrap();
    let mut headers = OwnedHeaders::new();
    if let Some(value) = type_header {
        headers = headers.insert(Header {
            key: kafka_orm::TYPE_HEADER,
            value: Some(value),
        });
    }
    let record = FutureRecord::to(topic)
        .key("1")
        .payload(payload)
        .headers(headers);
    producer
        .send(record, std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_another_type_is_never_decoded_as_this_one() {
    let Some(builder) = real_kafka("types-header") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let topic = orm.topic::<paid::OrderPaid>().name();
    // `OrderCreated` has every field of `OrderPaid`: only the header tells them apart.
    let created = r#"{"order_id":1,"total_cents":1999}"#;
    send_raw(&orm, &topic, Some("OrderCreated"), created).await;
    send_raw(&orm, &topic, Some("OrderPaid"), r#"{"order_id":2}"#).await;
    // Written by kafka-orm before the stable names: the Rust path, read by its last segment.
    send_raw(
        &orm,
        &topic,
        Some("billing::events::OrderPaid"),
        r#"{"order_id":3}"#,
    )
    .await;
    // A producer that sets no type header: the topic's one type.
    send_raw(&orm, &topic, None, r#"{"order_id":4}"#).await;

    let mut stream = orm.topic::<paid::OrderPaid>().consume().await.unwrap();
    match within(60, "the first message", stream.next())
        .await
        .unwrap()
    {
        Err(e) => {
            assert!(
                matches!(&e, Error::UnknownType { found: Some(found), offset: 0, .. } if found == "OrderCreated"),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains("`OrderCreated`") && text.contains("`OrderPaid`"),
                "{text}"
            );
        }
        Ok(d) => panic!(
            "an `OrderCreated` message was decoded as `OrderPaid`: {:?}",
            d.value()
        ),
    }
    for expected in 2..=4 {
        let d = within(60, "the next message", stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.order_id, expected);
    }
    stream.shutdown().await.unwrap();
}

mod orders {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderCreated {
        pub order_id: i64,
        pub total_cents: i64,
    }

    /// Every field of it is a field of `OrderCreated` too.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderPaid {
        pub order_id: i64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderShipped {
        pub order_id: i64,
        pub carrier: String,
    }
}
use orders::{OrderCreated, OrderPaid, OrderShipped};

/// Three message types on one topic, consumed as a stream.
#[derive(Debug, Clone, PartialEq, Topic)]
#[topic(name = "types.orders", key = "order_id", group = "types")]
pub enum OrderEvent {
    Created(OrderCreated),
    #[topic(type_name = "order.paid")]
    Paid(OrderPaid),
    Shipped(OrderShipped),
}

fn created(order_id: i64) -> OrderCreated {
    OrderCreated {
        order_id,
        total_cents: 1999,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_enum_decodes_each_message_as_the_type_its_header_names() {
    let Some(builder) = real_kafka("types-enum") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let events = orm.topic::<OrderEvent>();
    let sent = [
        OrderEvent::from(created(1)),
        OrderEvent::from(OrderPaid { order_id: 1 }),
        OrderEvent::from(OrderShipped {
            order_id: 1,
            carrier: "dhl".into(),
        }),
        OrderEvent::from(OrderPaid { order_id: 1 }),
        OrderEvent::from(created(1)),
    ];
    events.produce_all(&sent).await.unwrap();
    // No type header: an enum cannot tell its types apart without one.
    send_raw(&orm, &events.name(), None, r#"{"order_id":1}"#).await;

    let mut stream = events.consume().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        let d = within(60, "the next order event", stream.next())
            .await
            .unwrap()
            .unwrap();
        let expected_header = match d.value() {
            OrderEvent::Created(_) => "OrderCreated",
            OrderEvent::Paid(_) => "order.paid",
            OrderEvent::Shipped(_) => "OrderShipped",
        };
        assert_eq!(
            d.headers().get_str(kafka_orm::TYPE_HEADER),
            Some(expected_header)
        );
        got.push(d.into_value());
    }
    assert_eq!(got, sent, "each message as its own type, in order");
    let err = within(60, "the headerless message", stream.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownType { found: None, expected, .. } if expected == &["OrderCreated", "order.paid", "OrderShipped"]),
        "{err:?}"
    );
    stream.shutdown().await.unwrap();
}

/// Three message types on one topic with an outbox, an inbox and a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Topic)]
#[topic(
    name = "types.billing",
    key = "order_id",
    outbox,
    inbox(dedup = "order_id"),
    group = "types-billing",
    dlq
)]
pub enum BillingEvent {
    Created(OrderCreated),
    Paid(OrderPaid),
    Shipped(OrderShipped),
}

/// Records what it applied, by a `match` on the enum: the compiler checks that every
/// type is handled.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Handler<BillingEvent> for Recorder {
    async fn handle(
        &self,
        _txn: &DatabaseTransaction,
        msg: &Delivery<BillingEvent>,
    ) -> Result<(), HandlerError> {
        let applied = match msg.value() {
            BillingEvent::Created(c) => format!("created {} for {}", c.order_id, c.total_cents),
            BillingEvent::Paid(p) => format!("paid {}", p.order_id),
            BillingEvent::Shipped(s) => format!("shipped {} by {}", s.order_id, s.carrier),
        };
        self.0.lock().unwrap().push(applied);
        Ok(())
    }
}

/// The records of `topic`, read from the start until quiet: (type header, payload).
async fn read_all(orm: &KafkaOrm, topic: &str) -> Vec<(Option<String>, Vec<u8>)> {
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let reader: StreamConsumer = cfg.create().unwrap();
    reader.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
        let headers = m.headers().map(|h| {
            h.iter()
                .find(|h| h.key == kafka_orm::TYPE_HEADER)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        out.push((headers.flatten(), m.payload().unwrap_or_default().to_vec()));
    }
    out
}

/// Waits until `done` holds for the handler's stats.
async fn until(h: &RunningHandler, what: &str, done: impl Fn(&HandlerStats) -> bool) {
    within(90, what, async {
        while !done(&h.stats()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A context on the real broker and PostgreSQL whose `types.billing` topic holds, through
/// the outbox: order 1 created, paid, shipped and created again (a duplicate for the
/// inbox), order 2 paid; and, from a raw producer, one `OrderRefunded`, a type
/// `BillingEvent` does not carry.
async fn billing_topic(test: &str) -> Option<(KafkaOrm, OutboxRelay)> {
    let (Some(builder), Some(db)) = (real_kafka(test), fresh_postgres(test).await) else {
        return None;
    };
    let orm = builder.database(db.clone()).build().await.unwrap();
    let billing = orm.topic::<BillingEvent>();
    let shipped = OrderShipped {
        order_id: 1,
        carrier: "dhl".into(),
    };
    let txn = db.begin().await.unwrap();
    for event in [
        BillingEvent::from(created(1)),
        BillingEvent::from(OrderPaid { order_id: 1 }),
        BillingEvent::from(shipped),
        // The same message type and dedup value again: the inbox skips it.
        BillingEvent::from(created(1)),
        BillingEvent::from(OrderPaid { order_id: 2 }),
    ] {
        billing.publish(&txn, &event).await.unwrap();
    }
    txn.commit().await.unwrap();
    let relay = orm.outbox_relay().spawn().await.unwrap();
    let refunded = r#"{"order_id":1}"#;
    send_raw(&orm, &billing.name(), Some("OrderRefunded"), refunded).await;
    Some((orm, relay))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_of_an_enum_goes_through_the_outbox_and_the_inbox() {
    let Some((orm, relay)) = billing_topic("types-billing").await else {
        return;
    };
    let billing = orm.topic::<BillingEvent>();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let handler = billing
        .handler_with(Recorder(Arc::clone(&applied)))
        .spawn()
        .await
        .unwrap();
    // The unknown type: to the dead-letter topic, by default.
    until(
        &handler,
        "four applied, one duplicate, one dead letter",
        |s| s.handled == 4 && s.duplicates == 1 && s.dead_lettered == 1,
    )
    .await;
    let stats = handler.shutdown().await.unwrap();
    assert_eq!(stats.unknown_types, 1, "{stats:?}");
    let applied = applied.lock().unwrap().clone();
    let of_order_1: Vec<&str> = applied
        .iter()
        .map(String::as_str)
        .filter(|a| !a.ends_with(" 2"))
        .collect();
    assert_eq!(
        of_order_1,
        ["created 1 for 1999", "paid 1", "shipped 1 by dhl"]
    );
    assert!(applied.contains(&"paid 2".to_string()), "{applied:?}");

    let dead = read_all(&orm, &format!("{}.dlq", billing.name())).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0.as_deref(), Some("OrderRefunded"));
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_type_is_skipped_or_stops_the_handler_as_its_policy_says() {
    let Some((orm, relay)) = billing_topic("types-policy").await else {
        return;
    };
    let billing = orm.topic::<BillingEvent>();
    let skipping = billing
        .clone()
        .group("types-billing-skip")
        .handler_with(Recorder(Arc::new(Mutex::new(Vec::new()))))
        .on_unknown_type(OnUnknownType::Skip)
        .spawn()
        .await
        .unwrap();
    until(&skipping, "four applied, one unknown skipped", |s| {
        s.handled == 4 && s.unknown_types == 1
    })
    .await;
    let stats = skipping.shutdown().await.unwrap();
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");

    // `Stop` stops even with a `dlq`; the offset stays uncommitted.
    let stopping = billing
        .clone()
        .group("types-billing-stop")
        .handler_with(Recorder(Arc::new(Mutex::new(Vec::new()))))
        .on_unknown_type(OnUnknownType::Stop)
        .spawn()
        .await
        .unwrap();
    within(90, "the handler stops at the unknown type", async {
        while !stopping.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let err = stopping.shutdown().await.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownType { found: Some(found), .. } if found == "OrderRefunded"),
        "{err:?}"
    );
    relay.shutdown().await.unwrap();
}
