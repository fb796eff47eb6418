//! A service's handlers, run together: [`KafkaOrm::host`] lists them, one call starts them
//! all, one [`Host::shutdown`] (or SIGTERM / Ctrl-C with
//! [`HostBuilder::run_until_signal`]) stops them all, and a handler that stops on its own is
//! reported ([`Host::failed`], [`Host::health`], and an error-level log), never silent.
//!
//! ```text
//! orm.host()
//!     .handler(orm.topic::<OrderCreated>().handler(bill).concurrency(8))
//!     .handler(orm.topic::<PageViewed>().handler_without_database(count_view))
//!     .run_until_signal()
//!     .await?;
//! ```

use std::future::Future;
use std::pin::Pin;

use futures_util::future::{join_all, select_all};

use super::apply::Apply;
use super::{HandlerBuilder, HandlerStats, RunningHandler};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::topic::Consumable;

/// A handler's start, not yet begun.
type Start = Pin<Box<dyn Future<Output = Result<RunningHandler>> + Send>>;

impl KafkaOrm {
    /// A host for this service's handlers: add each with [`HostBuilder::handler`], then
    /// start them all with [`spawn`](HostBuilder::spawn),
    /// [`run_until`](HostBuilder::run_until) or
    /// [`run_until_signal`](HostBuilder::run_until_signal).
    pub fn host(&self) -> HostBuilder {
        HostBuilder { starts: Vec::new() }
    }
}

/// The handlers of a service, to start together; get one with [`KafkaOrm::host`].
#[must_use = "call `.spawn()`, `.run_until(..)` or `.run_until_signal()` to start the handlers"]
pub struct HostBuilder {
    starts: Vec<Start>,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("handlers", &self.starts.len())
            .finish()
    }
}

impl HostBuilder {
    /// Adds a configured handler (as it would be spawned on its own).
    pub fn handler<T: Consumable, H: Apply<T>>(mut self, handler: HandlerBuilder<T, H>) -> Self {
        self.starts.push(Box::pin(handler.spawn()));
        self
    }

    /// Starts every handler at once. If one cannot start, those that did are shut down and
    /// its error is returned.
    pub async fn spawn(self) -> Result<Host> {
        let mut handlers = Vec::with_capacity(self.starts.len());
        let mut error = None;
        for started in join_all(self.starts).await {
            match started {
                Ok(h) => handlers.push(h),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        match error {
            None => Ok(Host { handlers }),
            Some(e) => {
                let _ = (Host { handlers }).shutdown().await;
                Err(e)
            }
        }
    }

    /// Starts every handler and runs until `shutdown` completes, then shuts them all down
    /// gracefully and returns their final stats, in the order they were added. If a handler
    /// stops on its own first, the others are shut down and its error is returned.
    pub async fn run_until<S: Future<Output = ()>>(self, shutdown: S) -> Result<Vec<HandlerStats>> {
        let mut host = self.spawn().await?;
        let failure = tokio::select! {
            _ = shutdown => None,
            error = host.failed() => Some(error),
        };
        let stats = host.shutdown().await;
        match failure {
            Some(error) => Err(error),
            None => stats,
        }
    }

    /// [`run_until`](Self::run_until) SIGTERM or Ctrl-C (SIGINT), what a container
    /// orchestrator sends before killing the process. The signal handlers are installed
    /// before the handlers start.
    pub async fn run_until_signal(self) -> Result<Vec<HandlerStats>> {
        let signal = shutdown_signal()?;
        self.run_until(signal).await
    }
}

/// A service's handlers, running; see [`KafkaOrm::host`].
#[derive(Debug)]
pub struct Host {
    handlers: Vec<RunningHandler>,
}

impl Host {
    /// The running handlers, in the order they were added (for their stats, lag and health).
    pub fn handlers(&self) -> &[RunningHandler] {
        &self.handlers
    }

    /// Every handler's counters so far, in the order they were added.
    pub fn stats(&self) -> Vec<HandlerStats> {
        self.handlers.iter().map(RunningHandler::stats).collect()
    }

    /// Resolves when any handler stops on its own, with its error (see
    /// [`RunningHandler::stopped`]); the others keep running. Cancel-safe; called again, it
    /// waits for the next one.
    pub async fn failed(&mut self) -> Error {
        if self.handlers.is_empty() {
            return std::future::pending().await;
        }
        let stopped = self.handlers.iter_mut().map(|h| Box::pin(h.stopped()));
        select_all(stopped).await.0
    }

    /// Shuts every handler down at once (each bounded by its shutdown timeout) and returns
    /// their final stats, in the order they were added, or the first error that stopped one.
    pub async fn shutdown(self) -> Result<Vec<HandlerStats>> {
        join_all(self.handlers.into_iter().map(RunningHandler::shutdown))
            .await
            .into_iter()
            .collect()
    }

    /// Kills every handler at once, as a crash would (see [`RunningHandler::abort`]).
    pub fn abort(self) {
        self.handlers.into_iter().for_each(RunningHandler::abort);
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C); installed now, not when first polled.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Error::Config(format!("cannot listen for {name}: {e}")))
        };
        let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
        let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting the handlers down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C; shutting the handlers down");
            }
            tracing::info!(signal = "Ctrl-C", "shutting the handlers down");
        })
    }
}
