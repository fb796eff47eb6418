//! The machinery behind [`super::HandlerBuilder::spawn`].
//!
//! One dispatcher task receives from librdkafka, decodes, and queues each message on a
//! lane: one lane per partition (or per partition and key hash with key concurrency).
//! Lane tasks apply their messages one after another (or in batches), so a lane is the
//! unit of ordering; a semaphore bounds how many lanes work at once. Each partition keeps
//! a watermark: the set of dispatched but unfinished offsets; its lowest member (or the
//! next offset when none) is what gets stored for commit, so no commit passes unfinished
//! work. librdkafka commits stored offsets every second and on revoke.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use super::dlq::{self, Failure, RawRecord};
use super::{Config, Counters, Handler, HandlerError, OnExhausted, PartitionLag, RunningHandler};
use crate::consumer::{self, ConsumerGuard, Delivery};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::inbox;
use crate::outbox::{now_ms, stable_hash};
use crate::producer::{Headers, TRACEPARENT_HEADER};
use crate::topic::{Consumable, Topic};

/// Watermark and flow state of one assigned partition.
#[derive(Debug, Default)]
struct PartState {
    epoch: u64,
    pending: BTreeSet<i64>,
    highest: i64,
    stored: i64,
    in_flight: usize,
    paused: bool,
    revoking: bool,
}

/// A partition of one of the subscribed topics: (index into `Shared::topics`, partition).
/// Index 0 is the topic itself; 1.. are its retry tiers.
type Tp = (u8, i32);

struct Shared {
    /// The topic (namespace applied).
    topic: String,
    /// The topic, then its retry-tier topics (when `retry_topics`).
    topics: Vec<String>,
    parts: Mutex<HashMap<Tp, PartState>>,
    changed: Condvar,
    counters: Arc<Counters>,
    config: Config,
    next_epoch: std::sync::atomic::AtomicU64,
    /// Set by [`RunningHandler::abort`]: behave as after a crash, commit nothing more.
    aborted: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    fn index_of(&self, topic: &str) -> Option<u8> {
        self.topics.iter().position(|t| t == topic).map(|i| i as u8)
    }

    /// The subscribed partitions in `tpl`.
    fn ours(&self, tpl: &TopicPartitionList) -> Vec<Tp> {
        tpl.elements()
            .iter()
            .filter_map(|e| Some((self.index_of(e.topic())?, e.partition())))
            .collect()
    }

    fn tpl(&self, tp: Tp, offset: Option<i64>) -> TopicPartitionList {
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

    fn lock(&self) -> MutexGuard<'_, HashMap<Tp, PartState>> {
        // A panic while holding the lock cannot leave the watermark half-updated in a way
        // that matters more than stopping would; keep going with the data.
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh_state(&self) -> PartState {
        PartState {
            epoch: self
                .next_epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            highest: -1,
            stored: -1,
            ..PartState::default()
        }
    }
}

/// Receives rebalance callbacks: drains revoked partitions before they go.
struct RunnerContext {
    shared: Arc<Shared>,
}

impl ClientContext for RunnerContext {}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        Counters::bump(&shared.counters.revocations);
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
        if shared.aborted.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // Commit what finished before the partitions move on.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(error = %e, "commit on revoke");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let shared = &self.shared;
            Counters::bump(&shared.counters.assignments);
            let mut parts = shared.lock();
            for tp in shared.ours(tpl) {
                parts.entry(tp).or_insert_with(|| shared.fresh_state());
            }
        }
    }
}

type Client = StreamConsumer<RunnerContext>;
type ClientGuard = ConsumerGuard<RunnerContext>;

/// What a lane works on.
enum Work<T> {
    Message {
        delivery: Delivery<T>,
        raw: Option<RawRecord>,
        tp: Tp,
        epoch: u64,
    },
    Undecodable {
        raw: RawRecord,
        error: String,
        tp: Tp,
        epoch: u64,
    },
}

