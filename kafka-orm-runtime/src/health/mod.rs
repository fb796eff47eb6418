//! Health: whether the context, a relay or a handler is live and ready, and if not, why.
//!
//! [`KafkaOrm::health`](crate::KafkaOrm::health),
//! [`OutboxRelay::health`](crate::OutboxRelay::health),
//! [`RunningHandler::health`](crate::handler::RunningHandler::health) and
//! [`Host::health`](crate::handler::Host::health) (every handler of a host) return a [`Health`]:
//! a [`HealthState`] and the [`Reason`]s behind it. Each check asks the broker (a metadata
//! request) and the database (a ping) right then, bounded by [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT), and reads
//! what the component saw itself (its task ended, its leases, its lag). Combine several
//! with [`Health::merge`].
//!
//! | state | live | ready | reasons |
//! | --- | --- | --- | --- |
//! | [`Ready`](HealthState::Ready) | yes | yes | none |
//! | [`Degraded`](HealthState::Degraded) | yes | yes | [`LagAboveThreshold`](Reason::LagAboveThreshold), [`WorkersAtMaximum`](Reason::WorkersAtMaximum), [`OutboxBehind`](Reason::OutboxBehind), [`NotListening`](Reason::NotListening) |
//! | [`Live`](HealthState::Live) | yes | no | [`BrokerUnreachable`](Reason::BrokerUnreachable), [`DatabaseUnreachable`](Reason::DatabaseUnreachable), [`NoBuckets`](Reason::NoBuckets), [`LeaseNotRenewed`](Reason::LeaseNotRenewed) |
//! | [`Down`](HealthState::Down) | no | no | [`RelayStopped`](Reason::RelayStopped), [`HandlerStopped`](Reason::HandlerStopped), [`HandlerFailed`](Reason::HandlerFailed) |
//!
//! A `Live` component recovers by itself once the broker or database is back (it retries
//! with backoff); a `Down` one does not: restart it (or the process). Serve
//! [`Health::is_live`] as the liveness probe (`/healthz`) and [`Health::is_ready`] as the
//! readiness probe (`/readyz`); `examples/src/observability.rs` does.

pub(crate) mod probe;

use std::fmt;
use std::time::Duration;

use crate::context::KafkaOrm;

/// How a component is doing, best first (the order is `Ord`: the worse state is greater).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthState {
    /// Working normally: live and ready.
    Ready,
    /// Working, with something to look at (lag or backlog above its threshold): still
    /// live and ready.
    Degraded,
    /// Alive but unable to work now (broker or database unreachable, no buckets): live,
    /// not ready. It recovers by itself.
    Live,
    /// Stopped or failed: neither live nor ready; it does not recover by itself.
    Down,
}

impl HealthState {
    /// `ready`, `degraded`, `live` or `down`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthState::Ready => "ready",
            HealthState::Degraded => "degraded",
            HealthState::Live => "live",
            HealthState::Down => "down",
        }
    }
}

/// Why a component is not [`Ready`](HealthState::Ready).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No broker answered a metadata request within twice
    /// [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT).
    BrokerUnreachable {
        /// librdkafka's error.
        error: String,
    },
    /// The database did not answer a ping within [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT).
    DatabaseUnreachable {
        /// The driver's error.
        error: String,
    },
    /// A leased relay holds no bucket of this outbox table (not acquired yet, or lost).
    NoBuckets {
        /// The outbox table.
        table: &'static str,
    },
    /// The relay's last lease renewal of this table failed: its buckets run out.
    LeaseNotRenewed {
        /// The outbox table.
        table: &'static str,
        /// The error.
        error: String,
    },
    /// The relay's oldest waiting row is older than the relay's
    /// [`health_max_age`](crate::OutboxRelayBuilder::health_max_age).
    OutboxBehind {
        /// The outbox table.
        table: &'static str,
        /// The oldest row's age at the last sample.
        oldest_age: Duration,
        /// The threshold.
        threshold: Duration,
    },
    /// The relay's PostgreSQL `LISTEN` connection is down: it only polls.
    NotListening,
    /// A relay task ended (aborted, or it panicked).
    RelayStopped,
    /// The handler stopped without an error (shut down).
    HandlerStopped {
        /// The handler's topic.
        topic: String,
    },
    /// The handler stopped on an error.
    HandlerFailed {
        /// The handler's topic.
        topic: String,
        /// The error that stopped it.
        error: String,
    },
    /// A partition's committed-offset lag is above the handler's
    /// [`lag_threshold`](crate::handler::HandlerBuilder::lag_threshold).
    LagAboveThreshold {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The lag at the last sample.
        lag: i64,
        /// The threshold.
        threshold: i64,
    },
    /// A handler whose workers follow the lag
    /// ([`Concurrency::by_lag`](crate::handler::Concurrency::by_lag)) runs at its maximum,
    /// and the last lag sample wanted more workers than that.
    WorkersAtMaximum {
        /// The handler's topic.
        topic: String,
        /// The maximum it runs at.
        workers: usize,
        /// The lag of that sample (its assigned partitions of the topic, summed).
        lag: u64,
    },
}

