//! The descriptions themselves: one column list per table.
//!
//! The outbox's and the inbox's lists are the bodies of exported macros, so that the
//! facade's entity hook (`kafka-orm/src/entity.rs`) builds each entity's `Model` from the
//! same tokens as [`OUTBOX`] and [`INBOX`] are built from. A macro is called with a
//! callback and arguments, `[path::to::callback] args..`, and calls
//! `path::to::callback! { { columns } args.. }`.

use super::{Column, PrimaryKey, Stored, TableDef, Typed, column, some_or_none, table_def};

/// The columns of a topic's outbox table: the row id, the message, its delivery state,
/// then the typed `key_<field>` columns (see [`crate::outbox`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_columns {
    ([$($then:tt)*] $($args:tt)*) => {
        $($then)*! {
            {
                id: i64,
                message_id: String,
                message_key: Option<String>,
                bucket: i32,
                payload: Vec<u8>,
                headers: Vec<u8>,
                created_at: i64,
                attempts: i32 = 0,
                next_attempt_at: i64 = 0,
                last_error: Option<String>,
                ..key
            }
            $($args)*
        }
    };
}

/// The columns of a topic's inbox table: the row id, the consumer group, the typed
/// `dedup_<field>` columns (or, for a bare `inbox`, the message id), then where the
/// message was read and when (see [`crate::inbox`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __inbox_columns {
    ([$($then:tt)*] $($args:tt)*) => {
        $($then)*! {
            {
                id: i64,
                consumer_group: String,
                ..dedup else message_id: String,
                topic: String,
                kafka_partition: i32,
                kafka_offset: i64,
                processed_at: i64,
            }
            $($args)*
        }
    };
}

crate::__outbox_columns! {
    [table_def]
    /// A topic's outbox table.
    pub(crate) const OUTBOX: "outbox";
}

crate::__inbox_columns! {
    [table_def]
    /// A topic's inbox table.
    pub(crate) const INBOX: "inbox";
}

table_def! {
    {
        outbox: String,
        bucket: i32,
        owner: Option<String>,
        expires_at: i64 = 0,
        epoch: i64 = 0,
    }
    primary key (outbox, bucket)
    /// The relay's bucket leases (PostgreSQL; see `outbox/lease.rs`): who delivers which
    /// key-hash bucket of which outbox table, until when, in which fencing epoch.
    pub(crate) const LEASES: "relay lease";
}

table_def! {
    {
        outbox: String,
        owner: String,
        expires_at: i64,
    }
    primary key (outbox, owner)
    /// The live relay instances per outbox table (PostgreSQL), for their fair shares.
    pub(crate) const MEMBERS: "relay member";
}
