//! Operations: what the `kafka-orm` CLI runs, as a library, for tools of your own.
//!
//! - [`TopicsFile`]: a service's topics as JSON ([`KafkaOrm::registry_json`]), read back
//!   into specs ([`TopicEntry::leak_spec`]) by a tool that cannot see the Rust types;
//! - [`KafkaOrm::group_lag`]: a consumer group's lag, read from outside the group;
//! - [`outbox_status`], [`outbox_retry`] (make failing rows due now) and
//!   [`missing_outbox_tables`], with nothing but the database (a broker that is down is
//!   when an outbox's backlog matters most);
//! - with [`KafkaOrm::dlq_of`] (see [`crate::dlq`]), the dead-letter views of the binary's
//!   own topics for topics read from a file.
//!
//! [`KafkaOrm::registry_json`]: crate::KafkaOrm::registry_json
//! [`KafkaOrm::group_lag`]: crate::KafkaOrm::group_lag
//! [`KafkaOrm::dlq_of`]: crate::KafkaOrm::dlq_of

mod lag;
mod outbox;
mod topics_file;

pub use outbox::{RetryRows, missing_outbox_tables, outbox_retry, outbox_status};
pub use topics_file::{
    InboxEntry, OutboxEntry, RetryEntry, TOPICS_FILE_VERSION, TopicEntry, TopicsFile,
};
