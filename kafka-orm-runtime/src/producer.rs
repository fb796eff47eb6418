//! Typed producing: encode with the topic's codec, key from the key fields, stamp the
//! message-id header, send with the idempotent producer and await the broker's
//! acknowledgement.

use std::time::Duration;

use futures_util::future::try_join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::telemetry::metrics as telemetry;
use crate::telemetry::trace::{self, Messaging, Operation};
use crate::topic::Topic;

pub use crate::headers::{
    Headers, MESSAGE_ID_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER, TYPE_HEADER,
};

/// Where the broker stored a produced message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The topic (with the context's namespace, if any).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The message id stamped in the [`MESSAGE_ID_HEADER`].
    pub message_id: String,
}

/// An encoded message ready to send: the shared path of direct produce and the outbox relay.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Headers,
    pub message_id: String,
}

/// Encodes `value` for topic `T`, stamping the message-id header (unless `extra` has one)
/// and the type header (the value's stable message type, replacing any in `extra`) on top
/// of `extra`.
pub(crate) fn encode<T: Topic>(value: &T, extra: Headers) -> Result<Outgoing> {
    let mut payload = Vec::with_capacity(128);
    value
        .encode_payload(&mut payload)
        .map_err(|source| Error::Encode {
            topic: T::SPEC.name,
            type_name: T::SPEC.type_name,
            source,
        })?;
    let message_id = match extra.get_str(MESSAGE_ID_HEADER) {
        Some(id) => id.to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let mut headers = extra;
    if !headers.contains(MESSAGE_ID_HEADER) {
        headers.insert(MESSAGE_ID_HEADER, message_id.clone());
    }
    // Always the value's own: consumers decode by it, so a caller's cannot stand.
    headers.remove(TYPE_HEADER);
    headers.insert(TYPE_HEADER, value.message_type());
    Ok(Outgoing {
        key: value.key(),
        payload,
        headers,
        message_id,
    })
}

/// Sends one encoded message and waits for the broker's acknowledgement.
pub(crate) async fn send(
    producer: &FutureProducer,
    topic: &str,
    msg: Outgoing,
    queue_timeout: Duration,
) -> Result<DeliveryReport> {
    let (partition, offset) = send_parts(
        producer,
        topic,
        msg.key.as_deref(),
        &msg.payload,
        msg.headers,
        &msg.message_id,
        queue_timeout,
    )
    .await?;
    Ok(DeliveryReport {
        topic: topic.to_string(),
        partition,
        offset,
        message_id: msg.message_id,
    })
}

/// [`send`] of borrowed parts (a produce layer's context keeps them): where the broker
/// stored it.
pub(crate) async fn send_parts(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    mut headers: Headers,
    message_id: &str,
    queue_timeout: Duration,
) -> Result<(i32, i64)> {
    let span = tracing::debug_span!(
        "kafka_orm.produce",
        topic,
        message_id,
        otel.kind = tracing::field::Empty,
    );
    let attrs = Messaging {
        destination: topic,
        message_id: Some(message_id),
        ..Messaging::default()
    };
    trace::describe(&span, Operation::Send, &attrs);
    let this = span.clone();
    async move {
        trace::inject_current(&mut headers);
        let mut record = FutureRecord::to(topic)
            .payload(payload)
            .headers(headers.to_rdkafka());
        if let Some(key) = key {
            record = record.key(key);
        }
        match producer.send(record, queue_timeout).await {
            Ok(d) => {
                telemetry::sent(topic, None);
                trace::delivered(&this, d.partition, d.offset);
                Ok((d.partition, d.offset))
            }
            Err((source, _)) => {
                let code = source.rdkafka_error_code();
                telemetry::sent(
                    topic,
                    Some(&code.map_or("unknown".into(), |c| format!("{c:?}"))),
                );
                Err(Error::Delivery {
                    topic: topic.to_string(),
                    source,
                })
            }
        }
    }
    .instrument(span)
    .await
}

/// How long [`enqueue`] sleeps while librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(2);

/// Hands `record` to librdkafka, waiting while its queue is full (`queue.buffering.max.*`)
/// but not past `until`; the future resolves with the broker's acknowledgement.
pub(crate) async fn enqueue<'a, K, P>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, K, P>,
    until: std::time::Instant,
) -> std::result::Result<rdkafka::producer::DeliveryFuture, KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(future) => return Ok(future),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if std::time::Instant::now() + QUEUE_FULL_PAUSE < until =>
            {
                record = back;
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Initializes the transactions of `producer` (fencing earlier producers with its
/// transactional id and aborting what they left open), off the async runtime.
pub(crate) async fn init_transactions(
    producer: &FutureProducer,
    transactional_id: &str,
    timeout: Duration,
) -> Result<()> {
    use rdkafka::producer::Producer as _;
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(timeout))
        .await
        .map_err(|_| Error::Shutdown)?
        .map_err(|e| {
            Error::kafka(
                format!("initializing transactions for `{transactional_id}` (init_transactions)"),
                e,
            )
        })
}

/// Runs a blocking producer call (a transaction's begin, commit, abort or offsets) off the
/// async runtime; a cancelled task is `KafkaError::Canceled`.
pub(crate) async fn blocking<F>(f: F) -> rdkafka::error::KafkaResult<()>
where
    F: FnOnce() -> rdkafka::error::KafkaResult<()> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
}

/// Sends many messages concurrently (librdkafka batches them) and waits for all
/// acknowledgements; the reports come back in input order.
pub(crate) async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    msgs: Vec<Outgoing>,
    queue_timeout: Duration,
) -> Result<Vec<DeliveryReport>> {
    try_join_all(
        msgs.into_iter()
            .map(|m| send(producer, topic, m, queue_timeout)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_rdkafka() {
        let h = Headers::new()
            .with("a", "1")
            .with("b", vec![0u8, 255])
            .with("a", "2");
        let back = Headers::from_rdkafka(&h.to_rdkafka());
        assert_eq!(back, h);
        assert_eq!(back.get_str("a"), Some("2"));
        assert_eq!(back.get("b"), Some(&[0u8, 255][..]));
        assert!(back.get("c").is_none());
    }
}
