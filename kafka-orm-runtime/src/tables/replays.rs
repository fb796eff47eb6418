//! The table of dead-letter replays through an outbox: one row per dead letter replayed,
//! written in the transaction that puts its outbox row (see `dlq/ledger.rs`).

use super::{Column, PrimaryKey, Stored, TableDef, column, some_or_none, table_def};

/// The table recording which dead letters were replayed through an outbox.
pub const REPLAY_TABLE: &str = "kafka_orm_dlq_replays";

table_def! {
    {
        dlq_topic: String,
        dlq_partition: i32,
        dlq_offset: i64,
        message_id: String,
        replayed_at: i64,
    }
    primary key (dlq_topic, dlq_partition, dlq_offset)
    /// Dead letters replayed through an outbox: which one (its dead-letter topic, partition
    /// and offset), the message id it was re-published with, and when.
    pub(crate) const REPLAYS: "dead-letter replay";
}

/// The DDL of the replay table on `backend`.
pub fn create_table_sql(backend: sea_orm::DatabaseBackend) -> String {
    super::ddl::create_table(&REPLAYS, REPLAY_TABLE, &REPLAYS.columns([]), backend)
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;

    #[test]
    fn the_replay_table_is_keyed_by_the_dead_letters_place() {
        assert_eq!(
            super::create_table_sql(DatabaseBackend::Postgres),
            "CREATE TABLE IF NOT EXISTS \"kafka_orm_dlq_replays\" ( \"dlq_topic\" TEXT NOT NULL, \
             \"dlq_partition\" INTEGER NOT NULL, \"dlq_offset\" BIGINT NOT NULL, \"message_id\" TEXT NOT NULL, \
             \"replayed_at\" BIGINT NOT NULL, PRIMARY KEY (\"dlq_topic\", \"dlq_partition\", \"dlq_offset\") )"
        );
    }

    #[test]
    fn the_schema_has_it_when_a_topic_with_an_outbox_has_a_dlq() {
        use crate::topic::{DlqSpec, OutboxSpec, TopicSpec};
        static PLAIN: TopicSpec = TopicSpec::new("t::P", "p").outbox(OutboxSpec::new("p_outbox"));
        static BOTH: TopicSpec = TopicSpec::new("t::B", "b")
            .outbox(OutboxSpec::new("b_outbox"))
            .dlq(DlqSpec::new("b.dlq"));
        static DLQ_ONLY: TopicSpec = TopicSpec::new("t::D", "d").dlq(DlqSpec::new("d.dlq"));
        let has = |specs: &[&'static TopicSpec]| {
            crate::schema::statements(specs, DatabaseBackend::Sqlite)
                .unwrap()
                .iter()
                .any(|s| s.contains(super::REPLAY_TABLE))
        };
        assert!(has(&[&PLAIN, &BOTH]));
        assert!(!has(&[&PLAIN, &DLQ_ONLY]));
    }
}
