//! The handler's own telemetry as a consume layer, the outermost one: its span
//! (`kafka_orm.handle` or `kafka_orm.handle_batch`, opened by the lane) around the
//! registered layers and the attempt, and the counters and metrics of what came back.
//! Called directly, not through a pointer, so a handler without registered layers boxes
//! nothing (see [`crate::middleware`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{Instrument, Span};

use super::Counters;
use super::apply::{Applied, Attempt, BatchApplied};
use super::partitions::Shared;
use crate::middleware::{
    ConsumeContext, ConsumeLayer, Consumed, DatabaseUnavailable, Next, Outcome,
};

/// The built-in layer of one invocation (run in its span: see [`run`]).
struct Observe<'l> {
    shared: &'l Shared,
    /// Whether the handler runs in a transaction (counted in `transactions`).
    database: bool,
}

impl ConsumeLayer for Observe<'_> {
    async fn handle(&self, ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        let started = Instant::now();
        let consumed = next.run().await;
        self.record(ctx, &consumed, started);
        consumed
    }
}

impl Observe<'_> {
    fn record(&self, ctx: &ConsumeContext<'_>, consumed: &Consumed, started: Instant) {
        let (c, m) = (&self.shared.counters, &self.shared.metrics);
        match consumed {
            Ok(Outcome::Duplicate) => {
                Counters::bump(&c.duplicates);
                m.duplicates.increment(1);
            }
            Ok(Outcome::Handled) => self.handled(1, 0, started),
            Ok(Outcome::Batch {
                handled,
                duplicates,
            }) => self.handled(*handled, *duplicates, started),
            Ok(_) => {}
            // A failed batch is handled again message by message: counted there.
            Err(e) if !ctx.is_batch() && !e.is::<DatabaseUnavailable>() => {
                m.processed(started.elapsed(), false)
            }
            Err(_) => {}
        }
    }

    fn handled(&self, handled: u64, duplicates: u64, started: Instant) {
        let (c, m) = (&self.shared.counters, &self.shared.metrics);
        c.handled.fetch_add(handled, Ordering::Relaxed);
        if duplicates > 0 {
            c.duplicates.fetch_add(duplicates, Ordering::Relaxed);
            m.duplicates.increment(duplicates);
        }
        if self.database {
            Counters::bump(&c.transactions);
        }
        c.latency.record(started.elapsed());
        m.handled.increment(handled);
        m.processed(started.elapsed(), true);
    }
}

/// Runs `attempt` (created, not yet polled) through the built-in layer and the handler's
/// registered layers, in `span`; how it ended, as the lane sees it.
pub(super) async fn run<'a>(
    shared: &'a Shared,
    database: bool,
    span: Span,
    ctx: &'a ConsumeContext<'a>,
    attempt: Pin<&'a mut (dyn Future<Output = Consumed> + Send + 'a)>,
) -> Result<Outcome, Attempt> {
    let observe = Observe { shared, database };
    let next = Next::new(shared.config.layers.as_slice(), ctx, attempt);
    let observed = observe.handle(ctx, next).instrument(span).await;
    observed.map_err(|e| match e.downcast::<DatabaseUnavailable>() {
        Ok(db) => Attempt::Infra(db.0),
        Err(e) => Attempt::Handler(e),
    })
}

/// One attempt at one message, as the layers see it.
pub(super) async fn one(applied: impl Future<Output = Result<Applied, Attempt>>) -> Consumed {
    match applied.await {
        Ok(Applied::Handled) => Ok(Outcome::Handled),
        Ok(Applied::Duplicate) => Ok(Outcome::Duplicate),
        Err(e) => Err(erased(e)),
    }
}

/// One batch, as the layers see it.
pub(super) async fn batch(
    applied: impl Future<Output = Result<BatchApplied, Attempt>>,
) -> Consumed {
    match applied.await {
        Ok(b) => Ok(Outcome::Batch {
            handled: b.handled,
            duplicates: b.duplicates,
        }),
        Err(e) => Err(erased(e)),
    }
}

fn erased(e: Attempt) -> crate::handler::HandlerError {
    match e {
        Attempt::Infra(e) => Box::new(DatabaseUnavailable(e)),
        Attempt::Handler(e) => e,
    }
}
