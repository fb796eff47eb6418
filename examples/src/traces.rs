//! Traces across Kafka: one OpenTelemetry trace from a request that publishes an event in
//! its database transaction, through the outbox relay, to the handler that applies it;
//! printed as a tree when the handler is done.
//!
//! kafka-orm's `opentelemetry` feature writes the W3C `traceparent` into the outbox row at
//! `publish` and continues it in the handler. What an application adds is the `tracing`
//! subscriber with the OpenTelemetry layer, here with the SDK's in-memory exporter standing
//! in for OTLP (`opentelemetry-otlp`: `.with_batch_exporter(SpanExporter::builder()...)`).
//!
//! Zero setup by default, like the demo: the embedded broker and an SQLite file under
//! `target/`; `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` point it at real services.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin traces
//! ```

use std::time::Duration;

use kafka_orm::deps::opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use kafka_orm::deps::tracing_opentelemetry;
use kafka_orm::{KafkaOrm, Topic};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sea_orm::{Database, TransactionTrait};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// The event: published through the outbox, applied once through the inbox.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "traces.orders",
    key = "customer",
    outbox(table = "traces_orders_outbox"),
    inbox(dedup = "order_id", table = "traces_orders_inbox"),
    group = "traces-billing"
)]
pub struct OrderPlaced {
    /// Unique per order.
    pub order_id: i64,
    /// Orders of one customer stay in order.
    pub customer: String,
}

/// The subscriber: a `tracing` registry with the OpenTelemetry layer, first thing in `main`.
fn install_tracing() -> Result<(InMemorySpanExporter, SdkTracerProvider), Box<dyn std::error::Error>>
{
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("traces-example"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
    Ok((exporter, provider))
}

/// One line per span, children indented under their parent, traces one after another.
/// (SeaORM's own spans, `begin`, `execute_raw`, `commit`, are left out.)
fn print_traces(spans: &[SpanData]) {
    let mut traces: Vec<(TraceId, Vec<&SpanData>)> = Vec::new();
    for span in spans.iter().filter(|s| s.name.starts_with("kafka_orm.")) {
        let trace = span.span_context.trace_id();
        if !traces.iter().any(|(t, _)| *t == trace) {
            traces.push((trace, Vec::new()));
        }
    }
    for span in spans
        .iter()
        .filter(|s| s.name.starts_with("kafka_orm.") || s.name == "checkout")
    {
        let trace = span.span_context.trace_id();
        if let Some((_, members)) = traces.iter_mut().find(|(t, _)| *t == trace) {
            members.push(span);
        }
    }
    let name_of = |id: SpanId| {
        spans
            .iter()
            .find(|s| s.span_context.span_id() == id)
            .map_or("?".to_string(), |s| s.name.to_string())
    };
    for (trace, members) in &traces {
        println!("trace {trace}");
        let ids: Vec<SpanId> = members.iter().map(|s| s.span_context.span_id()).collect();
        let roots = members.iter().filter(|s| !ids.contains(&s.parent_span_id));
        for root in roots {
            print_span(root, members, 1, &name_of);
        }
    }
}

fn print_span(
    span: &SpanData,
    all: &[&SpanData],
    depth: usize,
    name_of: &dyn Fn(SpanId) -> String,
) {
    let attr = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map_or(String::new(), |kv| format!(" {key}={}", kv.value))
    };
    println!(
        "{:indent$}{} [{:?}]{}{}",
        "",
        span.name,
        span.span_kind,
        attr("messaging.operation.type"),
        attr("messaging.destination.name"),
        indent = depth * 2
    );
    for link in span.links.iter() {
        let target = name_of(link.span_context.span_id());
        let trace = link.span_context.trace_id();
        println!(
            "{:indent$}linked to {target} of trace {trace}",
            "",
            indent = depth * 2 + 2
        );
    }
    let id = span.span_context.span_id();
    for child in all.iter().filter(|s| s.parent_span_id == id) {
        print_span(child, all, depth + 1, name_of);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (exporter, _provider) = install_tracing()?;
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://target/kafka-orm-traces.db?mode=rwc".to_string());
    let db = Database::connect(&db_url).await?;
    let builder = KafkaOrm::builder().database(db.clone());
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => builder.bootstrap_servers(servers),
        _ => builder.embedded(),
    };
    let orm = builder.build().await?;
    let relay = orm.outbox_relay().spawn().await?;
    let (done, mut applied) = tokio::sync::mpsc::unbounded_channel();
    let billing = orm
        .topic::<OrderPlaced>()
        .handler(async move |_txn, order| {
            // Runs in the handler's span: a child of the request's trace.
            let _ = done.send(order.order_id);
            Ok(())
        })
        .spawn()
        .await?;

    // The request: its span, its transaction, the event published in it.
    let order_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let order = OrderPlaced {
        order_id,
        customer: "c-42".into(),
    };
    let checkout = tracing::info_span!("checkout", order_id);
    async {
        let txn = db.begin().await?;
        orm.topic::<OrderPlaced>().publish(&txn, &order).await?;
        txn.commit().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .instrument(checkout)
    .await?;

    let applied = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(id) = applied.recv().await {
            if id == order_id {
                return true;
            }
        }
        false
    })
    .await;
    billing.shutdown().await?;
    relay.shutdown().await?;
    if !matches!(applied, Ok(true)) {
        return Err("the handler did not apply the order within 60 s".into());
    }
    print_traces(&exporter.get_finished_spans()?);
    Ok(())
}
