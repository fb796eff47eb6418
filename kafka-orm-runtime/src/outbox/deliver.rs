//! Producing one claimed batch, inside the lease's time bounds: [`Table::enqueue`] by the
//! relay's loop as soon as the batch is claimed, [`Table::acks`] in the batch's own task.
//!
//! Rows are handed to the relay's producer in id order while
//! [`LeaseTiming::may_enqueue`](super::lease::LeaseTiming::may_enqueue) holds and their
//! bucket is still held; the acknowledgements are awaited until the batch's
//! [`ack_deadline`](super::lease::LeaseTiming::ack_deadline), after which the producer is
//! purged: every queued message fails at once (none of them is sent later, so no gap
//! opens in a partition) and in-flight ones report. A row that fails blocks its key's
//! later rows in the batch (they are not sent), so no key is reordered by the relay.

use std::collections::HashSet;
use std::time::Instant;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer, PurgeConfig};
use tracing::Span;

use super::claim::Row;
use super::decode_headers;
use super::lease::LeaseView;
use super::relay::RELAY_EPOCH_HEADER;
use super::table::Table;
use crate::producer::{self, Headers, MESSAGE_ID_HEADER, TYPE_HEADER};
use crate::telemetry::trace;

/// A row that failed delivery.
pub(crate) struct Failed {
    pub row: Row,
    pub error: String,
    /// The broker was unreachable or slow (timeouts, leader changes, the batch deadline):
    /// nothing is wrong with the row, so it retries soon, whatever its attempts.
    pub transient: bool,
}

impl Failed {
    fn new(row: Row, error: &KafkaError) -> Self {
        Failed {
            row,
            error: error.to_string(),
            transient: !is_permanent(error),
        }
    }
}

/// Errors that the same row would hit again: too large, malformed, not allowed. (A size
/// error fails every row of the rejected broker batch; see [`blame_size_errors`].)
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | InvalidRecord
                | TopicAuthorizationFailed
                | InvalidArgument
                | UnknownTopic
        )
    )
}

fn is_size_error(error: &str) -> bool {
    error.contains("MessageSizeTooLarge") || error.contains("InvalidMessageSize")
}

/// The broker rejects a whole batch when one row is too large, so every row of it reports
/// the size error: only the largest is to blame (a permanent failure); the others failed
/// alongside it and retry soon. A second oversized row is the largest of a later batch.
pub(crate) fn blame_size_errors(failed: &mut [Failed]) {
    let size = |f: &Failed| f.row.payload.len() + f.row.headers.len();
    let culprit = failed
        .iter()
        .enumerate()
        .filter(|(_, f)| is_size_error(&f.error))
        .max_by_key(|(_, f)| size(f))
        .map(|(i, _)| i);
    for (i, f) in failed.iter_mut().enumerate() {
        if is_size_error(&f.error) {
            f.transient = Some(i) != culprit;
        }
    }
}

/// How one batch ended.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Ids acknowledged by the broker.
    pub delivered: Vec<i64>,
    /// Rows that failed, with the error: each backs off (briefly for a transient error).
    pub failed: Vec<Failed>,
    /// Rows not handed to the producer (lease running out, bucket given back, key
    /// blocked): claimed again later, no attempt spent.
    pub unsent: usize,
}

/// A batch handed to the producer, its acknowledgements to come.
pub(crate) struct Pending {
    out: Outcome,
    in_flight: Vec<(Row, DeliveryFuture)>,
    start: Instant,
    deadline: Instant,
}

impl Table {
    /// Hands `rows` to the producer under `view`, in order (see the module docs); `span`
    /// (the batch's) gets a link to each row's trace context. [`Table::acks`] waits for the
    /// outcome.
    pub(crate) async fn enqueue(&self, rows: Vec<Row>, view: &LeaseView, span: &Span) -> Pending {
        let mut out = Outcome::default();
        let start = Instant::now();
        let deadline = self.timing.ack_deadline(start, view.valid_until);
        let mut blocked: HashSet<String> = HashSet::new();
        let mut in_flight = Vec::with_capacity(rows.len());
        for row in rows {
            let key_blocked = row.key.as_ref().is_some_and(|k| blocked.contains(k));
            if key_blocked
                || !view.owns(row.bucket)
                || !self.timing.may_enqueue(Instant::now(), view.valid_until)
            {
                // Nothing after it of its key may go either.
                block(&mut blocked, &row);
                out.unsent += 1;
                continue;
            }
            let Some(headers) = self.headers_of(&row, view, span) else {
                block(&mut blocked, &row);
                out.failed.push(Failed {
                    row,
                    error: "the row's headers column is malformed".into(),
                    transient: false,
                });
                continue;
            };
            let mut record = FutureRecord::to(&self.topic)
                .payload(&row.payload)
                .headers(headers.to_rdkafka());
            if let Some(k) = &row.key {
                record = record.key(k.as_bytes());
            }
            match producer::enqueue(&self.producer, record, deadline).await {
                Ok(future) => in_flight.push((row, future)),
                Err(e) => {
                    block(&mut blocked, &row);
                    out.failed.push(Failed::new(row, &e));
                }
            }
        }
        Pending {
            out,
            in_flight,
            start,
            deadline,
        }
    }

