//! [`RunningHandler::health`]: the connections, whether the handler still runs (or what
//! stopped it), and its sampled committed-offset lag against its threshold; and
//! [`Host::health`], every handler of a host together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use sea_orm::DatabaseConnection;

use super::{Host, RunningHandler};
use crate::context::KafkaOrm;
use crate::error::Error;
use crate::health::{Health, Reason, probe};
use crate::telemetry::lag::{LagFn, LastLag};

/// What a handler's health check reads, filled by the running handler.
pub(crate) struct HandlerWatch {
    pub orm: KafkaOrm,
    /// The database, for a handler in a transaction.
    pub db: Option<DatabaseConnection>,
    /// The handler's topic (namespace applied).
    pub topic: String,
    /// The error that stopped the handler, once it did.
    pub failure: Mutex<Option<String>>,
    /// The lag sampler's last sample.
    pub last_lag: Arc<LastLag>,
    /// Degraded above this lag.
    pub lag_threshold: Option<i64>,
    /// Reads the committed-offset lag now (blocking).
    pub committed_lag: LagFn,
    /// The maximum of lag-balanced workers, and the last sample's lag while it wanted
    /// more than that (0 otherwise; see [`super::limit`]).
    pub workers: (usize, Arc<AtomicU64>),
}

impl HandlerWatch {
    /// Records the error that stopped the handler, and logs it: whoever spawned the
    /// handler may not be watching, and a stop is never silent.
    pub fn failed(&self, error: &Error) {
        tracing::error!(topic = %self.topic, error = %error, "handler stopped");
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
    }
}

impl RunningHandler {
    /// Ready when the broker and (for a handler in a transaction) the database answer and
    /// the handler runs; down once it stopped (with the error, if one stopped it); degraded
    /// while a partition's sampled committed-offset lag is above [`lag_threshold`](crate::handler::HandlerBuilder::lag_threshold),
    /// or while workers that follow the lag run at their maximum and the lag wants more
    /// ([`Reason::WorkersAtMaximum`]).
    /// Takes at most [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT).
    pub async fn health(&self) -> Health {
        let watch = &self.watch;
        let mut reasons = probe::connections(&watch.orm, watch.db.as_ref()).await;
        if self.is_finished() {
            let topic = watch.topic.clone();
            let failure = watch
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            reasons.push(match failure {
                Some(error) => Reason::HandlerFailed { topic, error },
                None => Reason::HandlerStopped { topic },
            });
        }
        if let (Some(threshold), Some(lag)) = (watch.lag_threshold, watch.last_lag.get()) {
            reasons.extend(lag.into_iter().filter(|p| p.lag > threshold).map(|p| {
                Reason::LagAboveThreshold {
                    topic: p.topic,
                    partition: p.partition,
                    lag: p.lag,
                    threshold,
                }
            }));
        }
        let beyond = watch.workers.1.load(Ordering::Relaxed);
        if beyond > 0 && !self.is_finished() {
            reasons.push(Reason::WorkersAtMaximum {
                topic: watch.topic.clone(),
                workers: watch.workers.0,
                lag: beyond,
            });
        }
        Health::from_reasons(reasons)
    }
}

impl Host {
    /// Every handler's [`health`](RunningHandler::health), together: ready when each is,
    /// degraded when one lags, live but not ready when the broker or a database does not
    /// answer, and down (not live) once one handler stopped, with
    /// [`Reason::HandlerFailed`] naming its topic and the error that stopped it (or
    /// [`Reason::HandlerStopped`]). Worst first; a reason several handlers share (the
    /// broker is unreachable) is listed once. A host without handlers is ready.
    ///
    /// The handlers are checked concurrently, so this takes at most
    /// [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT) (twice that when the broker does not
    /// answer), whatever their number. Serve [`Health::is_live`] as `/healthz` and
    /// [`Health::is_ready`] as `/readyz`:
    ///
    /// ```no_run
    /// # use kafka_orm_runtime as kafka_orm;
    /// # async fn probe(host: &kafka_orm::handler::Host) {
    /// let health = host.health().await;
    /// if !health.is_live() {
    ///     // a handler stopped: restart the process (it does not recover by itself)
    ///     eprintln!("{health}"); // down: handler of `orders` failed: ...
    /// }
    /// # }
    /// ```
    pub async fn health(&self) -> Health {
        join_all(self.handlers().iter().map(RunningHandler::health))
            .await
            .into_iter()
            .fold(Health::ready(), Health::merge)
    }
}
