//! How the harness watches its handlers: a consume layer ([`Watch`], see
//! [`crate::middleware`]) added to each of them, innermost, so it sees what the handler's
//! attempt came to right after its database transaction committed and before the lane
//! stores the offset. It records what was handled, and a planned crash freezes the
//! handler exactly there until the harness aborts it
//! ([`RunningHandler::abort`](crate::handler::RunningHandler::abort): nothing more is
//! stored or committed) and starts it again. A held partition's messages wait here,
//! before their attempt, until released.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use crate::middleware::{ConsumeContext, ConsumeLayer, Consumed, Next, Outcome};

/// A message a handler finished: where it was read, and the group that handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handled {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A crash planned for the handler of a topic (namespaced), after its next commits.
struct PlannedCrash {
    topic: String,
    left: u32,
}

/// What the harness hears from its handlers.
pub(crate) struct Observer {
    handled: Mutex<Vec<Handled>>,
    crashes: Mutex<Vec<PlannedCrash>>,
    /// The handlers (by slot) that crashed, for the harness to restart.
    crashed: mpsc::UnboundedSender<usize>,
    /// Partitions (namespaced topic, partition) whose messages wait before their attempt.
    held: Mutex<HashSet<(String, i32)>>,
    released: Notify,
}

impl Observer {
    /// A new observer; the receiver hears which slot's handler crashed.
    pub(crate) fn new() -> (Arc<Observer>, mpsc::UnboundedReceiver<usize>) {
        let (crashed, rx) = mpsc::unbounded_channel();
        let observer = Observer {
            handled: Mutex::default(),
            crashes: Mutex::default(),
            crashed,
            held: Mutex::default(),
            released: Notify::new(),
        };
        (Arc::new(observer), rx)
    }

    /// Everything finished so far, in the order the commits happened.
    pub(crate) fn handled(&self) -> Vec<Handled> {
        self.handled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The handler of `topic` (namespaced) crashes after its `after`-th commit from now.
    pub(crate) fn plan_crash(&self, topic: String, after: u32) {
        let mut crashes = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        crashes.push(PlannedCrash {
            topic,
            left: after.max(1),
        });
    }

    /// Messages of `partition` of `topic` (namespaced) wait before their attempt.
    pub(crate) fn hold(&self, topic: String, partition: i32) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((topic, partition));
    }

    /// Lets the messages of `partition` of `topic` go on.
    pub(crate) fn release(&self, topic: &str, partition: i32) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&(topic.to_string(), partition));
        drop(held);
        self.released.notify_waiters();
    }

    fn is_held(&self, topic: &str, partition: i32) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .any(|(t, p)| *p == partition && of_topic(topic, t))
    }

    /// Waits while a partition of `ctx`'s messages is held.
    async fn wait_while_held(&self, ctx: &ConsumeContext<'_>) {
        loop {
            // Created before the check, so a release in between is not missed.
            let released = self.released.notified();
            let held = ctx
                .messages()
                .iter()
                .any(|m| self.is_held(m.topic(), m.partition()));
            if !held {
                return;
            }
            released.await;
        }
    }

    /// Counts a commit on `topic`; whether it is the one to crash after.
    fn crash_now(&self, topic: &str) -> bool {
        let mut crashes = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = crashes.iter().position(|c| of_topic(topic, &c.topic)) else {
            return false;
        };
        crashes[i].left -= 1;
        if crashes[i].left > 0 {
            return false;
        }
        crashes.remove(i);
        true
    }
}

/// Whether a record read from `read` is of `topic`: the topic itself or a retry tier.
pub(crate) fn of_topic(read: &str, topic: &str) -> bool {
    read == topic
        || read
            .strip_prefix(topic)
            .is_some_and(|rest| rest.starts_with(".retry-"))
}

/// The layer the harness adds to the handler in slot `slot`.
pub(crate) struct Watch {
    pub slot: usize,
    pub observer: Arc<Observer>,
}

impl ConsumeLayer for Watch {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        self.observer.wait_while_held(ctx).await;
        let consumed = next.run().await;
        // A batch the inbox found duplicates in does not say which: none is recorded.
        let committed = matches!(
            consumed,
            Ok(Outcome::Handled) | Ok(Outcome::Batch { duplicates: 0, .. })
        );
        if !committed {
            return consumed;
        }
        let mut crash = false;
        for m in ctx.messages() {
            crash |= self.observer.crash_now(m.topic());
            let handled = Handled {
                group: ctx.group().to_string(),
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let mut all = self
                .observer
                .handled
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            all.push(handled);
        }
        if crash {
            // As a crash right here: the commit happened, the offset is not stored; the
            // harness aborts this handler (dropping this future) and starts it again.
            let _ = self.observer.crashed.send(self.slot);
            std::future::pending::<()>().await;
        }
        consumed
    }
}
