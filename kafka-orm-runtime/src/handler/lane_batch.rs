//! Batch mode of a lane: up to N messages in one transaction with one inbox statement;
//! a failing batch is retried message by message.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::FutureExt;
use sea_orm::TransactionTrait;
use tracing::Instrument;

use super::lane::{Done, Lane, Work};
use super::{Counters, Handler};
use crate::consumer::Delivery;
use crate::inbox;
use crate::telemetry::trace::{self, Messaging, Operation};
use crate::topic::Consumable;

impl<T: Consumable, H: Handler<T>> Lane<T, H> {
    /// Batch mode: one transaction for all of `works`; on any failure, one by one.
    pub(super) async fn batch(&self, works: Vec<Work<T>>) {
        let places: Vec<_> = works.iter().map(Work::place).collect();
        if self.try_batch(&works).await {
            for place in places {
                self.finish(place, Done::Finished);
            }
            return;
        }
        for w in works {
            let place = w.place();
            let done = self.one(w).await;
            self.finish(place, done);
        }
    }

    /// Returns whether the whole batch committed (all decodable, handled or duplicates).
    async fn try_batch(&self, works: &[Work<T>]) -> bool {
        let deliveries: Vec<&Delivery<T>> = works
            .iter()
            .filter_map(|w| match w {
                Work::Message { delivery, .. } => Some(delivery),
                Work::Undecodable { .. } => None,
            })
            .collect();
        if deliveries.len() != works.len() {
            return false;
        }
        // A lane reads one partition: of the topic, or of one of its retry tiers.
        let topic = deliveries.first().map_or("", |d| d.topic.as_str());
        let span = tracing::info_span!(
            "kafka_orm.handle_batch",
            topic,
            messages = deliveries.len(),
            otel.kind = tracing::field::Empty,
        );
        let attrs = Messaging {
            destination: topic,
            group: Some(&self.group),
            batch: Some(deliveries.len()),
            ..Messaging::default()
        };
        trace::describe(&span, Operation::Process, &attrs);
        for d in &deliveries {
            trace::link(&span, &d.headers);
        }
        self.batch_transaction(&deliveries).instrument(span).await
    }

    /// One transaction for `deliveries`: their inbox rows, the handler on the new ones, commit.
    async fn batch_transaction(&self, deliveries: &[&Delivery<T>]) -> bool {
        let _permit = self.permits.acquire().await;
        let started = Instant::now();
        let Ok(txn) = self.db.begin().await else {
            return false;
        };
        // One statement records the whole batch in the inbox; only new messages are handled.
        let Ok(fresh) = inbox::record_batch(&txn, &self.group, deliveries).await else {
            let _ = txn.rollback().await;
            return false;
        };
        let new: Vec<&Delivery<T>> = deliveries
            .iter()
            .zip(&fresh)
            .filter_map(|(d, f)| f.then_some(*d))
            .collect();
        let duplicates = (deliveries.len() - new.len()) as u64;
        if !new.is_empty() {
            let call = AssertUnwindSafe(self.handler.handle_batch(&txn, &new)).catch_unwind();
            if !matches!(call.await, Ok(Ok(()))) {
                let _ = txn.rollback().await;
                return false;
            }
        }
        if txn.commit().await.is_err() {
            return false;
        }
        let c = &self.shared.counters;
        c.handled.fetch_add(new.len() as u64, Ordering::Relaxed);
        c.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        Counters::bump(&c.transactions);
        c.latency.record(started.elapsed());
        let m = &self.shared.metrics;
        m.handled.increment(new.len() as u64);
        m.duplicates.increment(duplicates);
        m.processed(started.elapsed(), true);
        true
    }
}
