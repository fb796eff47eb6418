//! The pipelined loop of one outbox table: claim a batch, hand it to a task that produces
//! it and records its failures, and claim the next one while the broker acknowledges the
//! first (leaving alone the keys and rows still in flight, see `inflight.rs`); delete the
//! acknowledged rows in the background of the next batches.
//!
//! Every batch holds a read guard of the table's batch lock from its claim until its
//! delete is done: a lease release takes the write side, so it waits until no batch in
//! flight holds a bucket (the keeper publishes the reduced view first, so no new batch
//! takes the released buckets). The loop never blocks on the lock: while the keeper waits
//! for it, the loop claims nothing and keeps finishing batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, OwnedRwLockReadGuard, RwLock, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tracing::{Instrument, Span};

use super::batch::{self, Stage};
use super::claim::{ClaimWindow, Claimed, Row};
use super::inflight::{InFlight, Pipeline};
use super::lease::LeaseView;
use super::relay::{OutboxRelayBuilder, Shared};
use super::table::Table;
use super::worker::Worker;
use crate::telemetry::trace::{self, Messaging, Operation};

/// Producing batches at once: one awaiting its acknowledgements, one claimed beside it.
const DEPTH: usize = 2;
/// Batches in flight in all, deleting ones included (bounds the ids a claim skips).
const MAX_BATCHES: usize = 4;

/// A batch the loop keeps track of until its delete is done.
struct Flying {
    _guard: OwnedRwLockReadGuard<()>,
    view: LeaseView,
    span: Span,
    started: Instant,
    rows: usize,
}

/// How one claim attempt went.
enum Attempt {
    /// A batch was launched.
    Rows,
    /// Nothing to claim, or no usable lease.
    Nothing,
    /// The keeper waits for the batch lock (a release): claim nothing now.
    Locked,
    Failed(crate::error::Error),
}

/// One table's pipeline (see the module docs).
pub(super) struct Loop {
    pub table: Arc<Table>,
    pub config: OutboxRelayBuilder,
    pub wake: Arc<Notify>,
    pub stopped: watch::Receiver<bool>,
    pub shared: Arc<Shared>,
    pub lock: Arc<RwLock<()>>,
    pub view: watch::Receiver<LeaseView>,
    tasks: JoinSet<Stage>,
    task_batch: HashMap<Id, u64>,
    held: InFlight,
    batches: HashMap<u64, Flying>,
    pipeline: Pipeline,
    window: ClaimWindow,
    /// A fatal producer error: a new producer once the pipeline is empty.
    renew: bool,
    /// When a commit notification woke the loop, until the claim it led to.
    woken_at: Option<Instant>,
}

impl Loop {
    /// The loop of `worker`'s table, its batches guarded by `lock`, claiming under `view`.
    pub(super) fn new(
        worker: Worker,
        lock: Arc<RwLock<()>>,
        view: watch::Receiver<LeaseView>,
    ) -> Self {
        let Worker {
            table,
            config,
            wake,
            stopped,
            shared,
            ..
        } = worker;
        // PostgreSQL spreads the window over the share of buckets held, past the rows in
        // flight: one batch's worth of the share to begin with.
        let window = match table.backend {
            sea_orm::DatabaseBackend::Postgres => ClaimWindow::new(1),
            _ => ClaimWindow::default(),
        };
        Loop {
            table: Arc::new(table),
            config,
            wake,
            stopped,
            shared,
            lock,
            view,
            tasks: JoinSet::new(),
            task_batch: HashMap::new(),
            held: InFlight::default(),
            batches: HashMap::new(),
            pipeline: Pipeline::new(DEPTH, MAX_BATCHES),
            window,
            renew: false,
            woken_at: None,
        }
    }

