//! The relay's gauge sampler: every few seconds, the backlog and the oldest row's age of
//! each outbox table (one `COUNT(*), MIN(created_at)` statement per table, all relay
//! instances' rows together) go to the `kafka_orm.outbox.backlog` and
//! `kafka_orm.outbox.oldest_age` gauges, and are kept for the relay's health check; the
//! buckets this instance owns go to `kafka_orm.relay.buckets`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use super::relay::Shared;
use crate::telemetry::metrics::RelayMetrics;

/// The last sample of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backlog {
    /// Rows waiting.
    pub rows: u64,
    /// Age of the oldest waiting row.
    pub oldest_age: Option<Duration>,
}

/// The last sample of every table, shared with the health check.
#[derive(Debug, Default)]
pub(crate) struct BacklogBoard(Mutex<HashMap<&'static str, Backlog>>);

impl BacklogBoard {
    /// The last sample of each table sampled so far.
    pub fn get(&self) -> HashMap<&'static str, Backlog> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, table: &'static str, backlog: Backlog) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table, backlog);
    }
}

/// Samples `tables` every `interval` until `stopped`.
pub(crate) async fn sample(
    db: DatabaseConnection,
    tables: Vec<(&'static str, RelayMetrics)>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
    board: Arc<BacklogBoard>,
    relay: Arc<Shared>,
) {
    while !*stopped.borrow() {
        for (table, metrics) in &tables {
            metrics.buckets(relay.owned_of(table));
            match super::status::backlog(&db, table).await {
                Ok((rows, oldest_age)) => {
                    metrics.backlog(rows, oldest_age);
                    board.set(table, Backlog { rows, oldest_age });
                }
                Err(e) => tracing::debug!(error = %e, "outbox backlog sample failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
}
