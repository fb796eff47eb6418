//! Middleware on the real broker (and PostgreSQL for the outbox): consume layers around
//! handlers and produce layers around `produce` and `publish` run in the documented order
//! inside the built-in span, see the delivery and its timing, short-circuit into the
//! retries and the dead-letter topic or past the handler, add headers that reach the
//! consumer, and a publish's layers store their header in the outbox row for the relay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use kafka_orm::deps::rdkafka::Message as _;
use kafka_orm::deps::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka_orm::deps::rdkafka::message::Headers as _;
use kafka_orm::handler::{DLQ_ATTEMPTS, DLQ_ERROR, HandlerWithoutDatabase};
use kafka_orm::middleware::{
    ConsumeContext, ConsumeLayer, Consumed, Next, Outcome, ProduceContext, ProduceLayer,
    ProduceNext,
};
use kafka_orm::{Delivery, Error, HandlerError, KafkaOrm, RunningHandler, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "mw.orders",
    key = "customer",
    partitions = 1,
    group = "mw-orders",
    retry(attempts = 3, backoff = "10ms", max_backoff = "20ms"),
    dlq
)]
struct Order {
    id: i64,
    customer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "mw.invoices", key = "customer", outbox, group = "mw-invoices")]
struct Invoice {
    id: i64,
    customer: String,
}

fn order(id: i64, customer: &str) -> Order {
    Order {
        id,
        customer: customer.into(),
    }
}

/// What the layers and handlers of a test saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A layer (consume and produce) that logs `name>` on the way in and `<name` on the way
/// out; the consume side also logs the span it runs in.
struct Tag(&'static str, Log);

impl ConsumeLayer for Tag {
    async fn handle(&self, _ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let span = tracing::Span::current()
            .metadata()
            .map_or("none", |m| m.name());
        log(&self.1, format!("{}> in {span}", self.0));
        let consumed = next.run().await;
        log(&self.1, format!("<{}", self.0));
        consumed
    }
}

impl ProduceLayer for Tag {
    async fn produce(
        &self,
        ctx: &mut ProduceContext,
        next: ProduceNext<'_>,
    ) -> kafka_orm::Result<()> {
        log(&self.1, format!("{}>", self.0));
        let sent = next.run(ctx).await;
        log(&self.1, format!("<{}", self.0));
        sent
    }
}

/// A `tracing` registry for this test binary, so that spans exist and a layer can see
/// which one it runs in.
fn spans_on() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry())
            .expect("one subscriber for this test binary");
    });
}

/// A handler without a database logging `handled <id>` and the `x-tenant` header.
struct Logged(Log);

impl HandlerWithoutDatabase<Order> for Logged {
    async fn handle(&self, msg: &Delivery<Order>) -> Result<(), HandlerError> {
        let tenant = msg.headers().get_str("x-tenant").unwrap_or("-");
        log(&self.0, format!("handled {} tenant {tenant}", msg.id));
        Ok(())
    }
}