impl Reason {
    /// The state this reason puts its component in.
    pub fn state(&self) -> HealthState {
        match self {
            Reason::LagAboveThreshold { .. }
            | Reason::WorkersAtMaximum { .. }
            | Reason::OutboxBehind { .. }
            | Reason::NotListening => HealthState::Degraded,
            Reason::BrokerUnreachable { .. }
            | Reason::DatabaseUnreachable { .. }
            | Reason::NoBuckets { .. }
            | Reason::LeaseNotRenewed { .. } => HealthState::Live,
            Reason::RelayStopped | Reason::HandlerStopped { .. } | Reason::HandlerFailed { .. } => {
                HealthState::Down
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::BrokerUnreachable { error } => write!(f, "broker unreachable: {error}"),
            Reason::DatabaseUnreachable { error } => write!(f, "database unreachable: {error}"),
            Reason::NoBuckets { table } => write!(f, "relay holds no bucket of `{table}`"),
            Reason::LeaseNotRenewed { table, error } => {
                write!(f, "relay leases of `{table}` not renewed: {error}")
            }
            Reason::OutboxBehind {
                table,
                oldest_age,
                threshold,
            } => write!(
                f,
                "oldest row of `{table}` waits {oldest_age:?} (threshold {threshold:?})"
            ),
            Reason::NotListening => write!(f, "relay not listening for commits (polling)"),
            Reason::RelayStopped => write!(f, "relay stopped"),
            Reason::HandlerStopped { topic } => write!(f, "handler of `{topic}` stopped"),
            Reason::HandlerFailed { topic, error } => {
                write!(f, "handler of `{topic}` failed: {error}")
            }
            Reason::LagAboveThreshold {
                topic,
                partition,
                lag,
                threshold,
            } => write!(
                f,
                "lag of `{topic}` [{partition}] is {lag} (threshold {threshold})"
            ),
            Reason::WorkersAtMaximum {
                topic,
                workers,
                lag,
            } => write!(
                f,
                "handler of `{topic}` runs at its maximum of {workers} workers with a lag of {lag}"
            ),
        }
    }
}

/// A health check's answer: the state and the reasons behind it (none when ready).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The worst state among the reasons ([`HealthState::Ready`] without any).
    pub state: HealthState,
    /// Why it is not ready, worst first.
    pub reasons: Vec<Reason>,
}

impl Health {
    /// Ready, no reasons.
    pub fn ready() -> Self {
        Health::from_reasons(Vec::new())
    }

    /// The health these reasons amount to.
    pub fn from_reasons(mut reasons: Vec<Reason>) -> Self {
        reasons.sort_by_key(|r| std::cmp::Reverse(r.state()));
        let state = reasons.first().map_or(HealthState::Ready, Reason::state);
        Health { state, reasons }
    }

    /// Both together: the worse state, every reason once.
    pub fn merge(self, other: Health) -> Health {
        let mut reasons = self.reasons;
        for r in other.reasons {
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        Health::from_reasons(reasons)
    }

    /// Live: not [`Down`](HealthState::Down) (for a liveness probe).
    pub fn is_live(&self) -> bool {
        self.state != HealthState::Down
    }

    /// Ready: [`Ready`](HealthState::Ready) or [`Degraded`](HealthState::Degraded) (for a
    /// readiness probe).
    pub fn is_ready(&self) -> bool {
        self.state <= HealthState::Degraded
    }
}

impl fmt::Display for Health {
    /// `ready`, or the state and the reasons: `live: broker unreachable: ...; ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.as_str())?;
        for (i, r) in self.reasons.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl KafkaOrm {
    /// Whether the broker answers and the database (if the context has one) does: ready,
    /// or live with [`Reason::BrokerUnreachable`] / [`Reason::DatabaseUnreachable`].
    /// Takes at most [`HEALTH_PROBE_TIMEOUT`](crate::defaults::HEALTH_PROBE_TIMEOUT).
    pub async fn health(&self) -> Health {
        Health::from_reasons(probe::connections(self, self.database()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_reason_decides() {
        assert_eq!(Health::ready().state, HealthState::Ready);
        let lag = Reason::LagAboveThreshold {
            topic: "t".into(),
            partition: 0,
            lag: 10,
            threshold: 5,
        };
        let degraded = Health::from_reasons(vec![lag.clone()]);
        assert_eq!(degraded.state, HealthState::Degraded);
        assert!(degraded.is_live() && degraded.is_ready());
        let broker = Reason::BrokerUnreachable {
            error: "timed out".into(),
        };
        let live = degraded
            .clone()
            .merge(Health::from_reasons(vec![broker.clone()]));
        assert_eq!(live.state, HealthState::Live);
        assert_eq!(live.reasons, vec![broker, lag], "worst first");
        assert!(live.is_live() && !live.is_ready());
        let down = live.merge(Health::from_reasons(vec![Reason::RelayStopped]));
        assert!(!down.is_live() && !down.is_ready());
        assert_eq!(
            down.to_string(),
            "down: relay stopped; broker unreachable: timed out; lag of `t` [0] is 10 (threshold 5)"
        );
        assert_eq!(
            degraded.clone().merge(degraded.clone()),
            degraded,
            "once each"
        );
    }
}