impl<T> Work<T> {
    fn place(&self) -> (Tp, i64, u64) {
        match self {
            Work::Message {
                delivery,
                tp,
                epoch,
                ..
            } => (*tp, delivery.offset, *epoch),
            Work::Undecodable { raw, tp, epoch, .. } => (*tp, raw.offset, *epoch),
        }
    }
}

/// Everything a lane needs.
struct Lane<T, H> {
    orm: KafkaOrm,
    db: DatabaseConnection,
    group: String,
    handler: Arc<H>,
    shared: Arc<Shared>,
    client: Arc<ClientGuard>,
    permits: Arc<Semaphore>,
    fatal: mpsc::UnboundedSender<Error>,
    stopping: watch::Receiver<bool>,
    _type: std::marker::PhantomData<fn() -> T>,
}

/// How one message ended.
enum Done {
    /// Finished (applied, duplicate, dead-lettered or skipped): its offset may be stored.
    Finished,
    /// Not finished (partition revoked or shutting down): leave it for the next owner.
    Abandoned,
}

pub(crate) async fn start<T: Consumable, H: Handler<T>>(
    orm: KafkaOrm,
    db: DatabaseConnection,
    group: String,
    handler: H,
    config: Config,
) -> Result<RunningHandler> {
    let topic = orm.topic_name(T::SPEC);
    let counters = Arc::new(Counters::default());
    let aborted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut topics = vec![topic.clone()];
    if T::SPEC.retry_topics {
        topics.extend((1..=RETRY_TIERS as u8).map(|n| retry_topic(&topic, n)));
    }
    let shared = Arc::new(Shared {
        topic: topic.clone(),
        topics: topics.clone(),
        parts: Mutex::new(HashMap::new()),
        changed: Condvar::new(),
        counters: Arc::clone(&counters),
        config: config.clone(),
        next_epoch: std::sync::atomic::AtomicU64::new(1),
        aborted: Arc::clone(&aborted),
    });
    let cfg = orm.consumer_config_with(
        &group,
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("enable.auto.offset.store", "false"),
        ],
    );
    let client: Client = cfg
        .create_with_context(RunnerContext {
            shared: Arc::clone(&shared),
        })
        .map_err(|e| Error::kafka(format!("creating the handler consumer for `{topic}`"), e))?;
    let subscribed: Vec<&str> = topics.iter().map(String::as_str).collect();
    client
        .subscribe(&subscribed)
        .map_err(|e| Error::kafka(format!("subscribing to `{topic}`"), e))?;
    let client = Arc::new(ClientGuard::new(client));
    let lag_client = Arc::clone(&client);
    let lag = Arc::new(move |timeout: Duration| -> Result<Vec<PartitionLag>> {
        let c = lag_client.get();
        let positions = c
            .position()
            .map_err(|e| Error::kafka("reading consumer positions", e))?;
        let mut out = Vec::new();
        for e in positions.elements() {
            let (_, high) = c
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .map_err(|err| {
                    Error::kafka(format!("reading watermarks of `{}`", e.topic()), err)
                })?;
            let position = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(high);
            out.push(PartitionLag {
                topic: e.topic().to_string(),
                partition: e.partition(),
                lag: (high - position).max(0),
            });
        }
        Ok(out)
    });
    let (stop, stopping) = watch::channel(false);
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let stopped = Arc::new(tokio::sync::Notify::new());
    let lane = Arc::new(Lane::<T, H> {
        orm,
        db,
        group,
        handler: Arc::new(handler),
        shared,
        client,
        permits: Arc::new(Semaphore::new(config.concurrency)),
        fatal: fatal_tx,
        stopping: stopping.clone(),
        _type: std::marker::PhantomData,
    });
    let notify = Arc::clone(&stopped);
    let task = tokio::spawn(async move {
        let result = dispatch(lane, stopping, fatal_rx).await;
        notify.notify_one();
        result
    });
    Ok(RunningHandler {
        counters,
        lag,
        aborted,
        stop,
        stopped,
        task,
    })
}

fn raw_record(m: &BorrowedMessage<'_>) -> RawRecord {
    RawRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m.headers().map(Headers::from_rdkafka).unwrap_or_default(),
    }
}

