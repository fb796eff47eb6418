//! A lane applies its messages one after another (or in batches): the unit of ordering.
//! One lane per partition, or per partition and key hash with key concurrency; a
//! semaphore bounds how many work at once.
//!
//! Each message runs as its handler applies it ([`super::apply`]: in one database
//! transaction with its inbox row, or without a database); failures retry in place with
//! backoff, then go to a retry tier or the dead-letter topic (exactly once, see
//! [`super::forward`]), are skipped, or stop the handler.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, watch};

use super::Counters;
use super::apply::{Apply, Attempt};
use super::dlq::{self, Failure, RawRecord};
use super::forward::Forwarder;
use super::limit::Limit;
use super::observe;
use super::partitions::{Shared, Tp};
use super::poll::ClientGuard;
use super::retry::{self, Leave, Next, RETRY_DUE, RETRY_FIRST_FAILURE, Reason, RetryPlan};
use crate::backoff::clock_seed;
use crate::consumer::Delivery;
use crate::error::Error;
use crate::middleware::ConsumeContext;
use crate::producer::TRACEPARENT_HEADER;
use crate::telemetry::trace::{self, Operation};
use crate::topic::{Consumable, Topic};
use crate::util::now_ms;

/// Where a message sits: its partition, offset and the partition's assignment generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub tp: Tp,
    pub offset: i64,
    pub epoch: u64,
}

/// What a lane works on.
pub(crate) enum Work<T> {
    Message {
        delivery: Delivery<T>,
        raw: Option<RawRecord>,
        place: Place,
    },
    Undecodable {
        raw: RawRecord,
        error: String,
        place: Place,
        /// Its type header names a type the topic does not carry (not a codec error).
        unknown_type: bool,
    },
}

impl<T> Work<T> {
    pub fn place(&self) -> Place {
        match self {
            Work::Message { place, .. } | Work::Undecodable { place, .. } => *place,
        }
    }
}

/// How one message ended.
pub(crate) enum Done {
    /// Finished (applied, duplicate, dead-lettered or skipped): its offset may be stored.
    Finished,
    /// Not finished (partition revoked or shutting down): leave it for the next owner.
    Abandoned,
}

/// A message on its way out after failing.
struct Failed<'a> {
    raw: &'a RawRecord,
    attempts: u32,
    error: String,
    first_ms: i64,
    place: Place,
}

/// Everything a lane needs.
pub(crate) struct Lane<T, H> {
    /// The context's database, for a handler in a transaction.
    pub db: Option<DatabaseConnection>,
    pub group: String,
    pub handler: Arc<H>,
    pub shared: Arc<Shared>,
    pub client: Arc<ClientGuard>,
    /// The workers: a permit per handler call.
    pub permits: Arc<Limit>,
    pub fatal: mpsc::UnboundedSender<Error>,
    pub stopping: watch::Receiver<bool>,
    /// The dead-letter topic (namespace applied), when the topic has one.
    pub dlq_topic: Option<String>,
    /// Sends retry-tier and dead-letter records exactly once.
    pub forwarder: Option<Arc<Forwarder>>,
    /// What follows a failed attempt (and the backoff of every wait).
    pub retry: RetryPlan,
    pub _type: std::marker::PhantomData<fn() -> T>,
}