async fn wait_for(what: &str, ok: impl Fn() -> bool) {
    within(60, what, async {
        while !ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_run_outermost_first_context_layers_outside_the_handlers_inside_the_builtin_span() {
    spans_on();
    let (consumed, produced) = (Log::default(), Log::default());
    let Some(builder) = real_kafka("mw_order") else {
        return;
    };
    let orm = builder
        .consume_layer(Tag("context-1", consumed.clone()))
        .consume_layer(Tag("context-2", consumed.clone()))
        .produce_layer(Tag("produce-1", produced.clone()))
        .produce_layer(Tag("produce-2", produced.clone()))
        .build()
        .await
        .unwrap();
    let handler = orm
        .topic::<Order>()
        .handler_with(Logged(consumed.clone()))
        .layer(Tag("handler-1", consumed.clone()))
        .layer(Tag("handler-2", consumed.clone()))
        .spawn()
        .await
        .unwrap();
    orm.topic::<Order>().produce(&order(1, "c1")).await.unwrap();
    assert_eq!(
        entries(&produced),
        ["produce-1>", "produce-2>", "<produce-2", "<produce-1"]
    );
    wait_for("the order handled", || consumed.lock().unwrap().len() == 9).await;
    assert_eq!(
        entries(&consumed),
        [
            "context-1> in kafka_orm.handle",
            "context-2> in kafka_orm.handle",
            "handler-1> in kafka_orm.handle",
            "handler-2> in kafka_orm.handle",
            "handled 1 tenant -",
            "<handler-2",
            "<handler-1",
            "<context-2",
            "<context-1",
        ]
    );
    handler.shutdown().await.unwrap();
}

/// Stamps `x-tenant` on every message, and refuses customer `nobody`; logs what it saw.
struct Tenant(&'static str, Log);

impl ProduceLayer for Tenant {
    async fn produce(
        &self,
        ctx: &mut ProduceContext,
        next: ProduceNext<'_>,
    ) -> kafka_orm::Result<()> {
        let key = String::from_utf8_lossy(ctx.key().unwrap_or_default()).into_owned();
        log(
            &self.1,
            format!(
                "{:?} {} {} key {key} {} bytes",
                ctx.kind(),
                ctx.topic(),
                ctx.message_type(),
                ctx.payload_len()
            ),
        );
        if key == "nobody" {
            return Err(ctx.reject("no tenant for customer `nobody`"));
        }
        ctx.headers_mut().insert("x-tenant", self.0);
        next.run(ctx).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_layer_adds_a_header_the_consumer_gets_and_rejects_with_a_typed_error() {
    let (seen, handled) = (Log::default(), Log::default());
    let Some(builder) = real_kafka("mw_header") else {
        return;
    };
    let orm = builder
        .produce_layer(Tenant("acme", seen.clone()))
        .build()
        .await
        .unwrap();
    let orders = orm.topic::<Order>();
    let rejected = orders.produce(&order(1, "nobody")).await.unwrap_err();
    match &rejected {
        Error::Rejected {
            topic,
            message_type,
            reason,
        } => {
            assert_eq!(topic, &orders.name());
            assert_eq!(*message_type, "Order");
            assert!(reason.to_string().contains("nobody"), "{reason}");
        }
        other => panic!("expected Error::Rejected, got {other:?}"),
    }
    orders.produce(&order(2, "c2")).await.unwrap();
    let handler = orders
        .handler_with(Logged(handled.clone()))
        .spawn()
        .await
        .unwrap();
    wait_for("the accepted order handled", || {
        !handled.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        entries(&handled),
        ["handled 2 tenant acme"],
        "the rejected one was never sent"
    );
    let topic = orders.name();
    let payload = serde_json::to_vec(&order(2, "c2")).unwrap().len();
    assert_eq!(
        entries(&seen),
        [
            format!(
                "Produce {topic} Order key nobody {} bytes",
                serde_json::to_vec(&order(1, "nobody")).unwrap().len()
            ),
            format!("Produce {topic} Order key c2 {payload} bytes"),
        ]
    );
    handler.shutdown().await.unwrap();
}

/// One handler invocation as a recording layer saw it.
#[derive(Debug, Clone)]
struct Seen {
    offset: i64,
    id: i64,
    key: String,
    attempt: u32,
    message_type: &'static str,
    took: Duration,
    outcome: Result<Outcome, String>,
}

/// Times each invocation and records it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl ConsumeLayer for Recorder {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let started = Instant::now();
        let consumed = next.run().await;
        let msg = ctx.message();
        self.0.lock().unwrap().push(Seen {
            offset: msg.offset(),
            id: msg.value::<Order>().map_or(-1, |o| o.id),
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            attempt: msg.attempt(),
            message_type: msg.message_type(),
            took: started.elapsed(),
            outcome: consumed.as_ref().map(|o| *o).map_err(|e| e.to_string()),
        });
        consumed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consume_layer_times_and_records_each_delivery_and_attempt() {
    let Some(builder) = real_kafka("mw_record") else {
        return;
    };
    let recorder = Recorder::default();
    let orm = builder
        .consume_layer(recorder.clone())
        .build()
        .await
        .unwrap();
    let orders = orm.topic::<Order>();
    orders
        .produce_all(&[order(1, "a"), order(2, "b"), order(3, "c")])
        .await
        .unwrap();
    let handler = orders
        .handler_without_database(async |msg: &Delivery<Order>| {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if msg.id == 2 && msg.attempt() == 1 {
                return Err("order 2 fails once".into());
            }
            Ok(())
        })
        .spawn()
        .await
        .unwrap();
    wait_for("three orders handled", || handler.stats().handled == 3).await;
    let seen = recorder.0.lock().unwrap().clone();
    let summary: Vec<_> = seen
        .iter()
        .map(|s| (s.offset, s.id, s.key.as_str(), s.attempt, s.outcome.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (0, 1, "a", 1, Ok(Outcome::Handled)),
            (1, 2, "b", 1, Err("order 2 fails once".to_string())),
            (1, 2, "b", 2, Ok(Outcome::Handled)),
            (2, 3, "c", 1, Ok(Outcome::Handled)),
        ]
    );
    for s in &seen {
        assert_eq!(s.message_type, "Order");
        assert!(
            s.took >= Duration::from_millis(30),
            "timed around the handler: {s:?}"
        );
    }
    handler.shutdown().await.unwrap();
}

/// Fails customer `blocked` without calling the handler, skips customer `filtered`.
struct Gatekeeper(Log);

impl ConsumeLayer for Gatekeeper {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let msg = ctx.message();
        match msg.key() {
            Some(b"blocked") => {
                log(&self.0, format!("blocked attempt {}", msg.attempt()));
                Err("blocked by the gatekeeper".into())
            }
            Some(b"filtered") => Ok(Outcome::Skipped),
            _ => next.run().await,
        }
    }
}

/// The records of `topic` with their headers, read from the start until quiet.
async fn records(orm: &KafkaOrm, topic: &str) -> Vec<BTreeMap<String, String>> {
    let mut cfg = orm.client_config();
    cfg.set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let reader: StreamConsumer = cfg.create().unwrap();
    reader.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
        out.push(m.headers().map_or_else(BTreeMap::new, |hs| {
            hs.iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_string(), value.into_owned())
                })
                .collect()
        }));
    }
    out
}

async fn committed_lag_is_zero(handler: &RunningHandler, topic: &str) {
    within(30, "every offset of the topic committed", async {
        loop {
            let lag = handler.committed_lag(Duration::from_secs(5)).await.unwrap();
            if lag.iter().any(|l| l.topic == topic)
                && lag.iter().all(|l| l.topic != topic || l.lag == 0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_circuiting_layer_fails_through_the_retries_into_the_dlq_or_skips_the_handler() {
    let Some(builder) = real_kafka("mw_gate") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let (gate, handled) = (Log::default(), Log::default());
    let orders = orm.topic::<Order>();
    orders
        .produce_all(&[order(1, "filtered"), order(2, "ok"), order(3, "blocked")])
        .await
        .unwrap();
    let handler = orders
        .handler_with(Logged(handled.clone()))
        .layer(Gatekeeper(gate.clone()))
        .spawn()
        .await
        .unwrap();
    wait_for("the blocked order dead-lettered", || {
        handler.stats().dead_lettered == 1
    })
    .await;
    assert_eq!(
        entries(&handled),
        ["handled 2 tenant -"],
        "neither filtered nor blocked reached it"
    );
    assert_eq!(
        entries(&gate),
        [
            "blocked attempt 1",
            "blocked attempt 2",
            "blocked attempt 3"
        ],
        "the layer's error is retried like the handler's"
    );
    let stats = handler.stats();
    assert_eq!((stats.handled, stats.retries), (1, 2), "{stats:?}");
    committed_lag_is_zero(&handler, &orders.name()).await;
    let dlq = records(&orm, &format!("{}.dlq", orders.name())).await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].get(DLQ_ATTEMPTS).map(String::as_str), Some("3"));
    assert!(
        dlq[0][DLQ_ERROR].contains("blocked by the gatekeeper"),
        "{dlq:?}"
    );
    handler.shutdown().await.unwrap();
}

/// A handler without a database of invoices, logging the `x-tenant` headers it got.
struct Invoices(Log);

impl HandlerWithoutDatabase<Invoice> for Invoices {
    async fn handle(&self, msg: &Delivery<Invoice>) -> Result<(), HandlerError> {
        let tenants: Vec<_> = msg
            .headers()
            .iter()
            .filter(|(name, _)| *name == "x-tenant")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        log(&self.0, format!("invoice {} tenants {tenants:?}", msg.id));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_layer_header_is_stored_in_the_outbox_row_and_delivered_by_the_relay() {
    let Some(builder) = real_kafka("mw_publish") else {
        return;
    };
    let Some(db) = fresh_postgres("mw_publish").await else {
        return;
    };
    let (seen, got) = (Log::default(), Log::default());
    let orm = builder
        .database(db.clone())
        .produce_layer(Tenant("acme", seen.clone()))
        .build()
        .await
        .unwrap();
    let invoices = orm.topic::<Invoice>();
    let txn = db.begin().await.unwrap();
    let invoice = Invoice {
        id: 7,
        customer: "c7".into(),
    };
    invoices.publish(&txn, &invoice).await.unwrap();
    let refused = Invoice {
        id: 8,
        customer: "nobody".into(),
    };
    assert!(matches!(
        invoices.publish_all(&txn, [&invoice, &refused]).await,
        Err(Error::Rejected { .. })
    ));
    txn.commit().await.unwrap();

    let table = Invoice::SPEC.outbox.unwrap().table;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT headers FROM \"{table}\""),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one row: the rejected call wrote none");
    let headers: Vec<u8> = rows[0].try_get_by_index(0).unwrap();
    let stored = String::from_utf8_lossy(&headers);
    assert!(
        stored.contains("x-tenant") && stored.contains("acme"),
        "{stored:?}"
    );

    let relay = orm.outbox_relay().spawn().await.unwrap();
    let handler = invoices
        .handler_with(Invoices(got.clone()))
        .spawn()
        .await
        .unwrap();
    wait_for("the relayed invoice handled", || {
        !got.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        entries(&got),
        ["invoice 7 tenants [\"acme\"]"],
        "once, from the row"
    );
    let calls = entries(&seen);
    assert_eq!(
        calls.len(),
        3,
        "at publish only, never in the relay: {calls:?}"
    );
    assert!(calls.iter().all(|c| c.starts_with("Publish ")), "{calls:?}");
    handler.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
}

/// Logs each invocation's size.
struct Sizes(Log);

impl ConsumeLayer for Sizes {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let consumed = next.run().await;
        log(
            &self.0,
            format!(
                "batch {} of {}: {consumed:?}",
                ctx.is_batch(),
                ctx.messages().len()
            ),
        );
        consumed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_runs_its_layers_around_each_batch() {
    let Some(builder) = real_kafka("mw_batch") else {
        return;
    };
    let orm = builder.build().await.unwrap();
    let (sizes, handled) = (Log::default(), Log::default());
    let orders = orm.topic::<Order>();
    let all: Vec<Order> = (1..=5).map(|i| order(i, "c")).collect();
    orders.produce_all(&all).await.unwrap();
    let handler = orders
        .handler_with(Logged(handled.clone()))
        .batch(5, Duration::from_secs(2))
        .layer(Sizes(sizes.clone()))
        .spawn()
        .await
        .unwrap();
    wait_for("five orders handled", || handler.stats().handled == 5).await;
    assert_eq!(
        entries(&sizes),
        ["batch true of 5: Ok(Batch { handled: 5, duplicates: 0 })"]
    );
    handler.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Packed {
    pub parcel: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub parcel: i64,
}

/// A topic enum with an inbox: typed routes in a transaction.
#[derive(Debug, Clone, Topic)]
#[topic(
    name = "mw.parcels",
    key = "parcel",
    partitions = 1,
    inbox(dedup = "parcel"),
    group = "mw-parcels"
)]
pub enum Parcel {
    Packed(Packed),
    Shipped(Shipped),
}

/// Logs each invocation's message type and outcome.
struct Outcomes(Log);

impl ConsumeLayer for Outcomes {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let consumed = next.run().await;
        let msg = ctx.message();
        let parcel = match msg.value::<Parcel>() {
            Some(Parcel::Packed(p)) => p.parcel,
            Some(Parcel::Shipped(s)) => s.parcel,
            None => -1,
        };
        log(
            &self.0,
            format!("{} {parcel}: {consumed:?}", msg.message_type()),
        );
        consumed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_around_typed_routes_in_a_transaction_sees_member_types_and_duplicates() {
    let Some(builder) = real_kafka("mw_routes") else {
        return;
    };
    let Some(db) = fresh_postgres("mw_routes").await else {
        return;
    };
    let (outcomes, routed) = (Log::default(), Log::default());
    let orm = builder
        .database(db)
        .consume_layer(Outcomes(outcomes.clone()))
        .build()
        .await
        .unwrap();
    let parcels = orm.topic::<Parcel>();
    for p in [
        Parcel::Packed(Packed { parcel: 1 }),
        Parcel::Shipped(Shipped { parcel: 2 }),
        Parcel::Packed(Packed { parcel: 1 }), // the inbox has it: a duplicate
    ] {
        parcels.produce(&p).await.unwrap();
    }
    let (on_packed, on_shipped) = (routed.clone(), routed.clone());
    let handler = parcels
        .handler_with(
            kafka_orm::Routes::new()
                .on::<Packed>(async move |_txn, p| {
                    log(&on_packed, format!("packed {}", p.parcel));
                    Ok(())
                })
                .on::<Shipped>(async move |_txn, s| {
                    log(&on_shipped, format!("shipped {}", s.parcel));
                    Ok(())
                }),
        )
        .spawn()
        .await
        .unwrap();
    wait_for("three parcels through the layer", || {
        outcomes.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(
        entries(&outcomes),
        [
            "Packed 1: Ok(Handled)",
            "Shipped 2: Ok(Handled)",
            "Packed 1: Ok(Duplicate)"
        ]
    );
    assert_eq!(entries(&routed), ["packed 1", "shipped 2"]);
    handler.shutdown().await.unwrap();
}
