//! Batch mode of a lane: up to N messages at once (with a database, in one transaction
//! with one inbox statement); a failing batch is retried message by message.

use tracing::Span;

use super::apply::Apply;
use super::lane::{Done, Lane, Work};
use super::observe;
use crate::consumer::Delivery;
use crate::middleware::ConsumeContext;
use crate::telemetry::trace::{self, Messaging, Operation};
use crate::topic::Consumable;

impl<T: Consumable, H: Apply<T>> Lane<T, H> {
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

    /// Returns whether the whole batch went through (all decodable, handled or duplicates).
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
        self.batch_transaction(&deliveries, span).await
    }

    /// `deliveries` at once, as the handler applies them (see [`super::apply`]), in `span`
    /// and through the consume layers; whether they all went through.
    async fn batch_transaction(&self, deliveries: &[&Delivery<T>], span: Span) -> bool {
        let _permit = self.permits.acquire().await;
        let ctx = ConsumeContext::batch(&self.group, deliveries);
        let applied = (self.handler).apply_batch(self.db.as_ref(), &self.group, deliveries);
        let attempt = std::pin::pin!(observe::batch(applied));
        observe::run(&self.shared, H::DATABASE, span, &ctx, attempt)
            .await
            .is_ok()
    }
}