/// A lane's task: receive work, apply it, record where it ended.
pub(crate) async fn run<T: Consumable, H: Apply<T>>(
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
        let works: Vec<Work<T>> = works
            .into_iter()
            .filter(|w| lane.begin(w.place()))
            .collect();
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

impl<T: Consumable, H: Apply<T>> Lane<T, H> {
    /// Marks `place` in flight if its partition is still ours in the same generation.
    fn begin(&self, place: Place) -> bool {
        let mut parts = self.shared.lock();
        match parts.get_mut(&place.tp) {
            Some(st) if st.epoch == place.epoch && !st.revoking => {
                st.in_flight += 1;
                true
            }
            _ => false,
        }
    }

    /// Records the end of one message: moves the watermark, stores it, resumes.
    pub(super) fn finish(&self, place: Place, done: Done) {
        let shared = &self.shared;
        let aborted = shared.aborted.load(Ordering::SeqCst);
        let mut parts = shared.lock();
        if let Some(st) = parts.get_mut(&place.tp)
            && st.epoch == place.epoch
        {
            st.in_flight = st.in_flight.saturating_sub(1);
            if let (Done::Finished, false) = (done, aborted)
                && let Some(point) = st.marks.finish(place.offset)
                && self
                    .client
                    .get()
                    .store_offsets(&shared.tpl(place.tp, Some(point)))
                    .is_ok()
            {
                st.marks.stored(point);
            }
            if st.paused
                && st.marks.pending() <= shared.config.max_pending / 2
                && self
                    .client
                    .get()
                    .resume(&shared.tpl(place.tp, None))
                    .is_ok()
            {
                st.paused = false;
                Counters::bump(&shared.counters.resumes);
            }
        }
        drop(parts);
        shared.changed.notify_all();
    }

    /// Whether work at `place` should stop (revoked, aborted, or shutting down).
    pub(super) fn abandoned(&self, place: Place) -> bool {
        *self.stopping.borrow()
            || self.shared.aborted.load(Ordering::SeqCst)
            || self.shared.epoch_of(place.tp) != Some(place.epoch)
    }

    /// One message, with retries; the transaction holds the inbox row and the handler's writes.
    ///
    /// On the topic itself the message gets the configured in-place attempts; a message
    /// read from a retry tier first waits until it is due, then gets one attempt.
    pub(super) async fn one(&self, work: Work<T>) -> Done {
        let (mut delivery, raw, place) = match work {
            Work::Message {
                delivery,
                raw,
                place,
            } => (delivery, raw, place),
            Work::Undecodable {
                raw,
                error,
                place,
                unknown_type,
            } => return self.undecodable(&raw, error, place, unknown_type).await,
        };
        let tier = place.tp.0;
        if tier > 0 && !self.wait_until_due(&delivery, place).await {
            return Done::Abandoned;
        }
        let last = self.retry.last_attempt(tier, delivery.attempt);
        let mut first_failure = retry::header_i64(&delivery.headers, RETRY_FIRST_FAILURE);
        let mut infra_streak = 0;
        loop {
            if self.abandoned(place) {
                return Done::Abandoned;
            }
            let permit = self.permits.acquire().await;
            let result = self.attempt(&delivery).await;
            drop(permit);
            let error = match result {
                Ok(()) => return Done::Finished,
                Err(Attempt::Infra(e)) => {
                    Counters::bump(&self.shared.counters.database_errors);
                    infra_streak += 1;
                    tracing::warn!(error = %e, "database unavailable for the handler; retrying");
                    let delay = self.retry.outage_delay(infra_streak, clock_seed());
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(Attempt::Handler(e)) => e,
            };
            infra_streak = 0;
            let first_ms = *first_failure.get_or_insert(now_ms());
            let next = self
                .retry
                .after_failure(tier, delivery.attempt, last, clock_seed());
            let delay = match next {
                Next::Again(delay) => delay,
                Next::Leave(leave) => {
                    let raw = raw.unwrap_or_else(|| raw_of(&delivery));
                    let failed = Failed {
                        raw: &raw,
                        attempts: delivery.attempt,
                        error: error.to_string(),
                        first_ms,
                        place,
                    };
                    return self.leave(failed, Reason::Exhausted, leave).await;
                }
            };
            Counters::bump(&self.shared.counters.retries);
            self.shared.metrics.retries.increment(1);
            tracing::info!(
                topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset,
                attempt = delivery.attempt, error = %error, "handler failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delivery.attempt += 1;
        }
    }

    /// A message that did not decode (or of a type the topic does not carry): the
    /// unknown-type policy, else the dead-letter topic at once.
    async fn undecodable(
        &self,
        raw: &RawRecord,
        error: String,
        place: Place,
        unknown_type: bool,
    ) -> Done {
        if unknown_type && let Some(done) = self.unknown_type(raw) {
            return done;
        }
        let failed = Failed {
            raw,
            attempts: 0,
            error,
            first_ms: now_ms(),
            place,
        };
        let leave = self.retry.give_up(Reason::Undecodable);
        self.leave(failed, Reason::Undecodable, leave).await
    }

    /// Waits until a retry-tier message is due; false when abandoned meanwhile.
    async fn wait_until_due(&self, delivery: &Delivery<T>, place: Place) -> bool {
        let Some(due) = retry::header_i64(&delivery.headers, RETRY_DUE) else {
            return true;
        };
        while now_ms() < due {
            if self.abandoned(place) {
                return false;
            }
            let left = (due - now_ms()).clamp(1, 500) as u64;
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
        true
    }

    /// A failed message leaves as the retry plan decided.
    async fn leave(&self, failed: Failed<'_>, reason: Reason, leave: Leave) -> Done {
        match (leave, &self.dlq_topic) {
            (Leave::Tier { tier, delay }, _) => self.to_retry_tier(failed, tier, delay).await,
            (Leave::DeadLetter, Some(dlq_topic)) => {
                self.dead_letter(failed, dlq_topic, reason).await
            }
            (Leave::Skip, _) => {
                Counters::bump(&self.shared.counters.skipped_failures);
                tracing::error!(topic = %failed.raw.topic, partition = failed.raw.partition, offset = failed.raw.offset, attempts = failed.attempts, error = %failed.error, "handler gave up; message skipped");
                Done::Finished
            }
            (Leave::Stop | Leave::DeadLetter, _) => self.stop(failed),
        }
    }

    /// Forwards a failed message to retry tier `tier`, due after `delay`.
    async fn to_retry_tier(&self, failed: Failed<'_>, tier: u8, delay: Duration) -> Done {
        let topic = retry::retry_topic(&self.shared.topic, tier);
        let due = retry::due_ms(now_ms(), delay);
        let record = retry::to_tier(
            failed.raw,
            failed.attempts + 1,
            due,
            failed.first_ms,
            failed.error,
        );
        let done = self.forward_once(&topic, &record, failed.place).await;
        if let Done::Finished = done {
            Counters::bump(&self.shared.counters.retries);
            self.shared.metrics.retries.increment(1);
            tracing::info!(topic = %record.topic, partition = record.partition, offset = record.offset, retry_topic = %topic, ?delay, "handler failed; retrying later through a retry topic");
        }
        done
    }

    /// After the last attempt (or for an undecodable payload), to the dead-letter topic.
    async fn dead_letter(&self, failed: Failed<'_>, dlq_topic: &str, reason: Reason) -> Done {
        let raw = failed.raw;
        let error = failed.error.clone();
        let record = dlq::dead_letter(
            raw,
            Failure {
                group: &self.group,
                attempts: failed.attempts,
                error: failed.error,
                first_ms: failed.first_ms,
                last_ms: now_ms(),
            },
        );
        let done = self.forward_once(dlq_topic, &record, failed.place).await;
        if let Done::Finished = done {
            Counters::bump(&self.shared.counters.dead_lettered);
            self.shared.metrics.dead_lettered.increment(1);
            tracing::warn!(topic = %raw.topic, partition = raw.partition, offset = raw.offset, dlq = %dlq_topic, ?reason, error = %error, "dead-lettered");
        }
        done
    }

    /// Stops the handler with [`Error::HandlerFailed`]; the message stays for the next run.
    fn stop(&self, failed: Failed<'_>) -> Done {
        let _ = self.fatal.send(Error::HandlerFailed {
            topic: failed.raw.topic.clone(),
            partition: failed.raw.partition,
            offset: failed.raw.offset,
            type_name: super::type_name::<T>(),
            attempts: failed.attempts,
            source: failed.error.into(),
        });
        Done::Abandoned
    }

    /// One attempt, as the handler applies it (see [`super::apply`]), in its span and
    /// through the consume layers ([`crate::middleware`]).
    async fn attempt(&self, delivery: &Delivery<T>) -> std::result::Result<(), Attempt> {
        let span = tracing::info_span!(
            "kafka_orm.handle",
            topic = %delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            attempt = delivery.attempt,
            traceparent = delivery.headers.get_str(TRACEPARENT_HEADER).unwrap_or(""),
            otel.kind = tracing::field::Empty,
        );
        trace::describe(&span, Operation::Process, &delivery.messaging(&self.group));
        trace::continue_from(&span, &delivery.headers);
        // The span and metrics are the built-in layer, around the registered ones.
        let ctx = ConsumeContext::one(&self.group, delivery);
        let applied = self.handler.apply(self.db.as_ref(), &self.group, delivery);
        let attempt = std::pin::pin!(observe::one(applied));
        observe::run(&self.shared, H::DATABASE, span, &ctx, attempt)
            .await
            .map(|_| ())
    }
}

/// A raw record rebuilt from a decoded delivery (when raw bytes were not kept).
fn raw_of<T: Topic>(d: &Delivery<T>) -> RawRecord {
    let mut payload = Vec::new();
    let _ = d.value.encode_payload(&mut payload);
    RawRecord {
        topic: d.topic.clone(),
        partition: d.partition,
        offset: d.offset,
        key: d.key.clone(),
        payload: Some(payload),
        headers: d.headers.clone(),
    }
}
