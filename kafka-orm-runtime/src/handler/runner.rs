//! The machinery behind [`super::HandlerBuilder::spawn`].
//!
//! A poll thread ([`super::poll`]) receives from librdkafka and serves rebalances; the
//! dispatcher task decodes each message and queues it on a lane ([`super::lane`]). Each
//! partition keeps a [`super::watermark::Watermark`]; its commit point is what gets
//! stored, so no commit passes unfinished work. Stored offsets are committed every second,
//! on revoke and on shutdown; never after [`RunningHandler::abort`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::OwnedMessage;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, watch};

use super::apply::Apply;
use super::client::{committed_lag_reader, consumer_for, lag_reader};
use super::dlq::RawRecord;
use super::forward::Forwarder;
use super::health::HandlerWatch;
use super::lane::{self, Lane, Place, Work};
use super::limit::{self, ByLag, Limit};
use super::partitions::{Shared, Tp};
use super::poll::{self, ClientGuard, Polled};
use super::retry::{self, RETRY_TIERS, RetryPlan};
use super::{Config, Counters, RunningHandler};
use crate::consumer;
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::inbox;
use crate::producer::Headers;
use crate::telemetry::lag::LagSampler;
use crate::telemetry::metrics::HandlerMetrics;
use crate::topic::Consumable;
use crate::util::stable_hash;

/// Starts the handler; `db` is the context's database when the handler needs it.
pub(crate) async fn start<T: Consumable, H: Apply<T>>(
    orm: KafkaOrm,
    db: Option<DatabaseConnection>,
    group: String,
    handler: H,
    config: Config,
) -> Result<RunningHandler> {
    let topic = orm.topic_name(T::SPEC);
    let counters = Arc::new(Counters::default());
    let aborted = Arc::new(AtomicBool::new(false));
    let topics = topics_of::<T>(&topic);
    let shared = Arc::new(Shared::new(
        topics.clone(),
        Arc::clone(&counters),
        config.clone(),
        Arc::clone(&aborted),
        HandlerMetrics::new(&topic, &group),
    ));
    let instance = config
        .instance_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let client = Arc::new(crate::offthread::consumer_guard(consumer_for(
        &orm, &group, &config, &shared, &topics,
    )?));
    let forwarder =
        forwarder_for::<T>(&orm, &format!("{group}.{topic}.forward.{instance}")).await?;
    let lag = lag_reader(Arc::clone(&client));
    let watch = health_watch(&orm, db.as_ref(), &topic, &group, &client, &config);
    let task_watch = Arc::clone(&watch);
    let lane_tasks = Arc::clone(&shared.lane_tasks);
    let (stop, stopping) = watch::channel(false);
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let stopped = Arc::new(tokio::sync::Notify::new());
    let permits = workers(&shared, &watch, &group, &stopping);
    let lane = Arc::new(Lane::<T, H> {
        db,
        group,
        handler: Arc::new(handler),
        shared,
        client,
        permits,
        fatal: fatal_tx,
        stopping: stopping.clone(),
        dlq_topic: T::SPEC.dlq.map(|d| orm.namespaced(d.topic)),
        forwarder,
        retry: RetryPlan::new(&config, T::SPEC.retry_topics, T::SPEC.dlq.is_some()),
        _type: std::marker::PhantomData,
    });
    let (poll_rx, poll_stop, poller) = start_poller(&lane)?;
    let notify = Arc::clone(&stopped);
    let task = tokio::spawn(async move {
        let result = dispatch(Arc::clone(&lane), stopping, fatal_rx, poll_rx).await;
        poll_stop.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || poller.join()).await;
        let result = match result {
            Ok(()) => close(&lane).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            task_watch.failed(e);
        }
        lane.shared.metrics.concurrency.set(0.0);
        notify.notify_one();
        result
    });
    Ok(RunningHandler {
        counters,
        lag,
        aborted,
        lane_tasks,
        stop,
        stopped,
        task,
        joined: false,
        watch,
    })
}

/// The handler's concurrency limit at its first size, and, when it follows the lag, the
/// task that resizes it (stopped with the handler).
fn workers(
    shared: &Arc<Shared>,
    watch: &HandlerWatch,
    group: &str,
    stopping: &watch::Receiver<bool>,
) -> Arc<Limit> {
    let policy = shared.config.concurrency;
    let limit = Arc::new(Limit::new(policy.min()));
    shared
        .counters
        .concurrency
        .store(policy.min() as u64, Ordering::Relaxed);
    shared.metrics.concurrency.set(policy.min() as f64);
    if policy.is_fixed() {
        return limit;
    }
    let task = tokio::spawn(limit::balance_by_lag(ByLag {
        policy,
        limit: Arc::clone(&limit),
        samples: watch.last_lag.subscribe(),
        topic: shared.topic.clone(),
        group: group.to_string(),
        counters: Arc::clone(&shared.counters),
        gauge: shared.metrics.concurrency.clone(),
        beyond_max: Arc::clone(&watch.workers.1),
        stopping: stopping.clone(),
    }));
    let mut tasks = shared.lane_tasks.lock().unwrap_or_else(|e| e.into_inner());
    tasks.push(task.abort_handle());
    limit
}

