//! The topics file: a service's registered topics and their settings as JSON, written by
//! the service ([`KafkaOrm::registry_json`]) and read by tools that cannot see its Rust
//! types (the `kafka-orm` CLI's `--topics FILE`).

use serde::{Deserialize, Serialize};

use crate::context::KafkaOrm;
use crate::key::ColumnKind;
use crate::topic::{Direction, DlqSpec, InboxSpec, OutboxSpec, RetrySpec, TopicSpec};

/// The version of the file format this crate writes and reads.
pub const TOPICS_FILE_VERSION: u32 = 1;

/// A service's topics: what [`KafkaOrm::registry_json`] writes, as JSON (see [`crate::ops`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsFile {
    /// [`TOPICS_FILE_VERSION`].
    pub version: u32,
    /// The context's namespace prefix (topics, groups).
    pub namespace: String,
    /// Every registered topic.
    pub topics: Vec<TopicEntry>,
}

/// One topic's settings, as `#[topic(..)]` declared them, plus the Kafka names they have
/// in the context (`kafka_*`, with the namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    /// The Rust type.
    pub type_name: String,
    /// The message type names its payloads carry in the `kafka-orm-type` header: one for a
    /// struct, one per variant for a topic enum (absent in files of older versions: empty).
    #[serde(default)]
    pub message_types: Vec<String>,
    /// The topic, as declared.
    pub name: String,
    /// Its Kafka name.
    pub kafka_topic: String,
    /// The key fields.
    pub key_fields: Vec<String>,
    /// `json` or the codec's path.
    pub format: String,
    /// `both`, `produce_only` or `consume_only`.
    pub direction: String,
    /// The consumer group, as declared.
    pub group: Option<String>,
    /// The consumer group's Kafka name (the context's default group when none is declared).
    pub kafka_group: Option<String>,
    /// Partitions to create it with.
    pub partitions: Option<i32>,
    /// Replication factor to create it with.
    pub replication: Option<i32>,
    /// The outbox.
    pub outbox: Option<OutboxEntry>,
    /// The inbox.
    pub inbox: Option<InboxEntry>,
    /// The in-place retry policy.
    pub retry: Option<RetryEntry>,
    /// Whether it has retry topics.
    pub retry_topics: bool,
    /// The dead-letter topic, as declared.
    pub dlq: Option<String>,
    /// The dead-letter topic's Kafka name.
    pub kafka_dlq: Option<String>,
}

/// An outbox's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The table.
    pub table: String,
    /// The typed key columns' kinds (`bigint`, `text`, `uuid`, `bool`), in key order.
    pub key_columns: Vec<String>,
}

/// An inbox's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The table.
    pub table: String,
    /// The dedup fields (none: the message id).
    pub dedup_fields: Vec<String>,
    /// Their columns' kinds.
    pub dedup_columns: Vec<String>,
    /// How long rows are kept, seconds.
    pub retention_secs: u64,
}

/// A retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryEntry {
    /// Attempts, the first included.
    pub attempts: u32,
    /// First backoff, milliseconds.
    pub backoff_ms: u64,
    /// Backoff cap, milliseconds.
    pub max_backoff_ms: u64,
}

impl KafkaOrm {
    /// The topics file of this context: every registered topic and its settings as JSON
    /// (see [`TopicsFile`]). Write it where the `kafka-orm` CLI can read it
    /// (`--topics FILE` or `KAFKA_ORM_TOPICS`), e.g. at startup or from a `--print-topics`
    /// flag of the service.
    pub fn registry_json(&self) -> String {
        let file = TopicsFile::of(self, self.topics());
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }
}

impl TopicsFile {
    /// The file of `specs` in `orm`'s context.
    pub fn of(orm: &KafkaOrm, specs: &[&'static TopicSpec]) -> Self {
        TopicsFile {
            version: TOPICS_FILE_VERSION,
            namespace: orm.namespaced(""),
            topics: specs.iter().map(|s| TopicEntry::of(orm, s)).collect(),
        }
    }

    /// Parses a topics file; the error says what is wrong, and where.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: TopicsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.version != TOPICS_FILE_VERSION {
            return Err(format!(
                "version {} is not supported (this kafka-orm reads version {TOPICS_FILE_VERSION})",
                file.version
            ));
        }
        for topic in &file.topics {
            topic.check()?;
        }
        Ok(file)
    }
}

