//! [`OutboxRelay::health`]: the connections, then what the relay saw itself: its tasks,
//! its leases, its `LISTEN` connection and the sampled backlog.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use super::backlog::BacklogBoard;
use super::relay::OutboxRelay;
use crate::context::KafkaOrm;
use crate::health::{Health, Reason, probe};

/// What a relay's health check needs besides the relay's own state.
pub(crate) struct RelayWatch {
    pub orm: KafkaOrm,
    pub db: DatabaseConnection,
    /// Leased mode: every table needs buckets.
    pub leased: bool,
    /// Whether the relay `LISTEN`s (PostgreSQL, not turned off).
    pub listens: bool,
    /// The outbox tables.
    pub tables: Vec<&'static str>,
    pub backlog: Arc<BacklogBoard>,
    /// Degraded when the oldest waiting row is older than this.
    pub max_age: Duration,
}

impl OutboxRelay {
    /// Ready when the broker and the database answer, every task runs, every outbox table
    /// has buckets (leased mode) whose leases renew, and the oldest waiting row is younger
    /// than [`health_max_age`](crate::OutboxRelayBuilder::health_max_age). Takes at most
    /// [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT).
    pub async fn health(&self) -> Health {
        let watch = &self.watch;
        let mut reasons = probe::connections(&watch.orm, Some(&watch.db)).await;
        if self.tasks.iter().any(|t| t.is_finished()) {
            reasons.push(Reason::RelayStopped);
        }
        let shared = &self.shared;
        for &table in &watch.tables {
            if let Some(error) = shared.lease_error(table) {
                reasons.push(Reason::LeaseNotRenewed { table, error });
            } else if watch.leased && shared.owned_of(table) == 0 {
                reasons.push(Reason::NoBuckets { table });
            }
        }
        if watch.listens && !shared.listening.load(std::sync::atomic::Ordering::Relaxed) {
            reasons.push(Reason::NotListening);
        }
        for (table, backlog) in watch.backlog.get() {
            if let Some(age) = backlog.oldest_age
                && age > watch.max_age
            {
                reasons.push(Reason::OutboxBehind {
                    table,
                    oldest_age: age,
                    threshold: watch.max_age,
                });
            }
        }
        Health::from_reasons(reasons)
    }
}
