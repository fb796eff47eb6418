//! The relay's task for one outbox table: fits the producer to the topic, starts the lease
//! keeper, runs the pipelined loop (`pipeline.rs`: claim → produce → record, batches
//! overlapping), then stops the keeper, which releases the leases.

use std::sync::Arc;

use tokio::sync::{Notify, RwLock, watch};
use tokio::task::JoinHandle;

use super::lease::{LeaseKeeper, LeaseView};
use super::pipeline::Loop;
use super::relay::{OutboxRelayBuilder, Shared};
use super::table::{LIBRDKAFKA_BATCH_SIZE, Table, topic_batch_limit};

pub(super) struct Worker {
    pub(super) table: Table,
    pub(super) config: OutboxRelayBuilder,
    pub(super) wake: Arc<Notify>,
    pub(super) stopped: watch::Receiver<bool>,
    pub(super) shared: Arc<Shared>,
    pub(super) name_locked: watch::Receiver<bool>,
}

impl Worker {
    /// Runs the table's pipeline until stopped (finishing the batches in flight); then the
    /// lease keeper releases.
    pub(super) async fn run(mut self) {
        self.fit_batches_to_the_topic().await;
        let batch_lock = Arc::new(RwLock::new(()));
        let (view, keeper) = self.start_leases(&batch_lock);
        let mut pipeline = Loop::new(self, batch_lock, view);
        pipeline.run().await;
        drop(pipeline);
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
        batch_lock: &Arc<RwLock<()>>,
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
}