impl TopicEntry {
    fn of(orm: &KafkaOrm, spec: &'static TopicSpec) -> Self {
        let names = |fields: &[&str]| fields.iter().map(|f| f.to_string()).collect();
        let kinds =
            |kinds: &[ColumnKind]| kinds.iter().map(|k| kind_name(*k).to_string()).collect();
        TopicEntry {
            type_name: spec.type_name.into(),
            message_types: names(spec.message_types),
            name: spec.name.into(),
            kafka_topic: orm.topic_name(spec),
            key_fields: names(spec.key_fields),
            format: spec.format.into(),
            direction: direction_name(spec.direction).into(),
            group: spec.group.map(str::to_string),
            kafka_group: orm.group_for(spec, None).ok(),
            partitions: spec.partitions,
            replication: spec.replication,
            outbox: spec.outbox.map(|o| OutboxEntry {
                table: o.table.into(),
                key_columns: kinds(o.key_columns),
            }),
            inbox: spec.inbox.map(|i| InboxEntry {
                table: i.table.into(),
                dedup_fields: names(i.dedup_fields),
                dedup_columns: kinds(i.dedup_columns),
                retention_secs: i.retention_secs,
            }),
            retry: spec.retry.map(|r| RetryEntry {
                attempts: r.attempts,
                backoff_ms: r.backoff.as_millis() as u64,
                max_backoff_ms: r.max_backoff.as_millis() as u64,
            }),
            retry_topics: spec.retry_topics,
            dlq: spec.dlq.map(|d| d.topic.to_string()),
            kafka_dlq: spec.dlq.map(|_| orm.dlq_of(spec).name().to_string()),
        }
    }

    /// Whether every setting can be read back into a spec.
    fn check(&self) -> Result<(), String> {
        let at = |what: &str| format!("topic `{}`: {what}", self.name);
        parse_direction(&self.direction)
            .ok_or_else(|| at(&format!("unknown direction `{}`", self.direction)))?;
        let columns = self.outbox.iter().flat_map(|o| &o.key_columns);
        let dedup = self.inbox.iter().flat_map(|i| &i.dedup_columns);
        for kind in columns.chain(dedup) {
            parse_kind(kind).ok_or_else(|| at(&format!("unknown column kind `{kind}`")))?;
        }
        Ok(())
    }

    /// The [`TopicSpec`] this entry describes, to use with [`KafkaOrm::dlq_of`] and
    /// [`outbox_status`](crate::ops::outbox_status) (the context should have the file's namespace).
    ///
    /// A spec is `'static`, so its text is leaked: for a tool that reads one file per
    /// process, not for a loop.
    pub fn leak_spec(&self) -> &'static TopicSpec {
        let text = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let texts = |v: &[String]| -> &'static [&'static str] {
            Box::leak(
                v.iter()
                    .map(|s| text(s))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        };
        let kinds = |v: &[String]| -> &'static [ColumnKind] {
            Box::leak(
                v.iter()
                    .filter_map(|k| parse_kind(k))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        };
        let mut spec = TopicSpec::new(text(&self.type_name), text(&self.name))
            .key_fields(texts(&self.key_fields))
            .format(text(&self.format))
            .direction(parse_direction(&self.direction).unwrap_or(Direction::Both));
        if let Some(group) = &self.group {
            spec = spec.group(text(group));
        }
        if let Some(p) = self.partitions {
            spec = spec.partitions(p);
        }
        if let Some(r) = self.replication {
            spec = spec.replication(r);
        }
        if let Some(o) = &self.outbox {
            spec = spec.outbox(OutboxSpec::new(text(&o.table)).columns(kinds(&o.key_columns)));
        }
        if let Some(i) = &self.inbox {
            let inbox = InboxSpec::new(text(&i.table), texts(&i.dedup_fields), i.retention_secs);
            spec = spec.inbox(inbox.columns(kinds(&i.dedup_columns)));
        }
        if let Some(r) = &self.retry {
            let ms = std::time::Duration::from_millis;
            spec = spec.retry(RetrySpec::new(
                r.attempts,
                ms(r.backoff_ms),
                ms(r.max_backoff_ms),
            ));
        }
        if self.retry_topics {
            spec = spec.retry_topics();
        }
        if let Some(dlq) = &self.dlq {
            spec = spec.dlq(DlqSpec::new(text(dlq)));
        }
        Box::leak(Box::new(spec))
    }
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::BigInt => "bigint",
        ColumnKind::Text => "text",
        ColumnKind::Uuid => "uuid",
        ColumnKind::Bool => "bool",
    }
}

