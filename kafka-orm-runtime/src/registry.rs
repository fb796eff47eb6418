//! Topics registered by `#[derive(Topic)]`, discovered at startup through `inventory`.
//!
//! Each derive emits one `inventory::submit!` of a [`TopicRegistration`]; the context
//! reads them all in [`registered_topics`] and rejects contradictions with
//! [`validate`] before anything touches Kafka.
//!
//! Registrations in a library crate reach the binary only when the binary links that
//! crate: if it uses nothing else from it, write `use my_events_crate as _;`.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::topic::TopicSpec;

/// One topic registered by `#[derive(Topic)]`.
#[derive(Debug)]
pub struct TopicRegistration {
    /// The topic's settings.
    pub spec: &'static TopicSpec,
}

impl TopicRegistration {
    /// Used by the derive.
    pub const fn new(spec: &'static TopicSpec) -> Self {
        TopicRegistration { spec }
    }
}

inventory::collect!(TopicRegistration);

/// Every topic registered in this binary, sorted by topic name then type, with the
/// same type registered twice (impossible through the derive) listed once.
pub fn registered_topics() -> Vec<&'static TopicSpec> {
    let mut specs: Vec<&'static TopicSpec> = inventory::iter::<TopicRegistration>
        .into_iter()
        .map(|r| r.spec)
        .collect();
    specs.sort_by(|a, b| (a.name, a.type_name).cmp(&(b.name, b.type_name)));
    specs.dedup_by(|a, b| a.type_name == b.type_name && a == b);
    specs
}

/// Checks that every table and column name a spec puts into SQL is a plain identifier
/// (the rules `#[derive(Topic)]` enforces; a hand-written `impl Topic` may break them:
/// [`Error::InvalidIdentifier`]), that no two types claim one Kafka topic with different
/// settings, and that no topic is also used as another one's dead-letter topic.
///
/// Two types may share a topic when everything Kafka sees agrees (name, key fields,
/// format, partitions, replication): e.g. a producer-side and a consumer-side view of
/// one event in two crates.
pub fn validate(specs: &[&'static TopicSpec]) -> Result<(), Error> {
    for spec in specs {
        crate::ident::check_spec(spec)?;
    }
    let mut by_name: BTreeMap<&str, &TopicSpec> = BTreeMap::new();
    for spec in specs {
        match by_name.get(spec.name) {
            Some(first) if first.type_name != spec.type_name => {
                if let Some(difference) = conflict(first, spec) {
                    return Err(Error::DuplicateTopic {
                        topic: spec.name.to_string(),
                        first: first.type_name.to_string(),
                        second: spec.type_name.to_string(),
                        difference,
                    });
                }
            }
            Some(_) => {}
            None => {
                by_name.insert(spec.name, spec);
            }
        }
    }
    for spec in specs {
        if let Some(dlq) = spec.dlq
            && let Some(other) = by_name.get(dlq.topic)
        {
            return Err(Error::DuplicateTopic {
                topic: dlq.topic.to_string(),
                first: other.type_name.to_string(),
                second: format!("{} (its dead-letter topic)", spec.type_name),
                difference: "a topic cannot also be another topic's dead-letter topic".into(),
            });
        }
    }
    Ok(())
}

/// What two specs for one topic disagree on, if anything Kafka sees differs.
fn conflict(a: &TopicSpec, b: &TopicSpec) -> Option<String> {
    let mut diffs = Vec::new();
    if a.key_fields != b.key_fields {
        diffs.push(format!("key {:?} vs {:?}", a.key_fields, b.key_fields));
    }
    if a.format != b.format {
        diffs.push(format!("format `{}` vs `{}`", a.format, b.format));
    }
    if a.partitions != b.partitions {
        diffs.push(format!(
            "partitions {:?} vs {:?}",
            a.partitions, b.partitions
        ));
    }
    if a.replication != b.replication {
        diffs.push(format!(
            "replication {:?} vs {:?}",
            a.replication, b.replication
        ));
    }
    if a.outbox.is_some() && b.outbox.is_some() && a.outbox != b.outbox {
        diffs.push("outbox tables differ".into());
    }
    if diffs.is_empty() {
        None
    } else {
        Some(diffs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TopicSpec = TopicSpec::new("app::A", "orders").key_fields(&["id"]);
    const B_SAME: TopicSpec = TopicSpec::new("other::B", "orders").key_fields(&["id"]);
    const B_DIFF: TopicSpec = TopicSpec::new("other::B", "orders")
        .key_fields(&["id"])
        .partitions(6);

    #[test]
    fn same_settings_may_share_a_topic() {
        validate(&[&A, &B_SAME]).unwrap();
    }

    #[test]
    fn a_hostile_table_name_is_rejected_before_anything_else() {
        use crate::topic::OutboxSpec;
        static HOSTILE: TopicSpec =
            TopicSpec::new("app::Hostile", "h").outbox(OutboxSpec::new("x\"; DROP TABLE y; --"));
        let err = validate(&[&A, &HOSTILE]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidIdentifier { type_name: "app::Hostile", field: "outbox.table", name, .. } if name == "x\"; DROP TABLE y; --"),
            "{err:?}"
        );
    }

    #[test]
    fn different_settings_are_rejected_naming_both_types() {
        let err = validate(&[&A, &B_DIFF]).unwrap_err().to_string();
        assert!(err.contains("app::A"), "{err}");
        assert!(err.contains("other::B"), "{err}");
        assert!(err.contains("partitions"), "{err}");
    }
}
