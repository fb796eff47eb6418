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
/// [`Error::InvalidIdentifier`]), that each Kafka topic is claimed by one type, and that no
/// topic is also used as another one's dead-letter topic.
///
/// One topic, one type: two types on one topic would each decode the other's messages
/// (a struct with a subset of another's fields decodes them without an error), so they
/// are [`Error::SharedTopic`]. Several message types on one topic are one enum,
/// `#[derive(Topic)] enum Events { A(A), B(B) }`, which dispatches on the type header.
pub fn validate(specs: &[&'static TopicSpec]) -> Result<(), Error> {
    for spec in specs {
        crate::ident::check_spec(spec)?;
    }
    let mut by_name: BTreeMap<&str, Vec<&TopicSpec>> = BTreeMap::new();
    for spec in specs {
        let claims = by_name.entry(spec.name).or_default();
        if !claims.iter().any(|c| c.type_name == spec.type_name) {
            claims.push(spec);
        }
    }
    if let Some((topic, claims)) = by_name.iter().find(|(_, claims)| claims.len() > 1) {
        let mut types: Vec<&'static str> = claims.iter().map(|c| c.type_name).collect();
        types.sort_unstable();
        return Err(Error::SharedTopic {
            topic: topic.to_string(),
            types,
        });
    }
    for spec in specs {
        if let Some(dlq) = spec.dlq
            && let Some([other, ..]) = by_name.get(dlq.topic).map(Vec::as_slice)
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: TopicSpec = TopicSpec::new("app::A", "orders").key_fields(&["id"]);
    const B_SAME: TopicSpec = TopicSpec::new("other::B", "orders").key_fields(&["id"]);
    const C: TopicSpec = TopicSpec::new("app::C", "invoices");

    #[test]
    fn one_topic_has_one_type_even_with_the_same_settings() {
        let err = validate(&[&A, &C, &B_SAME]).unwrap_err();
        assert!(
            matches!(&err, Error::SharedTopic { topic, types } if topic == "orders" && types == &["app::A", "other::B"]),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("`app::A` and `other::B`") && text.contains("enum"),
            "{text}"
        );
    }

    #[test]
    fn one_type_registered_twice_is_one_claim() {
        validate(&[&A, &A, &C]).unwrap();
    }

    #[test]
    fn a_topic_cannot_be_another_topics_dead_letter_topic() {
        use crate::topic::DlqSpec;
        static D: TopicSpec = TopicSpec::new("app::D", "payments").dlq(DlqSpec::new("invoices"));
        let err = validate(&[&C, &D]).unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateTopic { topic, .. } if topic == "invoices"),
            "{err:?}"
        );
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
}