/// The dispatcher: receive, decode, queue on lanes; on stop or a fatal error, shut down.
async fn dispatch<T: Consumable, H: Handler<T>>(
    lane: Arc<Lane<T, H>>,
    mut stopping: watch::Receiver<bool>,
    mut fatal: mpsc::UnboundedReceiver<Error>,
) -> Result<()> {
    let shared = Arc::clone(&lane.shared);
    let config = &shared.config;
    let mut lanes: HashMap<(Tp, u32), mpsc::UnboundedSender<Work<T>>> = HashMap::new();
    let mut purge = tokio::time::interval(config.purge_interval);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let keep_raw = T::SPEC.dlq.is_some() || T::SPEC.retry_topics;
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            biased;
            _ = stopping.changed() => break,
            err = fatal.recv() => {
                if let Some(e) = err {
                    outcome = Err(e);
                }
                break;
            }
            _ = purge.tick(), if T::SPEC.inbox.is_some() => {
                let db = lane.db.clone();
                tokio::spawn(async move {
                    match inbox::purge_expired(&db, &[T::SPEC]).await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, topic = T::SPEC.name, "purged expired inbox rows"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "inbox purge failed"),
                    }
                });
            }
            msg = lane.client.get().recv() => {
                let m = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %shared.topic, "consumer error");
                        continue;
                    }
                };
                let Some(index) = shared.index_of(m.topic()) else { continue };
                let tp = (index, m.partition());
                let Some(epoch) = admit(&lane, tp, m.offset()) else { continue };
                let work = match consumer::decode::<T>(&m) {
                    Ok(mut delivery) => {
                        if index > 0 {
                            delivery.attempt = retry_attempt(&delivery.headers).unwrap_or(1);
                        }
                        Work::Message { delivery, raw: keep_raw.then(|| raw_record(&m)), tp, epoch }
                    }
                    Err(e) => {
                        Counters::bump(&shared.counters.undecodable);
                        Work::Undecodable { raw: raw_record(&m), error: e.to_string(), tp, epoch }
                    }
                };
                let lane_no = match m.key() {
                    Some(k) if config.key_lanes > 1 => (stable_hash(&[k]) % u64::from(config.key_lanes)) as u32,
                    _ => 0,
                };
                let sender = lanes.entry((tp, lane_no)).or_insert_with(|| spawn_lane(Arc::clone(&lane)));
                if let Err(mpsc::error::SendError(work)) = sender.send(work) {
                    // The lane ended (it only does on shutdown); start a new one.
                    let fresh = spawn_lane(Arc::clone(&lane));
                    let _ = fresh.send(work);
                    lanes.insert((tp, lane_no), fresh);
                }
            }
        }
    }
    // Shutdown: abandon queued work, let in-flight work finish, commit, close.
    {
        let mut parts = shared.lock();
        parts.values_mut().for_each(|s| s.revoking = true);
    }
    drop(lanes);
    let deadline = Instant::now() + config.shutdown_timeout;
    while shared.lock().values().any(|s| s.in_flight > 0) && Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            err = fatal.recv() => {
                if let (Some(e), Ok(())) = (err, &outcome) {
                    outcome = Err(e);
                }
            }
        }
    }
    if shared.aborted.load(std::sync::atomic::Ordering::SeqCst) {
        return outcome;
    }
    let client = Arc::clone(&lane.client);
    let committed =
        tokio::task::spawn_blocking(move || client.get().commit_consumer_state(CommitMode::Sync))
            .await;
    if let Ok(Err(e)) = committed {
        // Nothing stored since the last commit is not an error.
        if !matches!(
            e.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
        ) {
            tracing::warn!(error = %e, "final commit failed; uncommitted messages will be redelivered (and deduplicated)");
        }
    }
    outcome
}

