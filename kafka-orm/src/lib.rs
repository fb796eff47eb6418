//! # kafka-orm
//!
//! Map Rust structs to Kafka topics the way an ORM maps structs to tables.
#![doc = include_str!("../docs/overview.md")]
#![warn(missing_docs)]

mod entity;

#[doc = include_str!("../docs/topic.md")]
pub use kafka_orm_macros::Topic;

pub use kafka_orm_runtime::codec::{self, Codec, CodecError, Json, Variants};
pub use kafka_orm_runtime::consumer::{Delivery, TopicConsumer};
pub use kafka_orm_runtime::context::{KafkaOrm, KafkaOrmBuilder, TopicHandle};
pub use kafka_orm_runtime::error::{Error, Result};
pub use kafka_orm_runtime::handler::{
    BatchFuture, Concurrency, FnBatchHandler, FnHandler, Handler, HandlerBuilder, HandlerError,
    HandlerFuture, HandlerStats, HandlerWithoutDatabase, Host, HostBuilder, OnExhausted,
    PartitionLag, RunningHandler,
};
pub use kafka_orm_runtime::handler::{Routes, RoutesWithoutDatabase};
pub use kafka_orm_runtime::health::{self, Health, HealthState, Reason};
pub use kafka_orm_runtime::key::{ColumnKind, DedupPart, DedupValue, KeyPart};
pub use kafka_orm_runtime::message_type::{self, DecodeError, Member, OnUnknownType};
pub use kafka_orm_runtime::outbox::relay::{
    FailingRow, OutboxRelay, OutboxRelayBuilder, OutboxStatus, RELAY_EPOCH_HEADER, RelayStats,
};
pub use kafka_orm_runtime::producer::{
    DeliveryReport, Headers, MESSAGE_ID_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER, TYPE_HEADER,
};
pub use kafka_orm_runtime::registry::{self, TopicRegistration};
pub use kafka_orm_runtime::security::{self, Scram, Tls};
pub use kafka_orm_runtime::service::{self, Produce, Publish};
pub use kafka_orm_runtime::topic::{
    Consumable, Direction, DlqSpec, InboxSpec, InboxTopic, OutboxSpec, OutboxTopic, Producible,
    RetrySpec, Topic, TopicSpec,
};
pub use kafka_orm_runtime::{defaults, handler, inbox, middleware, outbox, schema, telemetry};
pub use kafka_orm_runtime::{dlq, ops};
pub use transactional::{Outputs, PipelineStats, StatsHandle, TransactionalBuilder};

pub mod transactional {
    #![doc = include_str!("../docs/transactional.md")]
    pub use kafka_orm_runtime::transactional::*;
}

pub mod migrating_from_k_entity_framework {
    #![doc = include_str!("../docs/migrating-from-k-entity-framework.md")]
}

pub mod operations {
    #![doc = include_str!("../docs/operations.md")]
}

#[cfg(feature = "testing")]
pub mod testing {
    #![doc = include_str!("../docs/testing.md")]
    pub use kafka_orm_runtime::testing::*;
}

/// Re-exports of the crates kafka-orm is built on, so users need not pin matching versions.
pub mod deps {
    #[cfg(feature = "opentelemetry")]
    pub use ::opentelemetry;
    pub use ::rdkafka;
    pub use ::sea_orm;
    #[cfg(feature = "opentelemetry")]
    pub use ::tracing_opentelemetry;
}

/// `use kafka_orm::prelude::*;` brings the derive, the context and the traits into scope.
pub mod prelude {
    pub use crate::{Delivery, Error, KafkaOrm, Topic};
}

/// Used by the code `#[derive(Topic)]` generates. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    /// The standard prelude, imported by name into generated modules.
    pub mod prelude {
        pub use ::std::prelude::rust_2021::*;
    }
    pub use ::core::convert::From;
    pub use ::core::option::Option::{self, None, Some};
    pub use ::core::result::Result;
    pub use ::core::time::Duration;
    pub use ::core::{assert, concat, module_path};
    pub use ::inventory;
    pub use ::sea_orm;
    pub use ::serde;
    pub use ::std::vec::Vec;
    pub use kafka_orm_runtime::codec::{Codec, CodecError, Json, Variants};
    pub use kafka_orm_runtime::defaults;
    pub use kafka_orm_runtime::key::{self, ColumnType, DedupPart, DedupValue, KeyBytes, KeyPart};
    pub use kafka_orm_runtime::message_type::{self, DecodeError, Member};
    pub use kafka_orm_runtime::registry::TopicRegistration;
    pub use kafka_orm_runtime::topic::{
        Consumable, Direction, DlqSpec, InboxSpec, InboxTopic, OutboxSpec, OutboxTopic, Producible,
        RetrySpec, Topic, TopicSpec,
    };

    /// The entity hooks (`entity.rs`): the modules, or nothing without `entities`.
    pub use crate::{__inbox_entity as inbox_entity, __outbox_entity as outbox_entity};
    /// The runtime's descriptions of the outbox and inbox tables, which the hooks build
    /// the entities' fields from.
    pub use kafka_orm_runtime::{
        __inbox_columns as inbox_columns, __outbox_columns as outbox_columns,
    };
}

/// The README's examples, compiled as doc tests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
