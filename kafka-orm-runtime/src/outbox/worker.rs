//! The relay's loop for one outbox table: wait → claim → deliver → record, with its lease
//! keeper beside it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{Mutex as AsyncMutex, Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::claim::ClaimWindow;
use super::lease::{LeaseKeeper, LeaseView};
use super::relay::{OutboxRelayBuilder, Shared};
use super::table::{LIBRDKAFKA_BATCH_SIZE, Table, topic_batch_limit};
use crate::error::Result;
use crate::telemetry::trace::{self, Messaging, Operation};

pub(super) struct Worker {
    pub(super) table: Table,
    pub(super) config: OutboxRelayBuilder,
    pub(super) wake: Arc<Notify>,
    pub(super) stopped: watch::Receiver<bool>,
    pub(super) shared: Arc<Shared>,
    pub(super) name_locked: watch::Receiver<bool>,
}

impl Worker {
    /// wait → claim → deliver → record, until stopped; then the lease keeper releases.
    pub(super) async fn run(mut self) {
        self.fit_batches_to_the_topic().await;
        let batch_lock = Arc::new(AsyncMutex::new(()));
        let (mut view, keeper) = self.start_leases(&batch_lock);
        let mut window = ClaimWindow::default();
        let mut error_streak = 0u32;
        while !*self.stopped.borrow() {
            let current = view.borrow_and_update().clone();
            let usable = !current.owned.is_empty()
                && self
                    .table
                    .timing
                    .may_enqueue(std::time::Instant::now(), current.valid_until);
            let claimed = if usable {
                let _batch = batch_lock.lock().await;
                self.batch(&mut window, &current).await
            } else {
                Ok(0)
            };
            let pause = match claimed {
                Ok(n) if n > 0 => {
                    error_streak = 0;
                    continue;
                }
                Ok(_) => {
                    error_streak = 0;
                    self.config.poll_interval
                }
                Err(e) => {
                    self.shared.error(e.to_string());
                    error_streak = error_streak.saturating_add(1);
                    self.config.backoff.delay_now(error_streak)
                }
            };
            tokio::select! {
                _ = self.wake.notified(), if error_streak == 0 => {}
                _ = view.changed(), if error_streak == 0 && self.table.leased => {}
                _ = tokio::time::sleep(pause) => {}
                _ = self.stopped.changed() => {}
            }
        }
        if let Some((stop, task)) = keeper {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Reads the topic's `max.message.bytes`; below librdkafka's batch size (1 MB), the
    /// producer is made again with batches that fit.
    async fn fit_batches_to_the_topic(&mut self) {
        let Some(limit) = topic_batch_limit(&self.config.orm, &self.table.topic).await else {
            return;
        };
        if limit >= LIBRDKAFKA_BATCH_SIZE {
            return;
        }
        match self.config.producer(Some(limit)) {
            Ok(p) => {
                self.table.producer = p;
                self.table.batch_limit = Some(limit);
            }
            Err(e) => self.shared.error(e.to_string()),
        }
    }

    /// The lease view channel, and the keeper task (leased mode) with its stop switch.
    #[allow(clippy::type_complexity)]
    fn start_leases(
        &self,
        batch_lock: &Arc<AsyncMutex<()>>,
    ) -> (
        watch::Receiver<LeaseView>,
        Option<(watch::Sender<bool>, JoinHandle<()>)>,
    ) {
        if !self.table.leased {
            self.shared
                .set_owned(self.table.table, super::BUCKETS as usize);
            let (_tx, rx) = watch::channel(LeaseView::everything());
            return (rx, None);
        }
        let (tx, rx) = watch::channel(LeaseView::empty());
        let (stop, stopping) = watch::channel(false);
        let keeper = LeaseKeeper {
            db: self.table.db.clone(),
            table: self.table.table,
            me: self.table.me.clone(),
            timing: self.table.timing,
            view: tx,
            batch_lock: Arc::clone(batch_lock),
            name_locked: self.name_locked.clone(),
            shared: Arc::clone(&self.shared),
        };
        (rx, Some((stop, tokio::spawn(keeper.run(stopping)))))
    }

    /// Claims, delivers and records one batch; returns the number of rows claimed.
    async fn batch(&mut self, window: &mut ClaimWindow, view: &LeaseView) -> Result<usize> {
        let started = std::time::Instant::now();
        let rows = self.table.claim(window, view).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let span = tracing::debug_span!(
            "kafka_orm.relay_batch",
            table = self.table.table,
            rows = n,
            otel.kind = tracing::field::Empty,
        );
        let attrs = Messaging {
            destination: &self.table.topic,
            batch: Some(n),
            ..Messaging::default()
        };
        trace::describe(&span, Operation::Send, &attrs);
        let this = span.clone();
        async {
            let outcome = self.table.deliver(rows, view, &this).await;
            self.record(outcome, view).await
        }
        .instrument(span)
        .await?;
        self.table.metrics.batch(n, started.elapsed());
        self.table.renew_producer_if_fatal()?;
        Ok(n)
    }

    /// Deletes delivered rows and backs failed rows off.
    async fn record(&self, outcome: super::deliver::Outcome, view: &LeaseView) -> Result<()> {
        let deleted = self.table.delete(&outcome.delivered, view).await?;
        self.shared.delivered.fetch_add(deleted, Relaxed);
        let fenced = outcome.delivered.len() as u64 - deleted.min(outcome.delivered.len() as u64);
        self.table.metrics.delivered(deleted, fenced);
        if fenced > 0 {
            self.shared.fenced.fetch_add(fenced, Relaxed);
            self.shared.error(format!(
                "{fenced} delivered rows of `{}` were not deleted: the lease passed on (the new owner delivers them again)",
                self.table.table
            ));
        }
        for super::deliver::Failed {
            row,
            error,
            transient,
        } in outcome.failed
        {
            let attempts = row.attempts.saturating_add(1);
            let policy = if transient {
                &self.config.transient_backoff
            } else {
                &self.config.backoff
            };
            let wait = policy.delay_now(attempts.max(1) as u32);
            self.shared.failed.fetch_add(1, Relaxed);
            self.table.metrics.failed(transient);
            self.shared.error(format!(
                "row {} (key {:?}) of `{}` failed attempt {attempts}: {error}; retrying in {wait:?}",
                row.id, row.key, self.table.table
            ));
            self.table.back_off(&row, wait, error, view).await?;
        }
        Ok(())
    }
}
