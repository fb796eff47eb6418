//! Traces across Kafka: the W3C trace context in message headers.
//!
//! With the `opentelemetry` feature, and an OpenTelemetry layer
//! ([`tracing_opentelemetry`](https://docs.rs/tracing-opentelemetry)) in the application's
//! `tracing` subscriber:
//!
//! - `produce` (and `produce_all`, `produce_with_headers`) writes the context of its
//!   `kafka_orm.produce` span into the message's [`TRACEPARENT_HEADER`] and
//!   [`TRACESTATE_HEADER`] headers;
//! - `publish` does the same for its `kafka_orm.publish` span, into the outbox row's
//!   headers, so the relay's produce carries the publisher's trace; the relay's
//!   `kafka_orm.relay_batch` span links to every row's context;
//! - a handler's `kafka_orm.handle` span and a stream's `kafka_orm.receive` span (see
//!   [`Delivery::span`](crate::consumer::Delivery::span)) are children of the context the
//!   message carries; a batch handler's `kafka_orm.handle_batch` span links to each.
//!
//! A `traceparent` you put in the headers yourself is kept, never overwritten. When the
//! kafka-orm span is filtered out, the context is that of the innermost span that is not.
//!
//! The spans also get the OpenTelemetry messaging attributes (`messaging.system` =
//! `kafka`, `messaging.destination.name`, `messaging.destination.partition.id`,
//! `messaging.kafka.offset`, `messaging.consumer.group.name`, `messaging.message.id`,
//! `messaging.batch.message_count`, `messaging.operation.type` and `.name`) and a span
//! kind; the table in [`crate::telemetry`] lists them per span.
//!
//! Without the feature, `traceparent` is carried through when present and shown as a
//! field of `kafka_orm.handle`, and nothing else happens.

use tracing::Span;

use crate::headers::Headers;
pub use crate::headers::{TRACEPARENT_HEADER, TRACESTATE_HEADER};

#[cfg(feature = "opentelemetry")]
pub use otel::{extract, inject};

/// What a span does with messages: its `messaging.operation.type` (and `.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) enum Operation {
    /// `publish`: the message is created (in the outbox), sent later by the relay.
    Create,
    /// `produce`, the relay: sent to the broker.
    Send,
    /// A stream hands the message out.
    Receive,
    /// A handler applies it.
    Process,
}

/// The messaging attributes of one span (`None`, or an empty destination: not set).
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) struct Messaging<'a> {
    /// `messaging.destination.name`: the topic.
    pub destination: &'a str,
    /// `messaging.destination.partition.id`.
    pub partition: Option<i32>,
    /// `messaging.kafka.offset`.
    pub offset: Option<i64>,
    /// `messaging.consumer.group.name`.
    pub group: Option<&'a str>,
    /// `messaging.message.id`: kafka-orm's message id.
    pub message_id: Option<&'a str>,
    /// `messaging.batch.message_count`, for spans of several messages.
    pub batch: Option<usize>,
}

/// Gives `span` its span kind (its `otel.kind` field, which the span must declare) and
/// messaging attributes. Call it before the span is entered.
pub(crate) fn describe(span: &Span, op: Operation, attrs: &Messaging<'_>) {
    #[cfg(feature = "opentelemetry")]
    otel::describe(span, op, attrs);
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, op, attrs);
}

/// Writes the current context (of the entered span: call it inside it) into `headers`,
/// unless they carry a `traceparent` already.
pub(crate) fn inject_current(headers: &mut Headers) {
    #[cfg(feature = "opentelemetry")]
    otel::inject_current(headers);
    #[cfg(not(feature = "opentelemetry"))]
    let _ = headers;
}

/// Makes the context carried by `headers` the parent of `span` (before it is entered).
pub(crate) fn continue_from(span: &Span, headers: &Headers) {
    #[cfg(feature = "opentelemetry")]
    if let Some(cx) = extract(headers) {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let parent = opentelemetry::Context::new().with_remote_span_context(cx);
        let _ = span.set_parent(parent);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, headers);
}

/// Links `span` to the context carried by `headers`, if any.
pub(crate) fn link(span: &Span, headers: &Headers) {
    #[cfg(feature = "opentelemetry")]
    if let Some(cx) = extract(headers) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.add_link(cx);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, headers);
}

/// Records the `messaging.message.id` of a span's one message, once it is known.
pub(crate) fn message_id(span: &Span, id: &str) {
    #[cfg(feature = "opentelemetry")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.set_attribute(otel::MESSAGE_ID, id.to_string());
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, id);
}

