//! A lane's way out for a failed message: the retry tier or the dead-letter topic, once
//! (see [`super::forward`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};

use super::apply::Apply;
use super::dlq::RawRecord;
use super::forward::Forward;
use super::lane::{Done, Lane, Place};
use crate::error::Error;
use crate::topic::Consumable;

impl<T: Consumable, H: Apply<T>> Lane<T, H> {
    /// Sends `record` to `topic` in one Kafka transaction with the source offset, once
    /// the message is its partition's watermark head (see [`super::forward`]); retries
    /// until that works or the partition is gone.
    pub(super) async fn forward_once(&self, topic: &str, record: &RawRecord, place: Place) -> Done {
        let Some(forwarder) = &self.forwarder else {
            unreachable!("a forwarder exists whenever the topic has a dlq or retry topics")
        };
        let mut streak = 0;
        loop {
            match self.shared.is_head(place.tp, place.epoch, place.offset) {
                None => return Done::Abandoned,
                Some(false) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Some(true) if self.shared.aborted.load(Ordering::SeqCst) => {
                    return Done::Abandoned;
                }
                Some(true) => {}
            }
            let result = match self.commit_stored().await {
                Ok(group) => {
                    let offsets = self.shared.tpl(place.tp, Some(place.offset + 1));
                    forwarder
                        .send(Forward {
                            topic,
                            record,
                            offsets,
                            group,
                        })
                        .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Done::Finished,
                Err(e) => {
                    streak += 1;
                    tracing::warn!(error = %e, topic, "cannot forward the failed message; retrying");
                    if self.abandoned(place) {
                        return Done::Abandoned;
                    }
                    tokio::time::sleep(self.retry.backoff.delay_now(streak)).await;
                }
            }
        }
    }

    /// Commits the stored offsets synchronously (so no later auto-commit of an older
    /// offset undoes a transactional commit), and returns the group metadata.
    async fn commit_stored(
        &self,
    ) -> crate::error::Result<rdkafka::consumer::ConsumerGroupMetadata> {
        let client = Arc::clone(&self.client);
        tokio::task::spawn_blocking(move || {
            let c = client.get();
            match c.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                Err(e)
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => {}
                Err(e) => return Err(Error::kafka("committing offsets before forwarding", e)),
            }
            c.group_metadata()
                .ok_or_else(|| Error::Config("the handler's consumer has no group metadata".into()))
        })
        .await
        .map_err(|_| Error::Shutdown)?
    }
}
