//! Traces across Kafka (the `opentelemetry` feature), read back from the OpenTelemetry SDK's
//! in-memory span exporter, on the real broker and PostgreSQL:
//!
//! - `publish` inside a SeaORM transaction → outbox relay → handler is ONE trace: the
//!   handler's span is a child of the publisher's span, the relay's batch span links to it,
//!   and a `traceparent` the caller set is kept;
//! - `produce` → `consume()` stream: the stream's receive span is a child of the produce
//!   span, and work done in `Delivery::span` is a child of that;
//! - a batch handler's span links to each message's producer span.
//!
//! Every test binary has one global subscriber (a `tracing` registry with the OpenTelemetry
//! layer); the tests run in parallel, so each finds its own spans by its trace ids, message
//! ids and namespaced topics.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kafka_orm::deps::opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceId, TracerProvider as _,
};
use kafka_orm::deps::sea_orm::{DatabaseConnection, TransactionTrait};
use kafka_orm::deps::tracing_opentelemetry::{self, OpenTelemetrySpanExt};
use kafka_orm::{Headers, KafkaOrm, TRACEPARENT_HEADER, Topic};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "trace.orders",
    key = "customer",
    outbox,
    inbox(dedup = "id"),
    group = "trace-billing"
)]
struct Order {
    id: i64,
    customer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "trace.events", key = "id", group = "trace-readers")]
struct Event {
    id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "trace.ledger",
    key = "account",
    inbox(dedup = "id"),
    group = "trace-ledger"
)]
struct Entry {
    id: i64,
    account: String,
}

/// The process-wide exporter behind the global subscriber (installed on first use).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("installing the global subscriber");
            (exporter, provider)
        })
        .0
}

/// The finished spans named `name` that `pick` accepts.
fn finished(name: &str, pick: impl Fn(&SpanData) -> bool) -> Vec<SpanData> {
    let spans = exporter()
        .get_finished_spans()
        .expect("reading the exporter");
    spans
        .into_iter()
        .filter(|s| s.name == name && pick(s))
        .collect()
}

