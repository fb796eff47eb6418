//! Kafka message headers and the names kafka-orm gives them.

use rdkafka::message::{Header, OwnedHeaders};

/// Header carrying the unique id kafka-orm stamps on every message it produces (a UUIDv7;
/// for relayed outbox rows, the row's message id). A bare `inbox` dedups on it.
pub const MESSAGE_ID_HEADER: &str = "kafka-orm-message-id";

/// Header carrying the stable name of the payload's message type (`OrderCreated`, or
/// `type_name = ".."`), which consumers decode by: see [`crate::message_type`].
pub const TYPE_HEADER: &str = "kafka-orm-type";

/// W3C trace-context header, carried through when present (with the `opentelemetry`
/// feature, written by `produce` and `publish`: see [`crate::telemetry::trace`]).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// W3C trace-state header, vendor entries that go with [`TRACEPARENT_HEADER`].
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Kafka message headers: an ordered list of name/value pairs (names may repeat, as in Kafka).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Appends a header (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.insert(name, value);
        self
    }

    /// Appends a header.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), value.into()));
    }

    /// The last value of the header `name`, if any.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The last value of `name` as UTF-8 text, if present and valid.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Removes every value of the header `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n != name);
    }

    /// Whether the header `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn to_rdkafka(&self) -> OwnedHeaders {
        self.entries
            .iter()
            .fold(OwnedHeaders::new_with_capacity(self.len()), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v),
                })
            })
    }

    pub(crate) fn from_rdkafka<H: rdkafka::message::Headers>(headers: &H) -> Self {
        let entries = headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
            .collect();
        Headers { entries }
    }
}