/// Records on a `send` span where the broker stored the message.
pub(crate) fn delivered(span: &Span, partition: i32, offset: i64) {
    #[cfg(feature = "opentelemetry")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.set_attribute(otel::PARTITION, partition.to_string());
        span.set_attribute(otel::OFFSET, offset);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, partition, offset);
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{SpanContext, TraceContextExt};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Messaging, Operation, TRACEPARENT_HEADER, TRACESTATE_HEADER};
    use crate::headers::Headers;
    use crate::telemetry::w3c;

    pub(super) const PARTITION: &str = "messaging.destination.partition.id";
    pub(super) const OFFSET: &str = "messaging.kafka.offset";
    pub(super) const MESSAGE_ID: &str = "messaging.message.id";

    /// The remote span context carried by `headers` (their [`TRACEPARENT_HEADER`] and
    /// [`TRACESTATE_HEADER`]), `None` when there is none or it is malformed.
    ///
    /// Handlers and streams use it for their spans' parent; use it for messages read some
    /// other way (a raw consumer, a transactional pipeline's inputs).
    pub fn extract(headers: &Headers) -> Option<SpanContext> {
        let traceparent = headers.get_str(TRACEPARENT_HEADER)?;
        w3c::parse(traceparent, headers.get_str(TRACESTATE_HEADER))
    }

    /// Writes `cx` into `headers` as [`TRACEPARENT_HEADER`] (and [`TRACESTATE_HEADER`] when
    /// it has entries), unless `headers` carry a `traceparent` already or `cx` is invalid;
    /// returns whether it wrote. `produce` and `publish` do this with the current span.
    pub fn inject(cx: &SpanContext, headers: &mut Headers) -> bool {
        if headers.contains(TRACEPARENT_HEADER) {
            return false;
        }
        let Some(traceparent) = w3c::traceparent(cx) else {
            return false;
        };
        headers.insert(TRACEPARENT_HEADER, traceparent);
        if let Some(state) = w3c::tracestate(cx) {
            headers.insert(TRACESTATE_HEADER, state);
        }
        true
    }

    pub(super) fn inject_current(headers: &mut Headers) {
        if headers.contains(TRACEPARENT_HEADER) {
            return;
        }
        let mut cx = Span::current().context();
        if !cx.span().span_context().is_valid() {
            // The current span is filtered out of the OpenTelemetry layer: the innermost
            // span that is not was attached as the current context when it was entered.
            cx = opentelemetry::Context::current();
        }
        inject(cx.span().span_context(), headers);
    }

    pub(super) fn describe(span: &Span, op: Operation, m: &Messaging<'_>) {
        let (name, kind) = match op {
            Operation::Create => ("create", "producer"),
            // A batch send (the relay's) carries its rows' contexts, not its own: a client.
            Operation::Send if m.batch.is_some() => ("send", "client"),
            Operation::Send => ("send", "producer"),
            Operation::Receive => ("receive", "consumer"),
            Operation::Process => ("process", "consumer"),
        };
        span.record("otel.kind", kind);
        span.set_attribute("messaging.system", "kafka");
        span.set_attribute("messaging.operation.type", name);
        span.set_attribute("messaging.operation.name", name);
        if !m.destination.is_empty() {
            span.set_attribute("messaging.destination.name", m.destination.to_string());
        }
        if let Some(p) = m.partition {
            span.set_attribute(PARTITION, p.to_string());
        }
        if let Some(o) = m.offset {
            span.set_attribute(OFFSET, o);
        }
        if let Some(g) = m.group {
            span.set_attribute("messaging.consumer.group.name", g.to_string());
        }
        if let Some(id) = m.message_id {
            span.set_attribute(MESSAGE_ID, id.to_string());
        }
        if let Some(n) = m.batch {
            span.set_attribute("messaging.batch.message_count", n as i64);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

        #[test]
        fn a_user_supplied_traceparent_is_kept() {
            let theirs = Headers::new().with(TRACEPARENT_HEADER, "00-their-own-01");
            let ours = extract(&Headers::new().with(TRACEPARENT_HEADER, TP)).unwrap();
            let mut headers = theirs.clone();
            assert!(!inject(&ours, &mut headers));
            assert_eq!(headers, theirs);
            inject_current(&mut headers);
            assert_eq!(headers, theirs);
        }

        #[test]
        fn inject_writes_what_extract_reads() {
            let cx = w3c::parse(TP, Some("k=v")).unwrap();
            let mut headers = Headers::new();
            assert!(inject(&cx, &mut headers));
            assert_eq!(headers.get_str(TRACEPARENT_HEADER), Some(TP));
            assert_eq!(headers.get_str(TRACESTATE_HEADER), Some("k=v"));
            assert_eq!(extract(&headers), Some(cx));
            assert!(!inject(&SpanContext::empty_context(), &mut Headers::new()));
        }

        #[test]
        fn without_a_layer_nothing_is_written() {
            let mut headers = Headers::new();
            inject_current(&mut headers);
            assert!(headers.is_empty());
        }
    }
}