/// Registers a received offset in its partition's watermark; pauses the partition when
/// too much is pending. Returns the partition's epoch, or `None` when it is not ours.
fn admit<T, H>(lane: &Lane<T, H>, tp: Tp, offset: i64) -> Option<u64> {
    let shared = &lane.shared;
    let mut parts = shared.lock();
    let st = parts.entry(tp).or_insert_with(|| shared.fresh_state());
    if st.revoking {
        return None;
    }
    st.pending.insert(offset);
    st.highest = st.highest.max(offset);
    if !st.paused
        && st.pending.len() >= shared.config.max_pending
        && lane.client.get().pause(&shared.tpl(tp, None)).is_ok()
    {
        st.paused = true;
        Counters::bump(&shared.counters.pauses);
    }
    Some(st.epoch)
}

fn spawn_lane<T: Consumable, H: Handler<T>>(
    lane: Arc<Lane<T, H>>,
) -> mpsc::UnboundedSender<Work<T>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_lane(lane, rx));
    tx
}

async fn run_lane<T: Consumable, H: Handler<T>>(
    lane: Arc<Lane<T, H>>,
    mut rx: mpsc::UnboundedReceiver<Work<T>>,
) {
    while let Some(first) = rx.recv().await {
        let mut works = vec![first];
        if let Some((max, wait)) = lane.shared.config.batch {
            let deadline = tokio::time::Instant::now() + wait;
            while works.len() < max {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(w)) => works.push(w),
                    _ => break,
                }
            }
        }
        let works: Vec<Work<T>> = works.into_iter().filter(|w| lane.begin(w)).collect();
        if works.is_empty() {
            continue;
        }
        if works.len() == 1 || lane.shared.config.batch.is_none() {
            for w in works {
                let place = w.place();
                let done = lane.one(w).await;
                lane.finish(place, done);
            }
        } else {
            lane.batch(works).await;
        }
    }
}

