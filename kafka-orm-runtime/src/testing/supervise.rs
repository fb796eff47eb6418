//! The harness's handlers: each started from its factory with the harness's [`Watch`]
//! layer, and started again from it after a planned crash.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use super::hook::{Observer, Watch};
use crate::context::KafkaOrm;
use crate::error::Result;
use crate::handler::{Apply, HandlerBuilder, RunningHandler};
use crate::topic::Consumable;

/// A future that starts a handler.
type Started<'a> = Pin<Box<dyn Future<Output = Result<RunningHandler>> + Send + 'a>>;

/// A handler factory, type-erased.
pub(super) trait Spawn: Send + Sync {
    /// Builds the handler from the factory, adds `watch`, starts it.
    fn spawn<'a>(&'a self, orm: &'a KafkaOrm, watch: Watch) -> Started<'a>;
    /// The topic it handles (namespaced) and its type's name.
    fn topic(&self, orm: &KafkaOrm) -> (String, &'static str);
}

/// A factory `Fn(&KafkaOrm) -> HandlerBuilder<T, H>`.
pub(super) struct Factory<F, T, H>(pub F, pub PhantomData<fn() -> (T, H)>);

impl<F, T, H> Spawn for Factory<F, T, H>
where
    F: Fn(&KafkaOrm) -> HandlerBuilder<T, H> + Send + Sync,
    T: Consumable,
    H: Apply<T>,
{
    fn spawn<'a>(&'a self, orm: &'a KafkaOrm, watch: Watch) -> Started<'a> {
        Box::pin(async move { (self.0)(orm).layer(watch).spawn().await })
    }

    fn topic(&self, orm: &KafkaOrm) -> (String, &'static str) {
        (orm.topic_name(T::SPEC), T::SPEC.type_name)
    }
}

/// One handler of the harness.
pub(super) struct Slot {
    pub factory: Arc<dyn Spawn>,
    /// The topic it handles (namespaced).
    pub topic: String,
    /// How [`Busy`](super::Busy) names it: its type, its topic and its place.
    pub label: String,
    /// `None` while it restarts, or once it stopped (then `stopped` says why).
    pub running: Option<RunningHandler>,
    pub stopped: Option<String>,
    pub restarts: u32,
}

/// The harness's handlers, shared with the task that restarts them.
pub(super) type Slots = Arc<Mutex<Vec<Slot>>>;

/// Starts every factory's handler.
pub(super) async fn start_all(
    orm: &KafkaOrm,
    observer: &Arc<Observer>,
    factories: Vec<Arc<dyn Spawn>>,
) -> Result<Vec<Slot>> {
    let mut slots = Vec::with_capacity(factories.len());
    for (slot, factory) in factories.into_iter().enumerate() {
        let observer = Arc::clone(observer);
        let running = factory.spawn(orm, Watch { slot, observer }).await?;
        let (topic, type_name) = factory.topic(orm);
        slots.push(Slot {
            label: format!("handler #{slot} of `{type_name}` on `{topic}`"),
            factory,
            topic,
            running: Some(running),
            stopped: None,
            restarts: 0,
        });
    }
    Ok(slots)
}

/// Restarts the handler of each slot that crashed, until the harness goes.
pub(super) async fn restart_crashed(
    orm: KafkaOrm,
    observer: Arc<Observer>,
    slots: Slots,
    mut crashed: mpsc::UnboundedReceiver<usize>,
) {
    while let Some(index) = crashed.recv().await {
        let mut slots = slots.lock().await;
        let Some(slot) = slots.get_mut(index) else {
            continue;
        };
        if let Some(running) = slot.running.take() {
            running.abort();
        }
        let watch = Watch {
            slot: index,
            observer: Arc::clone(&observer),
        };
        match slot.factory.spawn(&orm, watch).await {
            Ok(running) => {
                slot.running = Some(running);
                slot.restarts += 1;
                tracing::info!(handler = %slot.label, "test harness: handler restarted after a planned crash");
            }
            Err(e) => slot.stopped = Some(format!("restarting after the planned crash: {e}")),
        }
    }
}
