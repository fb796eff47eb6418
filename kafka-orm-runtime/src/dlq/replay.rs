//! [`Replay`]: re-publishing dead letters to their topic, once each.
//!
//! A topic with an outbox gets them through its outbox: per batch, one database
//! transaction records each dead letter in `kafka_orm_dlq_replays` (its dead-letter topic,
//! partition and offset are the primary key) and writes its outbox row; a dead letter
//! recorded already is skipped, so two replays at once, or one run again after a crash,
//! never publish one twice. A topic without an outbox gets them in Kafka transactions that
//! also write a marker per dead letter (see `markers.rs`).

use std::collections::BTreeSet;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use sea_orm::{DatabaseConnection, TransactionTrait};

use super::letter::{DeadLetterRecord, Position, REPLAY_OF_HEADER};
use super::markers::{self, MarkerWriter};
use super::{DlqFilter, RawDlq, ledger};
use crate::error::{Error, Result};
use crate::outbox::raw::{RawMessage, publish_raw};
use crate::outbox::relay::RELAY_EPOCH_HEADER;
use crate::producer::{Headers, MESSAGE_ID_HEADER};

/// The headers a replayed message must not carry over: the relay's epoch and the retry
/// tiers' bookkeeping (it starts afresh), and an earlier replay's link.
const DROPPED: [&str; 2] = [RELAY_EPOCH_HEADER, REPLAY_OF_HEADER];
const RETRY_PREFIX: &str = "kafka-orm-retry-";

/// How far a replay is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Dead letters done (re-published, or found replayed by another replay meanwhile).
    pub done: usize,
    /// Dead letters to do.
    pub total: usize,
}

/// One dead letter re-published (or, in a dry run, to be).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Where it is in the dead-letter topic.
    pub from: Position,
    /// The message id it is re-published with: the original's (so an inbox keyed on it
    /// still deduplicates), or a new one when it had none.
    pub message_id: String,
    /// Its key, as text.
    pub key: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// The topic the dead letters were re-published to (with the namespace).
    pub target: String,
    /// The outbox table they went through, for a topic with an outbox.
    pub outbox: Option<&'static str>,
    /// Dead letters the filter matched.
    pub matched: usize,
    /// Of those, the ones replayed before and so left out.
    pub already_replayed: usize,
    /// The ones re-published now (in a dry run: that would be).
    pub replayed: Vec<Replayed>,
    /// Whether it was a dry run (nothing written).
    pub dry_run: bool,
}

/// A replay of the dead letters a [`DlqFilter`] selects; `.await` it to run it.
///
/// Each dead letter is re-published to its topic once (see the module docs): running the
/// same replay again, or after a crash, re-publishes only what did not commit before.
/// The message keeps its key, payload and headers (its message id too) and gains
/// [`REPLAY_OF_HEADER`], naming the dead letter.
#[must_use = "a replay does nothing until it is awaited"]
pub struct Replay<'a> {
    dlq: &'a RawDlq,
    filter: DlqFilter,
    dry_run: bool,
    batch: usize,
    progress: Option<Box<dyn Fn(ReplayProgress) + Send + Sync + 'a>>,
    crash_after: Option<usize>,
}

impl<'a> Replay<'a> {
    pub(super) fn new(dlq: &'a RawDlq, filter: DlqFilter) -> Self {
        Replay {
            dlq,
            filter,
            dry_run: false,
            batch: crate::defaults::REPLAY_BATCH,
            progress: None,
            crash_after: None,
        }
    }

    /// Only says what would be replayed; writes nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// At most `max` dead letters per transaction (default [`REPLAY_BATCH`](crate::defaults::REPLAY_BATCH)).
    pub fn batch(mut self, max: usize) -> Self {
        self.batch = max.max(1);
        self
    }

