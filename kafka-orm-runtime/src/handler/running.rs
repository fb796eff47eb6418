//! A handler running in the background: its handle, counters and latency histogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::telemetry::lag::PartitionLag;

/// Counters of a handler since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerStats {
    /// Messages applied and committed.
    pub handled: u64,
    /// Messages skipped because the inbox had them already.
    pub duplicates: u64,
    /// Handler attempts that failed and were retried.
    pub retries: u64,
    /// Messages sent to the dead-letter topic (failed or undecodable).
    pub dead_lettered: u64,
    /// Payloads that could not be decoded.
    pub undecodable: u64,
    /// Messages of a type the topic does not carry (see
    /// [`OnUnknownType`](crate::message_type::OnUnknownType)), however they ended.
    pub unknown_types: u64,
    /// Messages skipped after the last attempt ([`OnExhausted::Skip`](super::OnExhausted::Skip)).
    pub skipped_failures: u64,
    /// Database errors outside the handler (begin/commit/inbox), retried.
    pub database_errors: u64,
    /// Times a partition was paused for backpressure.
    pub pauses: u64,
    /// Times a partition was resumed.
    pub resumes: u64,
    /// Partition assignments received (the first one included).
    pub assignments: u64,
    /// Partition revocations received.
    pub revocations: u64,
    /// Transactions committed (one per message, or one per batch in batch mode).
    pub transactions: u64,
    /// Handler calls allowed at once now (the workers): fixed, or as the lag last set it
    /// ([`Concurrency::by_lag`](super::Concurrency::by_lag)).
    pub concurrency: u64,
    /// Median time of a successful handler transaction (inbox row, handler, commit).
    pub latency_p50: Duration,
    /// 99th percentile of the same.
    pub latency_p99: Duration,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub handled: AtomicU64,
    pub duplicates: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub undecodable: AtomicU64,
    pub unknown_types: AtomicU64,
    pub skipped_failures: AtomicU64,
    pub database_errors: AtomicU64,
    pub pauses: AtomicU64,
    pub resumes: AtomicU64,
    pub assignments: AtomicU64,
    pub revocations: AtomicU64,
    pub transactions: AtomicU64,
    pub concurrency: AtomicU64,
    pub latency: Histogram,
}

/// A lock-free latency histogram with power-of-two microsecond buckets: cheap enough to
/// record every transaction, within a factor of two for percentiles.
pub(crate) struct Histogram {
    buckets: [AtomicU64; 40],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().max(1) as u64;
        let bucket = (63 - micros.leading_zeros() as usize).min(39);
        self.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1).
    fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(1u64 << (i + 1));
            }
        }
        Duration::from_micros(1u64 << 40)
    }
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> HandlerStats {
        HandlerStats {
            handled: self.handled.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            unknown_types: self.unknown_types.load(Relaxed),
            skipped_failures: self.skipped_failures.load(Relaxed),
            database_errors: self.database_errors.load(Relaxed),
            pauses: self.pauses.load(Relaxed),
            resumes: self.resumes.load(Relaxed),
            assignments: self.assignments.load(Relaxed),
            revocations: self.revocations.load(Relaxed),
            transactions: self.transactions.load(Relaxed),
            concurrency: self.concurrency.load(Relaxed),
            latency_p50: self.latency.quantile(0.5),
            latency_p99: self.latency.quantile(0.99),
        }
    }
}

/// A handler running in the background.
pub struct RunningHandler {
    pub(super) counters: Arc<Counters>,
    pub(super) lag: Arc<dyn Fn(Duration) -> Result<Vec<PartitionLag>> + Send + Sync>,
    pub(super) aborted: Arc<std::sync::atomic::AtomicBool>,
    pub(super) lane_tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    pub(super) stop: tokio::sync::watch::Sender<bool>,
    pub(super) stopped: Arc<tokio::sync::Notify>,
    pub(super) task: tokio::task::JoinHandle<Result<()>>,
    /// Whether [`RunningHandler::stopped`] awaited `task` (and handed out its error).
    pub(super) joined: bool,
    /// What its health check reads.
    pub(crate) watch: Arc<super::health::HandlerWatch>,
}

