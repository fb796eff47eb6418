//! [`TestHarness::wait_idle`](super::TestHarness::wait_idle): until the outboxes are
//! empty and every handler caught up and committed, or a typed error saying what is
//! still busy.

use std::fmt;
use std::time::Duration;

use super::supervise::Slot;
use crate::context::KafkaOrm;

/// Something that kept the harness from being idle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Busy {
    /// Rows still wait in an outbox table.
    Outbox {
        /// The table.
        table: &'static str,
        /// Rows waiting.
        rows: u64,
        /// The last delivery error of a row that failed, if one did.
        last_error: Option<String>,
    },
    /// A handler's group has not committed up to the end of a partition (its messages
    /// are queued, running, retrying, or committed within the next second).
    Behind {
        /// The handler: its type, its topic and its place among the harness's.
        handler: String,
        /// The topic (or a retry tier's).
        topic: String,
        /// The partition.
        partition: i32,
        /// Messages not committed yet.
        lag: i64,
    },
    /// A handler has no partitions yet (joining its group, or rebalancing).
    Unassigned {
        /// The handler.
        handler: String,
    },
    /// A handler is being restarted after a planned crash.
    Restarting {
        /// The handler.
        handler: String,
    },
    /// A handler stopped on its own: it will not catch up.
    Stopped {
        /// The handler.
        handler: String,
        /// Why.
        error: String,
    },
    /// Something could not be read (the database, the broker).
    Unreadable {
        /// What.
        what: String,
        /// The error.
        error: String,
    },
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Busy::Outbox {
                table,
                rows,
                last_error,
            } => {
                write!(f, "{rows} row(s) wait in outbox `{table}`")?;
                match last_error {
                    Some(e) => write!(f, " (last error: {e})"),
                    None => Ok(()),
                }
            }
            Busy::Behind {
                handler,
                topic,
                partition,
                lag,
            } => {
                write!(
                    f,
                    "{handler} has {lag} message(s) not committed on {topic}[{partition}]"
                )
            }
            Busy::Unassigned { handler } => write!(f, "{handler} has no partitions yet"),
            Busy::Restarting { handler } => write!(f, "{handler} is restarting"),
            Busy::Stopped { handler, error } => write!(f, "{handler} stopped: {error}"),
            Busy::Unreadable { what, error } => write!(f, "cannot read {what}: {error}"),
        }
    }
}

/// The harness was not idle in time; [`busy`](Self::busy) says what was still going on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the test harness was not idle after {waited:?}: {}", list(.busy))]
pub struct NotIdle {
    /// How long it waited.
    pub waited: Duration,
    /// What was still busy at the last look.
    pub busy: Vec<Busy>,
}

fn list(busy: &[Busy]) -> String {
    busy.iter()
        .map(Busy::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long one look at a handler's lag may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// What is busy now: the outboxes first, then every handler.
pub(super) async fn look(orm: &KafkaOrm, slots: &mut [Slot]) -> Vec<Busy> {
    let mut busy = outboxes(orm).await;
    for slot in slots.iter_mut() {
        busy.extend(handler(slot).await);
    }
    busy
}

async fn outboxes(orm: &KafkaOrm) -> Vec<Busy> {
    if orm.database().is_none() || !orm.topics().iter().any(|t| t.outbox.is_some()) {
        return Vec::new();
    }
    match orm.outbox_status().await {
        Ok(status) => status
            .into_iter()
            .filter(|s| s.backlog > 0)
            .map(|s| Busy::Outbox {
                table: s.table,
                rows: s.backlog,
                last_error: s.failing.first().and_then(|f| f.last_error.clone()),
            })
            .collect(),
        Err(e) => vec![Busy::Unreadable {
            what: "the outbox tables".into(),
            error: e.to_string(),
        }],
    }
}

/// What keeps one handler busy; a handler found stopped is shut down for its error.
async fn handler(slot: &mut Slot) -> Vec<Busy> {
    let handler = slot.label.clone();
    if let Some(error) = &slot.stopped {
        return vec![Busy::Stopped {
            handler,
            error: error.clone(),
        }];
    }
    let Some(running) = &slot.running else {
        return vec![Busy::Restarting { handler }];
    };
    if running.is_finished() {
        let error = match slot.running.take().map(|r| r.shutdown()) {
            Some(shutdown) => match shutdown.await {
                Err(e) => e.to_string(),
                Ok(_) => "it ended".to_string(),
            },
            None => "it ended".to_string(),
        };
        slot.stopped = Some(error.clone());
        return vec![Busy::Stopped { handler, error }];
    }
    let lags = match running.committed_lag(LOOK_TIMEOUT).await {
        Ok(lags) => lags,
        Err(e) => {
            let what = format!("the committed offsets of {handler}");
            return vec![Busy::Unreadable {
                what,
                error: e.to_string(),
            }];
        }
    };
    if lags.is_empty() {
        return vec![Busy::Unassigned { handler }];
    }
    lags.into_iter()
        .filter(|l| l.lag > 0)
        .map(|l| Busy::Behind {
            handler: handler.clone(),
            topic: l.topic,
            partition: l.partition,
            lag: l.lag,
        })
        .collect()
}
