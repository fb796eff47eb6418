//! Runtime of [kafka-orm](https://docs.rs/kafka-orm): the context, typed producers and
//! consumers, the registry of topics, codecs and errors.
//!
//! Users depend on the `kafka-orm` facade crate, which re-exports this crate's public API;
//! the items here are documented there.
#![warn(missing_docs)]

pub mod backoff;
pub mod codec;
pub(crate) mod connect;
pub mod consumer;
pub mod context;
pub mod defaults;
pub mod dlq;
pub mod error;
pub mod handler;
pub(crate) mod headers;
pub mod health;
pub(crate) mod ident;
pub mod inbox;
pub mod key;
pub mod message_type;
pub mod middleware;
mod offthread;
pub mod ops;
pub mod outbox;
pub mod producer;
pub mod registry;
pub mod schema;
pub mod security;
pub mod service;
pub(crate) mod tables;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topic;
pub mod transactional;
pub(crate) mod util;

pub use codec::{Codec, Json};
pub use consumer::{Delivery, TopicConsumer};
pub use context::{KafkaOrm, KafkaOrmBuilder, TopicHandle};
pub use error::{Error, Result};
pub use health::{Health, HealthState, Reason};
pub use key::{DedupPart, DedupValue, KeyPart};
pub use message_type::{DecodeError, Member, OnUnknownType};
pub use outbox::relay::{OutboxRelay, OutboxRelayBuilder, OutboxStatus, RelayStats};
pub use producer::Headers;
pub use registry::TopicRegistration;
pub use security::{Scram, Tls};
pub use service::{Produce, Publish};
pub use topic::{Consumable, Direction, InboxTopic, OutboxTopic, Producible, Topic, TopicSpec};
