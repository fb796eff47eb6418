//! A message whose type header names a type the topic does not carry, under the handler's
//! [`OnUnknownType`] policy. It was never decoded (see [`crate::message_type`]).

use super::dlq::RawRecord;
use super::lane::{Done, Lane};
use crate::error::Error;
use crate::message_type::{self, OnUnknownType};
use crate::topic::Topic;

impl<T: Topic, H> Lane<T, H> {
    /// Skips the message or stops the handler, as the policy says; `None` to dead-letter it
    /// like an undecodable payload (the default, on a topic with a `dlq`).
    pub(super) fn unknown_type(&self, raw: &RawRecord) -> Option<Done> {
        let found = message_type::of(&raw.headers).map(|n| n.into_owned());
        match self.shared.config.on_unknown_type {
            OnUnknownType::DeadLetter if self.dlq_topic.is_some() => None,
            // Counted in `HandlerStats::unknown_types` when it was polled.
            OnUnknownType::Skip => {
                tracing::warn!(
                    topic = %raw.topic, partition = raw.partition, offset = raw.offset,
                    message_type = found.as_deref().unwrap_or("<none>"),
                    "a message of a type the topic does not carry; skipped (OnUnknownType::Skip)"
                );
                Some(Done::Finished)
            }
            _ => {
                let _ = self.fatal.send(Error::UnknownType {
                    topic: raw.topic.clone(),
                    partition: raw.partition,
                    offset: raw.offset,
                    type_name: T::SPEC.type_name,
                    found,
                    expected: T::SPEC.message_types,
                    payload: raw.payload.clone(),
                });
                Some(Done::Abandoned)
            }
        }
    }
}
