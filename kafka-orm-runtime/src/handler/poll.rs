//! The handler's poll thread: receives from librdkafka on a thread of its own and hands
//! each message, tagged with its partition's assignment generation, to the async
//! dispatcher. Rebalance callbacks run here, so the revoke drain may block until the
//! lanes finish without holding up any async runtime worker (a current-thread runtime
//! included).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc;

use super::partitions::{RunnerContext, Shared, Tp};
use crate::offthread::ConsumerGuard;

/// The handler's consumer.
pub(crate) type Client = BaseConsumer<RunnerContext>;
/// It, closed off-thread when the last user lets go.
pub(crate) type ClientGuard = ConsumerGuard<Client>;

/// Messages buffered between the poll thread and the dispatcher.
pub(crate) const POLL_BUFFER: usize = 1024;

/// How long one poll waits, so the thread notices a stop quickly.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// A received message of an assigned partition, with the generation it was polled in.
pub(crate) struct Polled {
    pub msg: OwnedMessage,
    pub tp: Tp,
    pub epoch: u64,
}

/// Starts the poll thread; it ends when `stop` is set, the handler is aborted or the
/// dispatcher is gone.
pub(crate) fn spawn(
    client: Arc<ClientGuard>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Polled>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kafka-orm-handler-poll".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) && !shared.is_aborted() {
                let msg = match client.get().poll(POLL_WAIT) {
                    None => continue,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, topic = %shared.topic, "consumer error");
                        continue;
                    }
                };
                let Some(index) = shared.index_of(msg.topic()) else {
                    continue;
                };
                let tp = (index, msg.partition());
                // A message of a partition being revoked (or already gone) is left to
                // its next owner.
                let Some(epoch) = shared.epoch_of(tp) else {
                    continue;
                };
                let polled = Polled {
                    msg: msg.detach(),
                    tp,
                    epoch,
                };
                if tx.blocking_send(polled).is_err() {
                    break;
                }
            }
        })
}