    /// Waits for the acknowledgements of `pending` until its deadline, then purges the
    /// producer (see the module docs); returns the batch's outcome.
    pub(crate) async fn acks(&self, pending: Pending) -> Outcome {
        let Pending {
            mut out,
            in_flight,
            start,
            deadline,
        } = pending;
        let mut purged = false;
        for (row, mut future) in in_flight {
            let result = match tokio::time::timeout_at(deadline.into(), &mut future).await {
                Ok(r) => r,
                Err(_) => {
                    if !purged {
                        purged = true;
                        self.purge().await;
                    }
                    future.await
                }
            };
            match result {
                Ok(Ok(_)) => out.delivered.push(row.id),
                Ok(Err((e, _))) if is_purge(&e) => {
                    let waited = deadline.saturating_duration_since(start);
                    out.failed.push(Failed {
                        row,
                        error: format!(
                            "not acknowledged within the batch deadline ({waited:?}); purged: {e}"
                        ),
                        transient: true,
                    });
                }
                Ok(Err((e, _))) => out.failed.push(Failed::new(row, &e)),
                Err(_) => out.failed.push(Failed {
                    row,
                    error: "the producer was dropped".into(),
                    transient: true,
                }),
            }
        }
        blame_size_errors(&mut out.failed);
        out
    }

    /// The headers a row is sent with: its own (whose trace context `span` links to, and
    /// its message type, stored at publish), the message id and, leased, the bucket's
    /// epoch; `None` when they are malformed.
    fn headers_of(&self, row: &Row, view: &LeaseView, span: &Span) -> Option<Headers> {
        let mut headers = decode_headers(&row.headers)?;
        trace::link(span, &headers);
        headers.insert(MESSAGE_ID_HEADER, row.message_id.as_str());
        if !headers.contains(TYPE_HEADER) {
            // A row published before rows kept their message type: the topic's one type.
            headers.insert(TYPE_HEADER, self.spec.default_message_type());
        }
        if self.leased {
            let epoch = view.owned.get(&row.bucket).copied().unwrap_or_default();
            headers.insert(RELAY_EPOCH_HEADER, format!("{}:{epoch}", row.bucket));
        }
        Some(headers)
    }

    /// Drops every message still queued in the relay producer (they fail at once, none is
    /// sent later) and fails those in flight.
    async fn purge(&self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            producer.purge(PurgeConfig::default().queue().inflight())
        })
        .await;
        tracing::warn!(
            table = self.table,
            "relay batch not acknowledged before its deadline: purged"
        );
    }
}

fn is_purge(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
    )
}

fn block(blocked: &mut HashSet<String>, row: &Row) {
    if let Some(k) = &row.key {
        blocked.insert(k.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(id: i64, bytes: usize, error: &str, transient: bool) -> Failed {
        Failed {
            row: Row {
                id,
                message_id: String::new(),
                key: None,
                bucket: 0,
                payload: vec![0; bytes],
                headers: Vec::new(),
                attempts: 0,
            },
            error: error.into(),
            transient,
        }
    }

    #[test]
    fn only_the_largest_row_of_a_rejected_batch_is_to_blame() {
        let size = "Message production error: MessageSizeTooLarge (Broker: Message size too large)";
        let mut f = vec![
            failed(1, 100, size, false),
            failed(2, 300_000, size, false),
            failed(3, 120, size, false),
            failed(4, 50, "Local: Fatal error", true),
        ];
        blame_size_errors(&mut f);
        let transient: Vec<bool> = f.iter().map(|f| f.transient).collect();
        assert_eq!(transient, [true, false, true, true]);
    }

    #[test]
    fn other_errors_keep_their_classification() {
        let mut f = vec![failed(1, 10, "Broker: Topic authorization failed", false)];
        blame_size_errors(&mut f);
        assert!(!f[0].transient);
    }
}