    /// Claims and launches batches until stopped, then finishes those in flight.
    pub(super) async fn run(&mut self) {
        let mut error_streak = 0u32;
        let mut retry_at: Option<Instant> = None;
        // A reason to claim whatever the pipeline expects: a commit notification, a poll
        // due, new buckets (see `Pipeline`).
        let mut woken = true;
        while !*self.stopped.borrow() {
            while let Some(done) = self.tasks.try_join_next_with_id() {
                self.finished(done, &mut error_streak, &mut retry_at);
            }
            self.renew_producer_when_drained(&mut error_streak, &mut retry_at);
            let now = Instant::now();
            let mut locked = false;
            if retry_at.is_none_or(|t| now >= t)
                && !self.renew
                && self.pipeline.may_claim(&self.held, woken)
            {
                retry_at = None;
                match self.claim().await {
                    Attempt::Rows => {
                        woken = false;
                        continue;
                    }
                    Attempt::Nothing => woken = false,
                    Attempt::Locked => locked = true,
                    Attempt::Failed(e) => self.failed(e, &mut error_streak, &mut retry_at),
                }
            }
            let until = retry_at.unwrap_or(now + self.config.poll_interval);
            let quiet = retry_at.is_none();
            tokio::select! {
                done = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    if let Some(done) = done {
                        self.finished(done, &mut error_streak, &mut retry_at);
                    }
                }
                _ = self.wake.notified(), if quiet => {
                    woken = true;
                    self.woken_at.get_or_insert_with(Instant::now);
                }
                // New buckets, a release done, a poll due: reasons to look too.
                _ = self.view.changed(), if quiet && self.table.leased => woken = true,
                _ = Arc::clone(&self.lock).read_owned(), if locked => woken = true,
                _ = tokio::time::sleep_until(until.into()) => woken = true,
                _ = self.stopped.changed() => {}
            }
        }
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.finished(done, &mut error_streak, &mut retry_at);
        }
    }

    /// Claims under the current view and launches what it got.
    async fn claim(&mut self) -> Attempt {
        let Ok(guard) = Arc::clone(&self.lock).try_read_owned() else {
            return Attempt::Locked;
        };
        // Read after the guard: a release publishes its reduced view before it waits.
        let view = self.view.borrow_and_update().clone();
        let usable = !view.owned.is_empty()
            && self
                .table
                .timing
                .may_enqueue(Instant::now(), view.valid_until);
        if !usable {
            return Attempt::Nothing;
        }
        let speculative = self.held.producing() > 0;
        let started = Instant::now();
        let woken_for = self.woken_at.take().map(|at| started - at);
        let claimed = self
            .table
            .claim(&mut self.window, &view, &self.held, speculative)
            .await;
        traced_claim(&claimed, started, woken_for, speculative);
        match claimed {
            Ok(Claimed { rows, window_full }) => {
                let batch = self.table.batch_size;
                self.pipeline
                    .claimed(speculative, rows.len(), batch, window_full);
                if rows.is_empty() {
                    return Attempt::Nothing;
                }
                self.launch(rows, view, guard).await;
                Attempt::Rows
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Holds `rows` as a producing batch, hands them to the producer at once and their
    /// acknowledgements to a task of their own.
    async fn launch(&mut self, rows: Vec<Row>, view: LeaseView, guard: OwnedRwLockReadGuard<()>) {
        let n = rows.len();
        let no = self.held.add(rows.iter().map(|r| (r.id, r.key.as_deref())));
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
        let started = Instant::now();
        let pending = self
            .table
            .enqueue(rows, &view, &span)
            .instrument(span.clone())
            .await;
        let task = batch::produce(
            Arc::clone(&self.table),
            Arc::clone(&self.shared),
            no,
            (pending, started),
            view.clone(),
            span.clone(),
        );
        let id = self.tasks.spawn(task).id();
        self.task_batch.insert(id, no);
        self.batches.insert(
            no,
            Flying {
                _guard: guard,
                view,
                span,
                started: Instant::now(),
                rows: n,
            },
        );
    }

    /// A batch task reported: free its keys and delete, or finish it.
    fn finished(
        &mut self,
        done: Result<(Id, Stage), JoinError>,
        streak: &mut u32,
        retry_at: &mut Option<Instant>,
    ) {
        let (id, stage) = match done {
            Ok(done) => done,
            Err(e) => {
                if let Some(no) = self.task_batch.remove(&e.id()) {
                    self.finish(no);
                }
                let what = format!("a relay batch task of `{}` ended: {e}", self.table.table);
                self.failed(crate::error::Error::Config(what), streak, retry_at);
                return;
            }
        };
        self.task_batch.remove(&id);
        match stage {
            Stage::Recorded {
                no,
                delivered,
                result,
            } => {
                self.held.release_keys(no);
                self.pipeline.batch_done();
                self.note_fatal_producer();
                match result {
                    Err(e) => self.failed(e, streak, retry_at),
                    Ok(()) if delivered.is_empty() => *streak = 0,
                    Ok(()) => {}
                }
                self.delete_or_finish(no, delivered);
            }
            Stage::Deleted {
                no,
                acknowledged,
                result,
            } => {
                match result {
                    Ok(deleted) => {
                        self.count_deleted(acknowledged as u64, deleted);
                        *streak = 0;
                    }
                    Err(e) => self.failed(e, streak, retry_at),
                }
                self.finish(no);
            }
        }
    }

    /// Deletes batch `no`'s acknowledged rows in the background, or finishes it.
    fn delete_or_finish(&mut self, no: u64, delivered: Vec<i64>) {
        let Some(flying) = self.batches.get(&no) else {
            return;
        };
        if delivered.is_empty() {
            self.finish(no);
            return;
        }
        let task = batch::delete(
            Arc::clone(&self.table),
            no,
            delivered,
            flying.view.clone(),
            flying.span.clone(),
        );
        let id = self.tasks.spawn(task).id();
        self.task_batch.insert(id, no);
    }

    /// Batch `no` holds nothing any more; its guard goes.
    fn finish(&mut self, no: u64) {
        self.held.finish(no);
        if let Some(f) = self.batches.remove(&no) {
            self.table.metrics.batch(f.rows, f.started.elapsed());
        }
    }

    fn count_deleted(&self, acknowledged: u64, deleted: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.shared.delivered.fetch_add(deleted, Relaxed);
        let fenced = acknowledged - deleted.min(acknowledged);
        self.table.metrics.delivered(deleted, fenced);
        if fenced > 0 {
            self.shared.fenced.fetch_add(fenced, Relaxed);
            self.shared.error(format!(
                "{fenced} delivered rows of `{}` were not deleted: the lease passed on (the new owner delivers them again)",
                self.table.table
            ));
        }
    }

    fn failed(&self, e: crate::error::Error, streak: &mut u32, retry_at: &mut Option<Instant>) {
        self.shared.error(e.to_string());
        *streak = streak.saturating_add(1);
        *retry_at = Some(Instant::now() + self.config.backoff.delay_now(*streak));
    }

    /// After a fatal producer error (the gapless guarantee tripped) nothing more is
    /// claimed; the batches in flight fail and are recorded, then a new producer starts.
    fn note_fatal_producer(&mut self) {
        use rdkafka::producer::Producer;
        if self.table.producer.client().fatal_error().is_some() {
            self.renew = true;
        }
    }

    fn renew_producer_when_drained(&mut self, streak: &mut u32, retry_at: &mut Option<Instant>) {
        if !self.renew || !self.tasks.is_empty() {
            return;
        }
        let renewed = match Arc::get_mut(&mut self.table) {
            Some(table) => table.renew_producer_if_fatal(),
            None => return, // a finished task's clone is still being dropped
        };
        self.renew = false;
        if let Err(e) = renewed {
            self.renew = true;
            self.failed(e, streak, retry_at);
        }
    }
}

/// A debug event per claim (target `kafka_orm::relay`): rows, how long it took, whether a
/// batch was producing beside it, and how long after the commit notification that led to
/// it it started.
fn traced_claim(
    claimed: &crate::error::Result<Claimed>,
    started: Instant,
    woken_for: Option<std::time::Duration>,
    speculative: bool,
) {
    let rows = claimed.as_ref().map_or(0, |c| c.rows.len());
    let claim_us = started.elapsed().as_micros() as u64;
    match woken_for {
        Some(w) => tracing::debug!(
            target: "kafka_orm::relay",
            rows,
            claim_us,
            speculative,
            wake_us = w.as_micros() as u64,
            "relay batch claimed"
        ),
        None => tracing::debug!(
            target: "kafka_orm::relay",
            rows,
            claim_us,
            speculative,
            "relay batch claimed"
        ),
    }
}