/// Waits (at most 60 s) until `count` spans `name` that `pick` accepts have finished.
async fn wait_for(name: &str, count: usize, pick: impl Fn(&SpanData) -> bool) -> Vec<SpanData> {
    within(60, &format!("{count} finished `{name}` spans"), async {
        loop {
            let found = finished(name, &pick);
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// The attribute `key` of `span`, as text.
fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Asserts the attributes of `span`, `(key, value)`; a value of `"*"` only has to be there.
fn assert_attrs(span: &SpanData, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        let got = attr(span, key);
        let ok = match *value {
            "*" => got.is_some(),
            v => got.as_deref() == Some(v),
        };
        assert!(
            ok,
            "`{}`: {key} = {got:?}, expected {value:?}; all: {:?}",
            span.name, span.attributes
        );
    }
}

/// The OpenTelemetry context of a `tracing` span.
fn context_of(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

async fn build(test: &str) -> Option<(KafkaOrm, DatabaseConnection, String)> {
    exporter();
    let builder = real_kafka(test)?;
    let db = fresh_postgres(test).await?;
    let orm = builder.database(db.clone()).build().await.unwrap();
    let topic = orm.topic::<Order>().name();
    let namespace = topic.strip_suffix(Order::SPEC.name).unwrap().to_string();
    Some((orm, db, namespace))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_relay_handler_is_one_trace() {
    let Some((orm, db, namespace)) = build("trace-outbox").await else {
        return;
    };
    let orders = orm.topic::<Order>();
    let topic = orders.name();
    let order = |id| Order {
        id,
        customer: format!("c{id}"),
    };

    // The request that publishes, in its own span.
    let checkout = tracing::info_span!("checkout");
    let request = context_of(&checkout);
    let published = async {
        let txn = db.begin().await.unwrap();
        let id = orders.publish(&txn, &order(1)).await.unwrap();
        txn.commit().await.unwrap();
        id
    }
    .instrument(checkout)
    .await;
    // A caller that set its own traceparent keeps it.
    let theirs_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let theirs_span = "00f067aa0ba902b7";
    let theirs = format!("00-{theirs_trace}-{theirs_span}-01");
    let txn = db.begin().await.unwrap();
    let own = orders
        .publish_with_headers(
            &txn,
            &order(2),
            Headers::new().with(TRACEPARENT_HEADER, theirs.as_str()),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();

    static SEEN: Mutex<Vec<(i64, TraceId)>> = Mutex::new(Vec::new());
    let relay = orm.outbox_relay().spawn().await.unwrap();
    let handler = orders
        .handler_boxed(|_txn, msg| {
            Box::pin(async move {
                let cx = context_of(&tracing::Span::current());
                SEEN.lock().unwrap().push((msg.id, cx.trace_id()));
                Ok(())
            })
        })
        .spawn()
        .await
        .unwrap();

    let of = |id: &str| {
        let id = id.to_string();
        move |s: &SpanData| attr(s, "messaging.message.id").as_deref() == Some(id.as_str())
    };
    let handle = wait_for("kafka_orm.handle", 1, of(&published))
        .await
        .remove(0);
    let theirs_handle = wait_for("kafka_orm.handle", 1, of(&own)).await.remove(0);

    // The publish span: a child of the request, a producer creating the message.
    let publish = finished("kafka_orm.publish", of(&published)).remove(0);
    assert_eq!(publish.span_context.trace_id(), request.trace_id());
    assert_eq!(publish.parent_span_id, request.span_id());
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_attrs(
        &publish,
        &[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "create"),
            ("messaging.destination.name", Order::SPEC.name),
        ],
    );

    // The handler's span: the same trace, a child of the publish span, across Kafka.
    assert_eq!(handle.span_context.trace_id(), request.trace_id());
    assert_eq!(handle.parent_span_id, publish.span_context.span_id());
    assert!(handle.parent_span_is_remote);
    assert_eq!(handle.span_kind, SpanKind::Consumer);
    let group = format!("{namespace}trace-billing");
    assert_attrs(
        &handle,
        &[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "process"),
            ("messaging.destination.name", &topic),
            ("messaging.consumer.group.name", &group),
            ("messaging.destination.partition.id", "*"),
            ("messaging.kafka.offset", "*"),
        ],
    );
    // The handler's own code runs in that trace.
    assert!(SEEN.lock().unwrap().contains(&(1, request.trace_id())));

    // The relay's batch span links to the publish span (it has a trace of its own).
    let linked = |s: &SpanData| {
        s.links
            .iter()
            .any(|l| l.span_context.span_id() == publish.span_context.span_id())
    };
    let batch = finished("kafka_orm.relay_batch", linked);
    assert_eq!(batch.len(), 1, "one relay batch delivered the row");
    assert_eq!(batch[0].span_kind, SpanKind::Client);
    assert_ne!(batch[0].span_context.trace_id(), request.trace_id());
    assert_attrs(
        &batch[0],
        &[
            ("messaging.operation.type", "send"),
            ("messaging.destination.name", &topic),
        ],
    );

    // The caller's own traceparent was not overwritten.
    assert_eq!(
        theirs_handle.span_context.trace_id(),
        TraceId::from_hex(theirs_trace).unwrap()
    );
    assert_eq!(
        theirs_handle.parent_span_id,
        SpanId::from_hex(theirs_span).unwrap()
    );
    handler.abort();
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_stream_is_one_trace() {
    let Some((orm, _db, namespace)) = build("trace-stream").await else {
        return;
    };
    let events = orm.topic::<Event>();
    let root = tracing::info_span!("sender");
    let sender = context_of(&root);
    let report = events
        .produce(&Event { id: 7 })
        .instrument(root)
        .await
        .unwrap();

    let mut stream = events.consume().await.unwrap();
    let delivery = within(60, "the stream's delivery", stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.message_id(), Some(report.message_id.as_str()));
    // Work done in the delivery's span continues the trace.
    delivery
        .span()
        .in_scope(|| tracing::info_span!("apply-event").in_scope(|| ()));
    let receive_id = context_of(delivery.span()).span_id();
    drop(delivery);

    let by_id = |s: &SpanData| attr(s, "messaging.message.id") == Some(report.message_id.clone());
    let produce = wait_for("kafka_orm.produce", 1, by_id).await.remove(0);
    assert_eq!(produce.span_context.trace_id(), sender.trace_id());
    assert_eq!(produce.parent_span_id, sender.span_id());
    assert_eq!(produce.span_kind, SpanKind::Producer);
    let (partition, offset) = (report.partition.to_string(), report.offset.to_string());
    assert_attrs(
        &produce,
        &[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "send"),
            ("messaging.destination.name", &report.topic),
            ("messaging.destination.partition.id", &partition),
            ("messaging.kafka.offset", &offset),
        ],
    );

    let receive = wait_for("kafka_orm.receive", 1, by_id).await.remove(0);
    assert_eq!(receive.span_context.span_id(), receive_id);
    assert_eq!(receive.span_context.trace_id(), sender.trace_id());
    assert_eq!(receive.parent_span_id, produce.span_context.span_id());
    assert!(receive.parent_span_is_remote);
    assert_eq!(receive.span_kind, SpanKind::Consumer);
    let group = format!("{namespace}trace-readers");
    assert_attrs(
        &receive,
        &[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "receive"),
            ("messaging.destination.name", &report.topic),
            ("messaging.consumer.group.name", &group),
            ("messaging.destination.partition.id", &partition),
            ("messaging.kafka.offset", &offset),
        ],
    );
    let work = finished("apply-event", |s| s.parent_span_id == receive_id);
    assert_eq!(work.len(), 1, "the work is a child of the receive span");
    assert_eq!(work[0].span_context.trace_id(), sender.trace_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_links_to_every_message() {
    let Some((orm, _db, namespace)) = build("trace-batch").await else {
        return;
    };
    let entries = orm.topic::<Entry>();
    // Three messages of one key (one partition), each from a request of its own.
    let mut senders = Vec::new();
    for id in 0..3 {
        let root = tracing::info_span!("sender");
        let entry = Entry {
            id,
            account: "a".into(),
        };
        let sent = entries.produce(&entry).instrument(root).await.unwrap();
        senders.push(sent.message_id);
    }
    let produced: Vec<SpanContext> = senders
        .iter()
        .map(|id| {
            let by_id = |s: &SpanData| attr(s, "messaging.message.id").as_deref() == Some(id);
            finished("kafka_orm.produce", by_id).remove(0).span_context
        })
        .collect();

    let handler = entries
        .batch_handler_boxed(10, Duration::from_secs(2), |_txn, _msgs| {
            Box::pin(async move { Ok(()) })
        })
        .spawn()
        .await
        .unwrap();
    let topic = entries.name();
    let on_topic =
        |s: &SpanData| attr(s, "messaging.destination.name").as_deref() == Some(topic.as_str());
    let batch = wait_for("kafka_orm.handle_batch", 1, on_topic)
        .await
        .remove(0);
    let links: Vec<SpanId> = batch
        .links
        .iter()
        .map(|l| l.span_context.span_id())
        .collect();
    let expected: Vec<SpanId> = produced.iter().map(SpanContext::span_id).collect();
    assert_eq!(links, expected, "one link per message, to its produce span");
    assert_eq!(batch.span_kind, SpanKind::Consumer);
    let group = format!("{namespace}trace-ledger");
    assert_attrs(
        &batch,
        &[
            ("messaging.operation.type", "process"),
            ("messaging.consumer.group.name", &group),
            ("messaging.batch.message_count", "3"),
        ],
    );
    handler.abort();
}