impl<T: Consumable, H: Handler<T>> Lane<T, H> {
    /// Marks `w` in flight if its partition is still ours in the same epoch.
    fn begin(&self, w: &Work<T>) -> bool {
        let (tp, _, epoch) = w.place();
        let mut parts = self.shared.lock();
        match parts.get_mut(&tp) {
            Some(st) if st.epoch == epoch && !st.revoking => {
                st.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    /// Records the end of one message: moves the watermark, stores it, resumes.
    fn finish(&self, (tp, offset, epoch): (Tp, i64, u64), done: Done) {
        let shared = &self.shared;
        let mut parts = shared.lock();
        if let Some(st) = parts.get_mut(&tp)
            && st.epoch == epoch
        {
            st.in_flight = st.in_flight.saturating_sub(1);
            if let Done::Finished = done {
                st.pending.remove(&offset);
                let next = st.pending.first().copied().unwrap_or(st.highest + 1);
                if next > st.stored
                    && self
                        .client
                        .get()
                        .store_offsets(&shared.tpl(tp, Some(next)))
                        .is_ok()
                {
                    st.stored = next;
                }
            }
            if st.paused
                && st.pending.len() <= shared.config.max_pending / 2
                && self.client.get().resume(&shared.tpl(tp, None)).is_ok()
            {
                st.paused = false;
                Counters::bump(&shared.counters.resumes);
            }
        }
        drop(parts);
        shared.changed.notify_all();
    }

    /// Whether work on `partition` should stop (revoked, or shutting down).
    fn abandoned(&self, tp: Tp, epoch: u64) -> bool {
        *self.stopping.borrow()
            || self
                .shared
                .lock()
                .get(&tp)
                .is_none_or(|s| s.epoch != epoch || s.revoking)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let config = &self.shared.config;
        let exp = attempt.saturating_sub(1).min(20);
        let raw = config
            .backoff
            .saturating_mul(1 << exp)
            .min(config.max_backoff);
        // ±20 % jitter, so retries of many partitions do not hit the database together.
        let jitter = (stable_hash(&[&now_ms().to_le_bytes()]) % 41) as f64 / 100.0;
        raw.mul_f64(0.8 + jitter).min(config.max_backoff)
    }

    /// One message, with retries; the transaction holds the inbox row and the handler's writes.
    ///
    /// On the topic itself the message gets the configured in-place attempts; a message
    /// read from a retry tier first waits until it is due, then gets one attempt.
    async fn one(&self, work: Work<T>) -> Done {
        let (mut delivery, raw, tp, epoch) = match work {
            Work::Message {
                delivery,
                raw,
                tp,
                epoch,
            } => (delivery, raw, tp, epoch),
            Work::Undecodable {
                raw,
                error,
                tp,
                epoch,
            } => {
                return self
                    .give_up(&raw, 0, error, now_ms(), tp, epoch, "decode")
                    .await;
            }
        };
        let tier = tp.0;
        if tier > 0
            && let Some(due) = header_i64(&delivery.headers, RETRY_DUE)
        {
            while now_ms() < due {
                if self.abandoned(tp, epoch) {
                    return Done::Abandoned;
                }
                let left = (due - now_ms()).clamp(1, 500) as u64;
                tokio::time::sleep(Duration::from_millis(left)).await;
            }
        }
        let last_in_place = if tier == 0 {
            self.shared.config.attempts
        } else {
            delivery.attempt
        };
        let mut first_failure = header_i64(&delivery.headers, RETRY_FIRST_FAILURE);
        let mut infra_streak = 0;
        loop {
            if self.abandoned(tp, epoch) {
                return Done::Abandoned;
            }
            let permit = self.permits.acquire().await;
            let result = self.attempt(&delivery).await;
            drop(permit);
            match result {
                Ok(()) => return Done::Finished,
                Err(Attempt::Infra(e)) => {
                    Counters::bump(&self.shared.counters.database_errors);
                    infra_streak += 1;
                    tracing::warn!(error = %e, "database unavailable for the handler; retrying");
                    tokio::time::sleep(self.backoff(infra_streak)).await;
                }
                Err(Attempt::Handler(e)) => {
                    infra_streak = 0;
                    let first = *first_failure.get_or_insert(now_ms());
                    if delivery.attempt >= last_in_place {
                        let raw = raw.unwrap_or_else(|| raw_of(&delivery));
                        if T::SPEC.retry_topics && usize::from(tier) < RETRY_TIERS {
                            return self
                                .to_retry_tier(
                                    &raw,
                                    tier + 1,
                                    delivery.attempt + 1,
                                    first,
                                    e.to_string(),
                                    tp,
                                    epoch,
                                )
                                .await;
                        }
                        return self
                            .give_up(
                                &raw,
                                delivery.attempt,
                                e.to_string(),
                                first,
                                tp,
                                epoch,
                                "handler",
                            )
                            .await;
                    }
                    Counters::bump(&self.shared.counters.retries);
                    tracing::info!(
                        topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset,
                        attempt = delivery.attempt, error = %e, "handler failed; retrying"
                    );
                    tokio::time::sleep(self.backoff(delivery.attempt)).await;
                    delivery.attempt += 1;
                }
            }
        }
    }

    /// Forwards a failed message to retry tier `tier`, due after that tier's delay.
    #[allow(clippy::too_many_arguments)]
    async fn to_retry_tier(
        &self,
        raw: &RawRecord,
        tier: u8,
        next_attempt: u32,
        first_ms: i64,
        error: String,
        tp: Tp,
        epoch: u64,
    ) -> Done {
        let delay = self.shared.config.retry_topic_delays[usize::from(tier) - 1];
        let topic = retry_topic(&self.shared.topic, tier);
        let mut headers = Headers::new();
        for (name, value) in raw.headers.iter() {
            if !name.starts_with(RETRY_HEADER_PREFIX) {
                headers.insert(name, value);
            }
        }
        headers.insert(RETRY_ATTEMPT, next_attempt.to_string());
        headers.insert(RETRY_DUE, (now_ms() + delay.as_millis() as i64).to_string());
        headers.insert(RETRY_FIRST_FAILURE, first_ms.to_string());
        headers.insert(RETRY_ERROR, error);
        let forwarded = RawRecord {
            headers,
            ..raw.clone()
        };
        let mut streak = 0;
        loop {
            match dlq::forward(&self.orm, &topic, &forwarded, self.orm.send_timeout()).await {
                Ok(_) => {
                    Counters::bump(&self.shared.counters.retries);
                    tracing::info!(topic = %raw.topic, partition = raw.partition, offset = raw.offset, retry_topic = %topic, ?delay, "handler failed; retrying later through a retry topic");
                    return Done::Finished;
                }
                Err(e) => {
                    streak += 1;
                    tracing::warn!(error = %e, "cannot reach the retry topic; retrying");
                    if self.abandoned(tp, epoch) {
                        return Done::Abandoned;
                    }
                    tokio::time::sleep(self.backoff(streak)).await;
                }
            }
        }
    }

    /// One transaction: inbox row, handler, commit.
    async fn attempt(&self, delivery: &Delivery<T>) -> std::result::Result<(), Attempt> {
        let span = tracing::info_span!(
            "kafka_orm.handle",
            topic = %delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            attempt = delivery.attempt,
            traceparent = delivery.headers.get_str(TRACEPARENT_HEADER).unwrap_or(""),
        );
        async {
            let started = Instant::now();
            let txn =
                self.db.begin().await.map_err(|e| {
                    Attempt::Infra(Error::db("beginning the handler transaction", e))
                })?;
            if !inbox::record(&txn, &self.group, delivery)
                .await
                .map_err(Attempt::Infra)?
            {
                Counters::bump(&self.shared.counters.duplicates);
                let _ = txn.rollback().await;
                return Ok(());
            }
            self.call(&txn, delivery).await.map_err(Attempt::Handler)?;
            txn.commit()
                .await
                .map_err(|e| Attempt::Infra(Error::db("committing the handler transaction", e)))?;
            Counters::bump(&self.shared.counters.handled);
            Counters::bump(&self.shared.counters.transactions);
            self.shared.counters.latency.record(started.elapsed());
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Calls the handler, turning a panic into an error.
    async fn call(
        &self,
        txn: &DatabaseTransaction,
        delivery: &Delivery<T>,
    ) -> std::result::Result<(), HandlerError> {
        match AssertUnwindSafe(self.handler.handle(txn, delivery))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".into());
                Err(format!("the handler panicked: {what}").into())
            }
        }
    }

    /// Batch mode: one transaction for all of `works`; on any failure, one by one.
    async fn batch(&self, works: Vec<Work<T>>) {
        let places: Vec<_> = works.iter().map(Work::place).collect();
        let decodable = works.iter().all(|w| matches!(w, Work::Message { .. }));
        if decodable && self.try_batch(&works).await {
            for place in places {
                self.finish(place, Done::Finished);
            }
            return;
        }
        for w in works {
            let place = w.place();
            let done = self.one(w).await;
            self.finish(place, done);
        }
    }

    /// Returns whether the whole batch committed.
    async fn try_batch(&self, works: &[Work<T>]) -> bool {
        let deliveries: Vec<&Delivery<T>> = works
            .iter()
            .filter_map(|w| match w {
                Work::Message { delivery, .. } => Some(delivery),
                Work::Undecodable { .. } => None,
            })
            .collect();
        if deliveries.len() != works.len() {
            return false;
        }
        let _permit = self.permits.acquire().await;
        let started = Instant::now();
        let Ok(txn) = self.db.begin().await else {
            return false;
        };
        // One statement records the whole batch in the inbox; only new messages are handled.
        let Ok(fresh) = inbox::record_batch(&txn, &self.group, &deliveries).await else {
            let _ = txn.rollback().await;
            return false;
        };
        let new: Vec<&Delivery<T>> = deliveries
            .iter()
            .zip(&fresh)
            .filter_map(|(d, f)| f.then_some(*d))
            .collect();
        let duplicates = (deliveries.len() - new.len()) as u64;
        if !new.is_empty() {
            let call = AssertUnwindSafe(self.handler.handle_batch(&txn, &new)).catch_unwind();
            if !matches!(call.await, Ok(Ok(()))) {
                let _ = txn.rollback().await;
                return false;
            }
        }
        if txn.commit().await.is_err() {
            return false;
        }
        let c = &self.shared.counters;
        c.handled
            .fetch_add(new.len() as u64, std::sync::atomic::Ordering::Relaxed);
        c.duplicates
            .fetch_add(duplicates, std::sync::atomic::Ordering::Relaxed);
        Counters::bump(&c.transactions);
        c.latency.record(started.elapsed());
        true
    }

    /// After the last attempt (or for an undecodable payload): dead-letter, skip or stop.
    #[allow(clippy::too_many_arguments)]
    async fn give_up(
        &self,
        raw: &RawRecord,
        attempts: u32,
        error: String,
        first_ms: i64,
        tp: Tp,
        epoch: u64,
        what: &str,
    ) -> Done {
        let spec = T::SPEC;
        if let Some(dlq_spec) = spec.dlq {
            let dlq_topic = self.orm.namespaced(dlq_spec.topic);
            let mut streak = 0;
            loop {
                let failure = Failure {
                    group: &self.group,
                    attempts,
                    error: error.clone(),
                    first_ms,
                    last_ms: now_ms(),
                };
                match dlq::send(&self.orm, &dlq_topic, raw, failure, self.orm.send_timeout()).await
                {
                    Ok(_) => {
                        Counters::bump(&self.shared.counters.dead_lettered);
                        tracing::warn!(topic = %raw.topic, partition = raw.partition, offset = raw.offset, dlq = %dlq_topic, reason = what, error = %error, "dead-lettered");
                        return Done::Finished;
                    }
                    Err(e) => {
                        streak += 1;
                        tracing::warn!(error = %e, "cannot reach the dead-letter topic; retrying");
                        if self.abandoned(tp, epoch) {
                            return Done::Abandoned;
                        }
                        tokio::time::sleep(self.backoff(streak)).await;
                    }
                }
            }
        }
        if what == "handler" && self.shared.config.on_exhausted == OnExhausted::Skip {
            Counters::bump(&self.shared.counters.skipped_failures);
            tracing::error!(topic = %raw.topic, partition = raw.partition, offset = raw.offset, attempts, error = %error, "handler gave up; message skipped");
            return Done::Finished;
        }
        let _ = self.fatal.send(Error::HandlerFailed {
            topic: raw.topic.clone(),
            partition: raw.partition,
            offset: raw.offset,
            type_name: super::type_name::<T>(),
            attempts,
            source: error.into(),
        });
        Done::Abandoned
    }
}

enum Attempt {
    Infra(Error),
    Handler(HandlerError),
}

/// A raw record rebuilt from a decoded delivery (when raw bytes were not kept).
fn raw_of<T: Topic>(d: &Delivery<T>) -> RawRecord {
    let mut payload = Vec::new();
    let _ = <T::Codec as crate::codec::Codec<T>>::encode(&d.value, &mut payload);
    RawRecord {
        topic: d.topic.clone(),
        partition: d.partition,
        offset: d.offset,
        key: d.key.clone(),
        payload: Some(payload),
        headers: d.headers.clone(),
    }
}

/// Retry tiers per topic with `retry_topics`: `<topic>.retry-1` ..= `<topic>.retry-3`.
pub(crate) const RETRY_TIERS: usize = 3;

/// The name of retry tier `tier` of `topic`.
pub(crate) fn retry_topic(topic: &str, tier: u8) -> String {
    format!("{topic}.retry-{tier}")
}

const RETRY_HEADER_PREFIX: &str = "kafka-orm-retry-";
/// Header: the attempt number the retried message is on.
const RETRY_ATTEMPT: &str = "kafka-orm-retry-attempt";
/// Header: epoch ms before which it must not be handled.
const RETRY_DUE: &str = "kafka-orm-retry-due";
/// Header: epoch ms of its first failure.
const RETRY_FIRST_FAILURE: &str = "kafka-orm-retry-first-failure";
/// Header: the error of the last attempt.
const RETRY_ERROR: &str = "kafka-orm-retry-error";

fn header_i64(headers: &Headers, name: &str) -> Option<i64> {
    headers.get_str(name)?.parse().ok()
}

fn retry_attempt(headers: &Headers) -> Option<u32> {
    headers.get_str(RETRY_ATTEMPT)?.parse().ok()
}
