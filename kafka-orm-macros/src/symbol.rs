//! The keys of `#[topic(..)]`, as constants (serde's `internals/symbol.rs`).

use std::fmt::{self, Display};

use syn::{Ident, Path};

/// One attribute key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Symbol(pub &'static str);

/// The helper attribute itself.
pub const TOPIC: Symbol = Symbol("topic");

pub const NAME: Symbol = Symbol("name");
pub const KEY: Symbol = Symbol("key");
pub const TYPE_NAME: Symbol = Symbol("type_name");
pub const OUTBOX: Symbol = Symbol("outbox");
pub const INBOX: Symbol = Symbol("inbox");
pub const GROUP: Symbol = Symbol("group");
pub const FORMAT: Symbol = Symbol("format");
pub const CODEC: Symbol = Symbol("codec");
pub const PARTITIONS: Symbol = Symbol("partitions");
pub const REPLICATION: Symbol = Symbol("replication");
pub const RETRY: Symbol = Symbol("retry");
pub const RETRY_TOPICS: Symbol = Symbol("retry_topics");
pub const DLQ: Symbol = Symbol("dlq");
pub const PRODUCE_ONLY: Symbol = Symbol("produce_only");
pub const CONSUME_ONLY: Symbol = Symbol("consume_only");
pub const CRATE: Symbol = Symbol("crate");

// Nested keys.
pub const TABLE: Symbol = Symbol("table");
pub const DEDUP: Symbol = Symbol("dedup");
pub const RETENTION: Symbol = Symbol("retention");
pub const ATTEMPTS: Symbol = Symbol("attempts");
pub const BACKOFF: Symbol = Symbol("backoff");
pub const MAX_BACKOFF: Symbol = Symbol("max_backoff");

/// Every key of `#[topic(..)]`, in the order the reference documents them.
pub const TOPIC_KEYS: &[Symbol] = &[
    NAME,
    TYPE_NAME,
    KEY,
    OUTBOX,
    INBOX,
    GROUP,
    FORMAT,
    CODEC,
    PARTITIONS,
    REPLICATION,
    RETRY,
    RETRY_TOPICS,
    DLQ,
    PRODUCE_ONLY,
    CONSUME_ONLY,
    CRATE,
];
/// Keys of `#[topic(..)]` on a variant of a topic enum.
pub const VARIANT_KEYS: &[Symbol] = &[TYPE_NAME];
/// Keys of `outbox(..)`.
pub const OUTBOX_KEYS: &[Symbol] = &[TABLE];
/// Keys of `inbox(..)`.
pub const INBOX_KEYS: &[Symbol] = &[DEDUP, RETENTION, TABLE];
/// Keys of `retry(..)`.
pub const RETRY_KEYS: &[Symbol] = &[ATTEMPTS, BACKOFF, MAX_BACKOFF];

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
