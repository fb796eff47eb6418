//! One claimed batch, once the relay's loop has handed it to the producer, in tasks of its
//! own (so that a slow claim never delays a purge at a batch's deadline): [`produce`]
//! awaits its acknowledgements and backs its failed rows off, then [`delete`] deletes what
//! the broker acknowledged, in the background of the next batches. Both are fenced by the
//! tenure the batch was claimed in.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tracing::{Instrument, Span};

use super::deliver::{Failed, Pending};
use super::lease::LeaseView;
use super::relay::Shared;
use super::table::Table;
use crate::error::Result;

/// What a batch task reports to the worker.
pub(super) enum Stage {
    /// Produced; acknowledged or failed; failed rows backed off: its keys are free.
    Recorded {
        no: u64,
        /// Ids the broker acknowledged, to delete.
        delivered: Vec<i64>,
        /// Whether recording the failures worked.
        result: Result<()>,
    },
    /// The acknowledged rows deleted where the tenure still held: the batch is done.
    Deleted {
        no: u64,
        acknowledged: usize,
        result: Result<u64>,
    },
}

/// Waits for the acknowledgements of batch `no` (`pending`: handed to the producer at
/// `started`, claimed under `view`) and records its failures.
pub(super) async fn produce(
    table: Arc<Table>,
    shared: Arc<Shared>,
    no: u64,
    (pending, started): (Pending, std::time::Instant),
    view: LeaseView,
    span: Span,
) -> Stage {
    async move {
        let outcome = table.acks(pending).await;
        shared
            .acknowledged
            .fetch_add(outcome.delivered.len() as u64, Relaxed);
        tracing::debug!(
            target: "kafka_orm::relay",
            acknowledged = outcome.delivered.len(),
            failed = outcome.failed.len(),
            produce_us = started.elapsed().as_micros() as u64,
            "relay batch produced"
        );
        let result = back_off_failed(&table, &shared, outcome.failed, &view).await;
        Stage::Recorded {
            no,
            delivered: outcome.delivered,
            result,
        }
    }
    .instrument(span)
    .await
}

/// Pauses before the second and third attempt of a delete that failed.
const DELETE_RETRIES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// Deletes the acknowledged rows `ids` of batch `no` under `view`; a failed delete is
/// tried again twice before the rows are given up on (the next claims take them again:
/// delivered twice, never lost).
pub(super) async fn delete(
    table: Arc<Table>,
    no: u64,
    ids: Vec<i64>,
    view: LeaseView,
    span: Span,
) -> Stage {
    let attempts = async {
        let mut result = table.delete(&ids, &view).await;
        for pause in DELETE_RETRIES {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(pause).await;
            result = table.delete(&ids, &view).await;
        }
        result
    };
    let result = attempts.instrument(span).await;
    Stage::Deleted {
        no,
        acknowledged: ids.len(),
        result,
    }
}

/// Backs each failed row off (its key waits; briefly after a transient error).
async fn back_off_failed(
    table: &Table,
    shared: &Shared,
    failed: Vec<Failed>,
    view: &LeaseView,
) -> Result<()> {
    for Failed {
        row,
        error,
        transient,
    } in failed
    {
        let attempts = row.attempts.saturating_add(1);
        let policy = if transient {
            &table.config.transient_backoff
        } else {
            &table.config.backoff
        };
        let wait = policy.delay_now(attempts.max(1) as u32);
        shared.failed.fetch_add(1, Relaxed);
        table.metrics.failed(transient);
        shared.error(format!(
            "row {} (key {:?}) of `{}` failed attempt {attempts}: {error}; retrying in {wait:?}",
            row.id, row.key, table.table
        ));
        table.back_off(&row, wait, error, view).await?;
    }
    Ok(())
}
