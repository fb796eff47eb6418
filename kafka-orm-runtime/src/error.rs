//! The one error type of kafka-orm: every failure says what failed and where.

use std::time::Duration;

use crate::codec::CodecError;

/// Result with kafka-orm's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kafka-orm, each variant naming the topic, type,
/// partition or offset involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two types claim one Kafka topic in ways that cannot both hold: a topic that is also
    /// another topic's dead-letter topic. (Two types on one topic at all are
    /// [`Error::SharedTopic`].)
    #[error(
        "topic `{topic}` is claimed by both `{first}` and `{second}` with different settings: {difference}"
    )]
    DuplicateTopic {
        /// The contested topic.
        topic: String,
        /// The first type.
        first: String,
        /// The second type.
        second: String,
        /// What differs.
        difference: String,
    },

    /// Two or more types claim one Kafka topic without being one topic enum: a consumer of
    /// one would decode the others' messages. Reported by `build()`.
    #[error(
        "topic `{topic}` is claimed by {types}: one topic has one topic type, so put them in one enum, `#[derive(Topic)] #[topic(name = \"{topic}\")] enum Events {{ A(A), B(B) }}`, and use it in their place",
        types = backticked(.types)
    )]
    SharedTopic {
        /// The contested topic.
        topic: String,
        /// The Rust types claiming it, sorted.
        types: Vec<&'static str>,
    },

    /// A table or column name in a topic's spec cannot be used in SQL: a hand-written
    /// `impl Topic` gave a name that `#[derive(Topic)]` would have refused at compile time.
    /// Reported by `build()` (and [`crate::schema::statements`]) before any SQL runs.
    #[error(
        "`{type_name}` cannot be used: its spec's `{field}` is {name:?}, which is not a valid SQL name: {reason}"
    )]
    InvalidIdentifier {
        /// The Rust type whose spec holds the name.
        type_name: &'static str,
        /// Which part of the spec: `outbox.table`, `inbox.table`, `key_fields` or
        /// `inbox.dedup_fields`.
        field: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The builder was not given something it needs.
    #[error("kafka-orm is not configured: {0}")]
    Config(String),

    /// The context was asked for a feature that needs a database and has none.
    #[error(
        "`{operation}` on topic `{topic}` needs a database: call `.database(..)` on the builder"
    )]
    NoDatabase {
        /// What was attempted.
        operation: &'static str,
        /// The topic.
        topic: &'static str,
    },

    /// The service declares what it produces ([`KafkaOrmBuilder::produces`]), and this type
    /// is not among it: it was not sent.
    ///
    /// [`KafkaOrmBuilder::produces`]: crate::KafkaOrmBuilder::produces
    #[error(
        "this service does not produce `{type_name}` (topic `{topic}`): it declares what it produces with `.produces::<..>()` on the builder; add `.produces::<{short}>()` to produce it",
        short = last_segment(.type_name)
    )]
    NotProduced {
        /// The topic.
        topic: &'static str,
        /// The Rust type.
        type_name: &'static str,
    },

    /// The service declares what it consumes ([`KafkaOrmBuilder::consumes`]), and this type
    /// is not among it: no consumer was created.
    ///
    /// [`KafkaOrmBuilder::consumes`]: crate::KafkaOrmBuilder::consumes
    #[error(
        "this service does not consume `{type_name}` (topic `{topic}`): it declares what it consumes with `.consumes::<..>()` on the builder; add `.consumes::<{short}>()` to consume it",
        short = last_segment(.type_name)
    )]
    NotConsumed {
        /// The topic.
        topic: &'static str,
        /// The Rust type.
        type_name: &'static str,
    },

    /// A topic has no consumer group, and the context has no default group.
    #[error(
        "topic `{topic}` has no consumer group: add `group = \"..\"` to `#[topic(..)]` or call `.group(..)` on the builder"
    )]
    NoGroup {
        /// The topic.
        topic: &'static str,
    },

    /// The broker could not be reached in time.
    #[error("cannot reach Kafka at `{bootstrap}` within {timeout:?}: {reason}")]
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// How long we waited.
        timeout: Duration,
        /// The last error seen.
        reason: String,
    },

    /// The broker refused the SASL credentials (a wrong user name or password, an unknown
    /// SCRAM user, a mechanism the listener does not enable). Reported by `build()` as soon
    /// as librdkafka sees it, within the connect timeout; it does not heal by waiting.
    #[error(
        "authentication failed at Kafka `{bootstrap}` (SASL {mechanism}{user}): {reason}; check the user name and password (Confluent Cloud: the API key and secret) and the mechanism",
        user = as_user(.username)
    )]
    Authentication {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// The SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, ...).
        mechanism: String,
        /// The user name offered (never the password).
        username: Option<String>,
        /// librdkafka's report.
        reason: String,
    },

    /// TLS with the broker failed: its certificate is not signed by a trusted CA (a wrong or
    /// missing `ssl.ca.location`), its name does not match, the CA file cannot be read, or
    /// the address is not a TLS listener. Reported by `build()` as soon as it is seen,
    /// within the connect timeout.
    #[error(
        "TLS with Kafka at `{bootstrap}` failed: {reason}; check the CA (`Tls::ca_file(..)`, `Tls::system_roots()`) and that the port is a TLS listener"
    )]
    Tls {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// librdkafka's (OpenSSL's) report.
        reason: String,
    },

    /// A dead-letter topic was asked for of a topic without one.
    #[error(
        "topic `{topic}` (`{type_name}`) has no dead-letter topic: add `dlq` to `#[topic(..)]` (or `dlq = \"name\"`)"
    )]
    NoDlq {
        /// The topic.
        topic: &'static str,
        /// The Rust type.
        type_name: &'static str,
    },

    /// Creating or describing topics failed.
    #[error("admin operation on topic `{topic}` failed: {reason}")]
    Admin {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },

    /// A value could not be encoded.
    #[error("cannot encode a `{type_name}` for topic `{topic}`: {source}")]
    Encode {
        /// The topic.
        topic: &'static str,
        /// The Rust type.
        type_name: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// A payload could not be decoded; the consumer stream goes on after it.
    #[error(
        "cannot decode the message at {topic}[{partition}]@{offset} as `{type_name}`: {source}"
    )]
    Decode {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The Rust type.
        type_name: &'static str,
        /// The raw payload, kept so it can be inspected or dead-lettered.
        payload: Option<Vec<u8>>,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// A message's type header names a message type the topic's type does not carry (or a
    /// topic of several types got a message without the header): it is not decoded, so it
    /// is never taken for the wrong type. The stream goes on after it; a handler follows
    /// its [`OnUnknownType`](crate::message_type::OnUnknownType) policy.
    #[error(
        "the message at {topic}[{partition}]@{offset} {what}; it was not decoded",
        what = unknown_type(.found, .type_name, .expected)
    )]
    UnknownType {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The Rust type of the topic.
        type_name: &'static str,
        /// The message type the header names (a Rust path read by its last segment), or
        /// `None` without a header.
        found: Option<String>,
        /// The message types the topic carries.
        expected: &'static [&'static str],
        /// The raw payload, kept so it can be inspected or dead-lettered.
        payload: Option<Vec<u8>>,
    },

    /// The broker did not acknowledge a message.
    #[error("delivery to topic `{topic}` failed: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// Any other Kafka client error, with what was being done.
    #[error("Kafka error while {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A database error, with what was being done.
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// SeaORM's error.
        #[source]
        source: sea_orm::DbErr,
    },

    /// A handler failed on its last attempt and the topic has no dead-letter topic, or an
    /// undecodable message arrived on a topic without one: the handler stops there, with
    /// the offset uncommitted.
    #[error(
        "handler of `{type_name}` gave up on {topic}[{partition}]@{offset} after {attempts} attempt(s), and the topic has no `dlq`: {source}"
    )]
    HandlerFailed {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The Rust type.
        type_name: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A produce layer refused a message ([`crate::middleware::ProduceLayer`]): nothing
    /// was sent, or written into the outbox.
    #[error("a produce layer rejected a `{message_type}` message to `{topic}`: {reason}")]
    Rejected {
        /// The topic (with the context's namespace).
        topic: String,
        /// The message's type name.
        message_type: &'static str,
        /// Why, as the layer said.
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The consumer or producer was shut down.
    #[error("kafka-orm is shutting down")]
    Shutdown,
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: sea_orm::DbErr) -> Self {
        Error::Database {
            context: context.into(),
            source,
        }
    }
}

/// `OrderCreated` of `my_app::events::OrderCreated`.
fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// `` `a`, `b` and `c` `` for an error message.
fn backticked(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "no message type".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What is wrong with a message's type header, for [`Error::UnknownType`].
fn unknown_type(found: &Option<String>, type_name: &str, expected: &[&str]) -> String {
    let expected = backticked(expected);
    match found {
        Some(name) => format!(
            "is of type `{name}`, which `{type_name}` does not carry (it carries {expected})"
        ),
        None => format!(
            "has no `kafka-orm-type` header, which `{type_name}` needs to tell its types ({expected}) apart"
        ),
    }
}

/// ` as `alice`` for an error message, or nothing without a user name.
fn as_user(username: &Option<String>) -> String {
    username
        .as_deref()
        .map(|u| format!(" as `{u}`"))
        .unwrap_or_default()
}

/// What a handler returns on failure: any error (`?` works on SeaORM's and your own).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;
