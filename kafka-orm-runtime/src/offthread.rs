//! Dropping librdkafka clients off the async runtime: destroying a consumer (leaving the
//! group) or a producer (flushing) can block on the broker, which must never stall a
//! runtime worker. One guard for the plain stream's and the handler's consumers and the
//! transactional pipeline's producer and consumer.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};

/// Owns a client; when dropped, runs `before_drop` (e.g. unsubscribe) and drops the client
/// on a thread of its own.
pub(crate) struct OffThread<C: Send + Sync + 'static> {
    client: Option<Arc<C>>,
    before_drop: fn(&C),
}

impl<C: Send + Sync + 'static> OffThread<C> {
    /// Guards `client`; `before_drop` runs on the closing thread first.
    pub fn new(client: C, before_drop: fn(&C)) -> Self {
        OffThread {
            client: Some(Arc::new(client)),
            before_drop,
        }
    }

    /// The client (shared, for blocking calls on other threads).
    pub fn get(&self) -> &Arc<C> {
        self.client.as_ref().expect("client used after drop")
    }

    /// Takes the client out, for a close the caller bounds itself.
    pub fn take(&mut self) -> Option<Arc<C>> {
        self.client.take()
    }
}

impl<C: Send + Sync + 'static> Drop for OffThread<C> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let before_drop = self.before_drop;
            let _ = std::thread::Builder::new()
                .name("kafka-orm-close".into())
                .spawn(move || {
                    before_drop(&client);
                    drop(client);
                });
        }
    }
}

/// Runs `close` (unsubscribing, dropping clients: calls that can wait on the broker) on a
/// blocking thread and waits at most `timeout` for it; past that the close goes on in the
/// background and a warning names `what`. Whether it finished in time.
pub(crate) async fn close_within(
    timeout: Duration,
    what: &str,
    close: impl FnOnce() + Send + 'static,
) -> bool {
    let closing = tokio::task::spawn_blocking(close);
    let in_time = tokio::time::timeout(timeout, closing).await.is_ok();
    if !in_time {
        tracing::warn!(
            ?timeout,
            "{what} did not close in time; left to finish in the background"
        );
    }
    in_time
}

/// A consumer, unsubscribed before it is destroyed.
pub(crate) type ConsumerGuard<K> = OffThread<K>;

/// Guards a consumer so that it leaves its group off the runtime.
pub(crate) fn consumer_guard<K: Unsubscribe>(consumer: K) -> ConsumerGuard<K> {
    OffThread::new(consumer, K::unsubscribe_now)
}

/// A consumer the guard can unsubscribe.
pub(crate) trait Unsubscribe: Send + Sync + 'static {
    fn unsubscribe_now(&self);
}

impl<C: ConsumerContext + 'static> Unsubscribe for StreamConsumer<C> {
    fn unsubscribe_now(&self) {
        self.unsubscribe();
    }
}

impl<C: ConsumerContext + 'static> Unsubscribe for BaseConsumer<C> {
    fn unsubscribe_now(&self) {
        self.unsubscribe();
    }
}