/// What the handler's health check reads: its connections, failure and lag.
fn health_watch(
    orm: &KafkaOrm,
    db: Option<&DatabaseConnection>,
    topic: &str,
    group: &str,
    client: &Arc<ClientGuard>,
    config: &Config,
) -> Arc<HandlerWatch> {
    Arc::new(HandlerWatch {
        orm: orm.clone(),
        db: db.cloned(),
        topic: topic.to_string(),
        failure: Default::default(),
        last_lag: LagSampler::spawn(
            Arc::downgrade(client),
            group.to_string(),
            orm.metrics_interval(),
        ),
        lag_threshold: config.lag_threshold,
        committed_lag: committed_lag_reader(Arc::clone(client)),
        workers: (config.concurrency.max(), Arc::default()),
    })
}

/// A started poll thread: what it polled, the flag that stops it, and the thread.
type Poller = (
    mpsc::Receiver<poll::Polled>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
);

/// The poll thread of `lane`'s consumer: what it polled, the flag that stops it, and its
/// thread.
fn start_poller<T: Consumable, H: Apply<T>>(lane: &Lane<T, H>) -> Result<Poller> {
    let (poll_tx, poll_rx) = mpsc::channel(poll::POLL_BUFFER);
    let poll_stop = Arc::new(AtomicBool::new(false));
    let poller = poll::spawn(
        Arc::clone(&lane.client),
        Arc::clone(&lane.shared),
        poll_tx,
        Arc::clone(&poll_stop),
    )
    .map_err(|e| Error::Config(format!("cannot start the handler's poll thread: {e}")))?;
    Ok((poll_rx, poll_stop, poller))
}

/// The handler's topic, then its retry tiers (with `retry_topics`).
fn topics_of<T: Consumable>(topic: &str) -> Vec<String> {
    let mut topics = vec![topic.to_string()];
    if T::SPEC.retry_topics {
        topics.extend((1..=RETRY_TIERS as u8).map(|n| retry::retry_topic(topic, n)));
    }
    topics
}

/// The transactional producer that forwards to retry tiers and the dead-letter topic, if
/// the topic has either.
async fn forwarder_for<T: Consumable>(orm: &KafkaOrm, id: &str) -> Result<Option<Arc<Forwarder>>> {
    if T::SPEC.dlq.is_none() && !T::SPEC.retry_topics {
        return Ok(None);
    }
    let forwarder =
        Forwarder::start(orm.producer_config(), id.to_string(), orm.send_timeout()).await?;
    Ok(Some(Arc::new(forwarder)))
}

fn raw_record(m: &OwnedMessage) -> RawRecord {
    RawRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m.headers().map(Headers::from_rdkafka).unwrap_or_default(),
    }
}

/// The dispatcher: take polled messages, decode, queue on lanes; on stop or a fatal error,
/// let in-flight work finish.
async fn dispatch<T: Consumable, H: Apply<T>>(
    lane: Arc<Lane<T, H>>,
    mut stopping: watch::Receiver<bool>,
    mut fatal: mpsc::UnboundedReceiver<Error>,
    mut polled: mpsc::Receiver<Polled>,
) -> Result<()> {
    let shared = Arc::clone(&lane.shared);
    let config = &shared.config;
    let mut lanes: HashMap<(Tp, u32), mpsc::UnboundedSender<Work<T>>> = HashMap::new();
    let mut purge = tokio::time::interval(config.purge_interval);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut commit = tokio::time::interval(COMMIT_INTERVAL);
    commit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            biased;
            _ = stopping.changed() => break,
            _ = commit.tick() => commit_async(&lane.client, &shared),
            err = fatal.recv() => {
                if let Some(e) = err {
                    outcome = Err(e);
                }
                break;
            }
            _ = purge.tick(), if T::SPEC.inbox.is_some() => spawn_purge::<T>(lane.db.clone()),
            p = polled.recv() => {
                let Some(p) = p else {
                    // The poll thread ended without being told to (aborted, or it panicked).
                    if !shared.is_aborted() {
                        outcome = Err(Error::Config(format!(
                            "the poll thread of the handler of `{}` ended", shared.topic
                        )));
                    }
                    break;
                };
                let Some(work) = admit(&lane, p) else { continue };
                route(&lane, &mut lanes, work);
            }
        }
    }
    // Shutdown: abandon queued work, let in-flight work finish.
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
    outcome
}