    /// Calls `f` after each committed batch.
    pub fn on_progress(mut self, f: impl Fn(ReplayProgress) + Send + Sync + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Fault injection for tests: the replay dies once `n` dead letters are sent, with
    /// its transaction open (not committed, not aborted), as a crash would leave it.
    #[doc(hidden)]
    pub fn crash_after(mut self, n: usize) -> Self {
        self.crash_after = Some(n);
        self
    }
}

impl<'a> IntoFuture for Replay<'a> {
    type Output = Result<ReplayReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ReplayReport>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Where replayed dead letters go.
enum Route<'a> {
    Outbox(&'a DatabaseConnection),
    Kafka(Option<MarkerWriter>),
}

impl Replay<'_> {
    async fn run(self) -> Result<ReplayReport> {
        let dlq = self.dlq;
        let name = dlq.checked_name()?;
        let spec = dlq.spec;
        let target = dlq.orm.topic_name(spec);
        let mut route = match (spec.outbox, dlq.orm.database()) {
            (Some(_), Some(db)) => Route::Outbox(db),
            (Some(_), None) => {
                return Err(Error::NoDatabase {
                    operation: "replaying dead letters through the outbox",
                    topic: spec.name,
                });
            }
            (None, _) if self.dry_run => Route::Kafka(None),
            // Fences every earlier replay before the markers are read.
            (None, _) => Route::Kafka(Some(MarkerWriter::open(&dlq.orm, name, dlq.timeout).await?)),
        };
        let done = match &route {
            Route::Outbox(db) => {
                // `migrate` creates it; a role that may not create tables still reads it.
                if let Err(e) = ledger::ensure_table(db).await {
                    tracing::debug!(error = %e, "cannot create the replay table; using it as it is");
                }
                ledger::replayed(*db, name).await?
            }
            Route::Kafka(Some(writer)) if writer.created => BTreeSet::new(),
            Route::Kafka(_) => markers::replayed(&dlq.orm, name, dlq.timeout).await?,
        };
        let matched = dlq.scan_all(&self.filter).await?;
        let (todo, already) = self.select(matched.iter(), &done);
        let mut report = ReplayReport {
            target,
            outbox: spec.outbox.map(|o| o.table),
            matched: matched.len(),
            already_replayed: already,
            replayed: Vec::new(),
            dry_run: self.dry_run,
        };
        if self.dry_run {
            report.replayed = todo.iter().map(|r| replayed(r)).collect();
            return Ok(report);
        }
        self.send_all(&mut route, &todo, &mut report).await?;
        Ok(report)
    }

    /// The matched dead letters to replay, and how many of them were replayed before.
    fn select<'r>(
        &self,
        matched: impl Iterator<Item = &'r DeadLetterRecord>,
        done: &BTreeSet<Position>,
    ) -> (Vec<&'r DeadLetterRecord>, usize) {
        let (mut todo, mut already) = (Vec::new(), 0);
        for record in matched {
            if !self.filter.includes_replayed() && done.contains(&record.position) {
                already += 1;
            } else {
                todo.push(record);
            }
        }
        (todo, already)
    }

    async fn send_all(
        &self,
        route: &mut Route<'_>,
        todo: &[&DeadLetterRecord],
        report: &mut ReplayReport,
    ) -> Result<()> {
        let mut sent = 0;
        for chunk in todo.chunks(self.batch) {
            let crash = self
                .crash_after
                .filter(|n| sent + chunk.len() >= *n)
                .map(|n| n - sent);
            let chunk = &chunk[..crash.unwrap_or(chunk.len()).min(chunk.len())];
            let outcome = match route {
                Route::Outbox(db) => self.via_outbox(db, chunk, crash.is_none()).await?,
                Route::Kafka(writer) => {
                    let writer = writer.as_ref().ok_or(Error::Shutdown)?;
                    self.via_kafka(writer, &report.target, chunk, crash.is_none())
                        .await?
                }
            };
            if crash.is_some() {
                if let Route::Kafka(writer) = route {
                    // A crash neither commits nor aborts: the next replay fences it.
                    std::mem::forget(writer.take());
                }
                return Err(Error::Shutdown);
            }
            sent += chunk.len();
            report.already_replayed += chunk.len() - outcome.len();
            report.replayed.extend(outcome);
            if let Some(progress) = &self.progress {
                progress(ReplayProgress {
                    done: sent,
                    total: todo.len(),
                });
            }
        }
        Ok(())
    }