fn parse_kind(name: &str) -> Option<ColumnKind> {
    [
        ColumnKind::BigInt,
        ColumnKind::Text,
        ColumnKind::Uuid,
        ColumnKind::Bool,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == name)
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Both => "both",
        Direction::ProduceOnly => "produce_only",
        Direction::ConsumeOnly => "consume_only",
    }
}

fn parse_direction(name: &str) -> Option<Direction> {
    [
        Direction::Both,
        Direction::ProduceOnly,
        Direction::ConsumeOnly,
    ]
    .into_iter()
    .find(|d| direction_name(*d) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TopicEntry {
        TopicEntry {
            type_name: "app::Order".into(),
            message_types: vec!["Order".into()],
            name: "orders".into(),
            kafka_topic: "p.orders".into(),
            key_fields: vec!["tenant".into(), "id".into()],
            format: "json".into(),
            direction: "produce_only".into(),
            group: Some("billing".into()),
            kafka_group: Some("p.billing".into()),
            partitions: Some(6),
            replication: None,
            outbox: Some(OutboxEntry {
                table: "order_outbox".into(),
                key_columns: vec!["text".into(), "bigint".into()],
            }),
            inbox: Some(InboxEntry {
                table: "order_inbox".into(),
                dedup_fields: vec!["id".into()],
                dedup_columns: vec!["bigint".into()],
                retention_secs: 60,
            }),
            retry: Some(RetryEntry {
                attempts: 3,
                backoff_ms: 100,
                max_backoff_ms: 1000,
            }),
            retry_topics: true,
            dlq: Some("orders.dlq".into()),
            kafka_dlq: Some("p.orders.dlq".into()),
        }
    }

    #[test]
    fn an_entry_reads_back_into_the_spec_it_describes() {
        let spec = entry().leak_spec();
        let want = TopicSpec::new("app::Order", "orders")
            .key_fields(&["tenant", "id"])
            .direction(Direction::ProduceOnly)
            .group("billing")
            .partitions(6)
            .outbox(
                OutboxSpec::new("order_outbox").columns(&[ColumnKind::Text, ColumnKind::BigInt]),
            )
            .inbox(InboxSpec::new("order_inbox", &["id"], 60).columns(&[ColumnKind::BigInt]))
            .retry(RetrySpec::new(
                3,
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(1),
            ))
            .retry_topics()
            .dlq(DlqSpec::new("orders.dlq"));
        assert_eq!(*spec, want);
    }

    #[test]
    fn a_file_round_trips_and_bad_ones_say_why() {
        let file = TopicsFile {
            version: TOPICS_FILE_VERSION,
            namespace: "p.".into(),
            topics: vec![entry()],
        };
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(TopicsFile::from_json(&text), Ok(file.clone()));
        let err =
            TopicsFile::from_json(&text.replace("\"version\":1", "\"version\":9")).unwrap_err();
        assert!(err.contains("version 9"), "{err}");
        let err = TopicsFile::from_json(&text.replace("produce_only", "sideways")).unwrap_err();
        assert!(
            err.contains("topic `orders`: unknown direction `sideways`"),
            "{err}"
        );
        let err = TopicsFile::from_json(&text.replace("\"bigint\"", "\"float\"")).unwrap_err();
        assert!(err.contains("unknown column kind `float`"), "{err}");
        assert!(TopicsFile::from_json("{").unwrap_err().contains("line 1"));
    }
}