/// Commits what finished (unless aborted); the consumer closes when the last lane lets go.
async fn close<T: Consumable, H: Apply<T>>(lane: &Arc<Lane<T, H>>) -> Result<()> {
    if lane.shared.aborted.load(Ordering::SeqCst) {
        return Ok(());
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
    Ok(())
}

/// How often stored offsets are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Commits the stored offsets in the background (partitions with nothing new are skipped).
fn commit_async(client: &ClientGuard, shared: &Shared) {
    if shared.aborted.load(Ordering::SeqCst) {
        return;
    }
    if let Err(e) = client.get().commit_consumer_state(CommitMode::Async)
        && e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
    {
        tracing::debug!(error = %e, "periodic commit");
    }
}

fn spawn_purge<T: Consumable>(db: Option<DatabaseConnection>) {
    let Some(db) = db else { return };
    tokio::spawn(async move {
        match inbox::purge_expired(&db, &[T::SPEC]).await {
            Ok(n) if n > 0 => {
                tracing::info!(rows = n, topic = T::SPEC.name, "purged expired inbox rows")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "inbox purge failed"),
        }
    });
}

/// Registers a polled message in its partition's watermark (pausing the partition when
/// too much is pending) and decodes it; `None` when its generation is over.
fn admit<T: Consumable, H>(lane: &Lane<T, H>, p: Polled) -> Option<Work<T>> {
    let shared = &lane.shared;
    let offset = p.msg.offset();
    {
        let mut parts = shared.lock();
        let st = parts.get_mut(&p.tp)?;
        if st.revoking || st.epoch != p.epoch {
            return None;
        }
        st.marks.admit(offset);
        if !st.paused
            && st.marks.pending() >= shared.config.max_pending
            && lane.client.get().pause(&shared.tpl(p.tp, None)).is_ok()
        {
            st.paused = true;
            Counters::bump(&shared.counters.pauses);
            shared.metrics.pauses.increment(1);
        }
    }
    shared.metrics.consumed.increment(1);
    let place = Place {
        tp: p.tp,
        offset,
        epoch: p.epoch,
    };
    let keep_raw = T::SPEC.dlq.is_some() || T::SPEC.retry_topics;
    Some(match consumer::decode::<T, _>(&p.msg) {
        Ok(mut delivery) => {
            if p.tp.0 > 0 {
                delivery.attempt = retry::retry_attempt(&delivery.headers).unwrap_or(1);
            }
            Work::Message {
                delivery,
                raw: keep_raw.then(|| raw_record(&p.msg)),
                place,
            }
        }
        Err(e) => {
            let unknown_type = matches!(e, Error::UnknownType { .. });
            if unknown_type {
                Counters::bump(&shared.counters.unknown_types);
            } else {
                Counters::bump(&shared.counters.undecodable);
                shared.metrics.undecodable.increment(1);
            }
            Work::Undecodable {
                raw: raw_record(&p.msg),
                error: e.to_string(),
                place,
                unknown_type,
            }
        }
    })
}

/// Queues `work` on its lane (partition, or partition and key hash), starting it if new.
fn route<T: Consumable, H: Apply<T>>(
    lane: &Arc<Lane<T, H>>,
    lanes: &mut HashMap<(Tp, u32), mpsc::UnboundedSender<Work<T>>>,
    work: Work<T>,
) {
    let key_lanes = lane.shared.config.key_lanes;
    let key = match &work {
        Work::Message { delivery, .. } => delivery.key.as_deref(),
        Work::Undecodable { raw, .. } => raw.key.as_deref(),
    };
    let lane_no = match key {
        Some(k) if key_lanes > 1 => (stable_hash(&[k]) % u64::from(key_lanes)) as u32,
        _ => 0,
    };
    let place = work.place();
    let sender = lanes
        .entry((place.tp, lane_no))
        .or_insert_with(|| spawn_lane(Arc::clone(lane)));
    if let Err(mpsc::error::SendError(work)) = sender.send(work) {
        // The lane ended (it only does on shutdown); start a new one.
        let fresh = spawn_lane(Arc::clone(lane));
        let _ = fresh.send(work);
        lanes.insert((place.tp, lane_no), fresh);
    }
}

fn spawn_lane<T: Consumable, H: Apply<T>>(lane: Arc<Lane<T, H>>) -> mpsc::UnboundedSender<Work<T>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let tasks = Arc::clone(&lane.shared.lane_tasks);
    let task = tokio::spawn(lane::run(lane, rx));
    let mut tasks = tasks.lock().unwrap_or_else(|e| e.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(task.abort_handle());
    tx
}