    /// One database transaction: record and write each dead letter not recorded yet.
    async fn via_outbox(
        &self,
        db: &DatabaseConnection,
        chunk: &[&DeadLetterRecord],
        commit: bool,
    ) -> Result<Vec<Replayed>> {
        let dlq = self.dlq;
        let name = dlq.checked_name()?;
        let ctx = || format!("replaying `{name}` through the outbox");
        let txn = db.begin().await.map_err(|e| Error::db(ctx(), e))?;
        let mut out = Vec::new();
        for record in chunk {
            let r = replayed(record);
            let now = crate::util::now_ms();
            if !ledger::claim(&txn, name, record.position, &r.message_id, now).await? {
                continue;
            }
            let headers = replay_headers(record, &r.message_id);
            let msg = RawMessage {
                message_id: &r.message_id,
                key: r.key.as_deref(),
                payload: record.payload.as_deref().unwrap_or_default(),
                headers: &headers,
            };
            publish_raw(&txn, dlq.spec, msg).await?;
            out.push(r);
        }
        if commit {
            txn.commit().await.map_err(|e| Error::db(ctx(), e))?;
        }
        Ok(out)
    }

    /// One Kafka transaction: the messages and their markers.
    async fn via_kafka(
        &self,
        writer: &MarkerWriter,
        target: &str,
        chunk: &[&DeadLetterRecord],
        commit: bool,
    ) -> Result<Vec<Replayed>> {
        let out: Vec<Replayed> = chunk.iter().map(|r| replayed(r)).collect();
        let batch: Vec<markers::Outgoing<'_>> = chunk
            .iter()
            .zip(&out)
            .map(|(record, r)| markers::Outgoing {
                at: record.position,
                key: record.key.as_deref(),
                payload: record.payload.as_deref().unwrap_or_default(),
                headers: replay_headers(record, &r.message_id),
                message_id: &r.message_id,
            })
            .collect();
        writer.send(target, &batch, commit).await?;
        Ok(out)
    }
}

/// What replaying `record` re-publishes it as.
fn replayed(record: &DeadLetterRecord) -> Replayed {
    Replayed {
        from: record.position,
        message_id: record
            .message_id()
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string),
        key: record.key_str().map(str::to_string),
    }
}

/// The headers of `record`'s replay: the original's, less the relay's and the retry
/// tiers' bookkeeping, with its message id and the link to the dead letter.
pub(crate) fn replay_headers(record: &DeadLetterRecord, message_id: &str) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in record.headers.iter() {
        if !DROPPED.contains(&name) && !name.starts_with(RETRY_PREFIX) && name != MESSAGE_ID_HEADER
        {
            headers.insert(name, value);
        }
    }
    headers.insert(MESSAGE_ID_HEADER, message_id);
    headers.insert(REPLAY_OF_HEADER, record.replay_of().to_string());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::DLQ_ERROR;

    #[test]
    fn a_replay_keeps_the_message_and_links_the_dead_letter() {
        let all = Headers::new()
            .with(MESSAGE_ID_HEADER, "m-1")
            .with("traceparent", "00-a-b-01")
            .with(RELAY_EPOCH_HEADER, "3:7")
            .with("kafka-orm-retry-attempt", "2")
            .with(REPLAY_OF_HEADER, "old.dlq[0]@1")
            .with(DLQ_ERROR, "boom");
        let record = DeadLetterRecord::new("ns.t.dlq", Position::new(1, 9), None, None, None, all);
        let r = replayed(&record);
        assert_eq!(r.message_id, "m-1");
        let h = replay_headers(&record, &r.message_id);
        let got: Vec<(&str, &[u8])> = h.iter().collect();
        assert_eq!(
            got,
            [
                ("traceparent", &b"00-a-b-01"[..]),
                (MESSAGE_ID_HEADER, b"m-1"),
                (REPLAY_OF_HEADER, b"ns.t.dlq[1]@9"),
            ]
        );
    }

    #[test]
    fn a_dead_letter_without_a_message_id_gets_one() {
        let record =
            DeadLetterRecord::new("d", Position::new(0, 0), None, None, None, Headers::new());
        assert_eq!(replayed(&record).message_id.len(), 36);
    }
}