impl RunningHandler {
    /// Counters so far.
    pub fn stats(&self) -> HandlerStats {
        self.counters.snapshot()
    }

    /// How far behind fetching is, per assigned partition: the broker's high watermark
    /// minus the consumer's position (what was fetched; fetched messages count as done
    /// even while they wait or run). For how far the group's progress is behind, which a
    /// restart resumes from, use [`committed_lag`](Self::committed_lag).
    pub async fn lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        let lag = Arc::clone(&self.lag);
        tokio::task::spawn_blocking(move || lag(timeout))
            .await
            .map_err(|_| Error::Shutdown)?
    }

    /// How far behind the group is, per assigned partition: the broker's high watermark
    /// minus the group's committed offset (a partition with nothing committed counts from
    /// its low watermark). Offsets are committed every second, so this lags the handler
    /// by up to a second. Also sampled into the `kafka_orm.consumer.lag` gauge (see
    /// [`crate::telemetry`]).
    pub async fn committed_lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        let lag = Arc::clone(&self.watch.committed_lag);
        tokio::task::spawn_blocking(move || lag(timeout))
            .await
            .map_err(|_| Error::Shutdown)?
    }

    /// Whether the handler stopped on its own (an error; see [`RunningHandler::stopped`]).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Resolves when the handler stops on its own, with the error that stopped it (e.g.
    /// [`Error::HandlerFailed`]: a message failed every attempt, the topic has no `dlq` and
    /// the policy is [`OnExhausted::Stop`](super::OnExhausted::Stop)); while the handler
    /// runs it stays pending. The error is also logged at error level when it happens.
    ///
    /// Cancel-safe, for a `select!` next to the shutdown signal:
    ///
    /// ```text
    /// tokio::select! {
    ///     error = handler.stopped() => return Err(error.into()),
    ///     _ = tokio::signal::ctrl_c() => { handler.shutdown().await?; }
    /// }
    /// ```
    ///
    /// It resolves once; after that [`shutdown`](Self::shutdown) returns the final stats.
    pub async fn stopped(&mut self) -> Error {
        if self.joined {
            return std::future::pending().await;
        }
        let ended = (&mut self.task).await;
        self.joined = true;
        match ended {
            Ok(Err(e)) => e,
            Ok(Ok(())) => Error::Shutdown,
            Err(e) => abnormal(e),
        }
    }

    /// Stops consuming, lets in-flight handlers finish (bounded by the shutdown timeout),
    /// commits offsets and closes the consumer. Returns the final stats, or the error
    /// that stopped the handler earlier.
    pub async fn shutdown(self) -> Result<HandlerStats> {
        let _ = self.stop.send(true);
        if self.joined {
            return Ok(self.counters.snapshot());
        }
        let result = self.task.await.map_err(abnormal)?;
        result.map(|()| self.counters.snapshot())
    }

    /// Kills the handler at once, as a crash would: running handler calls are dropped
    /// mid-way (their transactions roll back), nothing more is stored or committed, and the
    /// consumer is closed, so its partitions go to the group's other members.
    pub fn abort(self) {
        self.aborted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.abort();
        let lanes = self.lane_tasks.lock().unwrap_or_else(|e| e.into_inner());
        lanes.iter().for_each(tokio::task::AbortHandle::abort);
        drop(lanes);
        let _ = self.stop.send(true);
    }
}

/// The error of a handler task that panicked or was cancelled.
fn abnormal(e: tokio::task::JoinError) -> Error {
    Error::Config(format!("the handler task ended abnormally: {e}"))
}

impl std::fmt::Debug for RunningHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHandler")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
