//! The handler's view of its assigned partitions, and the rebalance callbacks that keep it:
//! on revoke, in-flight work of the revoked partitions is drained (their finished offsets
//! committed) before the partitions move on.
//!
//! The callbacks run on the handler's poll thread (see [`super::poll`]), never on an
//! async runtime worker, so the drain may block waiting for the lanes, whatever the
//! runtime's flavor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::watermark::Watermark;
use super::{Config, Counters};
use crate::telemetry::metrics::HandlerMetrics;

/// A partition of one of the subscribed topics: (index into `Shared::topics`, partition).
/// Index 0 is the topic itself; 1.. are its retry tiers.
pub(crate) type Tp = (u8, i32);

/// Watermark and flow state of one assigned partition.
#[derive(Debug, Default)]
pub(crate) struct PartState {
    /// Assignment generation: work of an older one never stores offsets.
    pub epoch: u64,
    pub marks: Watermark,
    pub in_flight: usize,
    pub paused: bool,
    pub revoking: bool,
}

/// State shared by the poll thread, the dispatcher and the lanes.
pub(crate) struct Shared {
    /// The topic (namespace applied).
    pub topic: String,
    /// The topic, then its retry-tier topics (when `retry_topics`).
    pub topics: Vec<String>,
    parts: Mutex<HashMap<Tp, PartState>>,
    pub changed: Condvar,
    pub counters: Arc<Counters>,
    /// The same events, for the installed `metrics` recorder.
    pub metrics: HandlerMetrics,
    pub config: Config,
    next_epoch: AtomicU64,
    /// Set by `RunningHandler::abort`: behave as after a crash, commit nothing more.
    pub aborted: Arc<AtomicBool>,
    /// The lane tasks, aborted with the handler (a crash stops running handlers too).
    pub lane_tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Shared {
    pub fn new(
        topics: Vec<String>,
        counters: Arc<Counters>,
        config: Config,
        aborted: Arc<AtomicBool>,
        metrics: HandlerMetrics,
    ) -> Self {
        Shared {
            topic: topics[0].clone(),
            topics,
            parts: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            counters,
            metrics,
            config,
            next_epoch: AtomicU64::new(1),
            aborted,
            lane_tasks: Arc::default(),
        }
    }

    pub fn index_of(&self, topic: &str) -> Option<u8> {
        self.topics.iter().position(|t| t == topic).map(|i| i as u8)
    }

    /// The subscribed partitions in `tpl`.
    pub fn ours(&self, tpl: &TopicPartitionList) -> Vec<Tp> {
        tpl.elements()
            .iter()
            .filter_map(|e| Some((self.index_of(e.topic())?, e.partition())))
            .collect()
    }

    /// A list with one partition, at `offset` if given.
    pub fn tpl(&self, tp: Tp, offset: Option<i64>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let topic = &self.topics[tp.0 as usize];
        match offset {
            Some(o) => {
                let _ = tpl.add_partition_offset(topic, tp.1, Offset::Offset(o));
            }
            None => {
                tpl.add_partition(topic, tp.1);
            }
        }
        tpl
    }

    pub fn lock(&self) -> MutexGuard<'_, HashMap<Tp, PartState>> {
        // A panic while holding the lock cannot leave the watermark half-updated in a way
        // that matters more than stopping would; keep going with the data.
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current assignment generation of `tp`, if assigned and not being revoked.
    pub fn epoch_of(&self, tp: Tp) -> Option<u64> {
        self.lock()
            .get(&tp)
            .filter(|s| !s.revoking)
            .map(|s| s.epoch)
    }

    /// Whether `offset` is the lowest unfinished offset of `tp` in generation `epoch`
    /// (`None`: the partition is gone or revoking).
    pub fn is_head(&self, tp: Tp, epoch: u64, offset: i64) -> Option<bool> {
        self.lock()
            .get(&tp)
            .filter(|s| s.epoch == epoch && !s.revoking)
            .map(|s| s.marks.is_head(offset))
    }

    fn fresh_state(&self) -> PartState {
        PartState {
            epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
            ..PartState::default()
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}

/// Receives rebalance callbacks: drains revoked partitions before they go.
pub(crate) struct RunnerContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for RunnerContext {}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        Counters::bump(&shared.counters.revocations);
        shared.metrics.revoked.increment(1);
        let revoked = shared.ours(tpl);
        let mut parts = shared.lock();
        for p in &revoked {
            if let Some(st) = parts.get_mut(p) {
                st.revoking = true;
            }
        }
        // Let in-flight handlers of the revoked partitions finish and store their offsets.
        let deadline = Instant::now() + shared.config.drain_timeout;
        while revoked
            .iter()
            .any(|p| parts.get(p).is_some_and(|s| s.in_flight > 0))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(topic = %shared.topic, ?revoked, "revoke: in-flight handlers did not finish in time; they are abandoned (the inbox dedups a late commit)");
                break;
            }
            parts = shared
                .changed
                .wait_timeout(parts, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        for p in &revoked {
            parts.remove(p);
        }
        drop(parts);
        if shared.is_aborted() {
            return;
        }
        // Commit what finished before the partitions move on.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "commit on revoke");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let shared = &self.shared;
            Counters::bump(&shared.counters.assignments);
            shared.metrics.assigned.increment(1);
            let mut parts = shared.lock();
            for tp in shared.ours(tpl) {
                parts.entry(tp).or_insert_with(|| shared.fresh_state());
            }
        }
    }
}
