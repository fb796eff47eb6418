//! What a service produces and consumes: [`KafkaOrmBuilder::produces`] and
//! [`KafkaOrmBuilder::consumes`](super::KafkaOrmBuilder::consumes), so that one shared
//! events crate serves a producer-only and a consumer-only service.
//!
//! What is checked when is in [`KafkaOrmBuilder::produces`]'s docs.
//!
//! [`KafkaOrmBuilder::produces`]: super::KafkaOrmBuilder::produces

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::topic::{Consumable, Producible, TopicSpec};

/// The types a service declared it produces and consumes, by their Rust path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directions {
    produces: BTreeMap<&'static str, &'static TopicSpec>,
    consumes: BTreeMap<&'static str, &'static TopicSpec>,
}

impl Directions {
    pub(crate) fn produce<T: Producible>(&mut self) {
        self.produces.insert(T::SPEC.type_name, T::SPEC);
    }

    pub(crate) fn consume<T: Consumable>(&mut self) {
        self.consumes.insert(T::SPEC.type_name, T::SPEC);
    }

    /// What `build()` can tell already: a consumed topic with an inbox needs the database.
    pub(crate) fn check_at_build(&self, has_database: bool) -> Result<()> {
        match self.consumes.values().find(|s| s.inbox.is_some()) {
            Some(spec) if !has_database => Err(Error::NoDatabase {
                operation: "consumes",
                topic: spec.name,
            }),
            _ => Ok(()),
        }
    }
}

/// Whether a service with `declared` directions may produce `spec`'s type.
pub(crate) fn may_produce(declared: Option<&Directions>, spec: &'static TopicSpec) -> Result<()> {
    match declared {
        Some(d) if !d.produces.contains_key(spec.type_name) => Err(Error::NotProduced {
            topic: spec.name,
            type_name: spec.type_name,
        }),
        _ => Ok(()),
    }
}

/// Whether a service with `declared` directions may consume `spec`'s type.
pub(crate) fn may_consume(declared: Option<&Directions>, spec: &'static TopicSpec) -> Result<()> {
    match declared {
        Some(d) if !d.consumes.contains_key(spec.type_name) => Err(Error::NotConsumed {
            topic: spec.name,
            type_name: spec.type_name,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, CodecError};
    use crate::key::{DedupValue, KeyBytes};
    use crate::topic::{InboxSpec, Topic};

    /// A codec for types that are never encoded here.
    struct Never;

    impl<T> Codec<T> for Never {
        const NAME: &'static str = "never";
        fn encode(_: &T, _: &mut Vec<u8>) -> std::result::Result<(), CodecError> {
            Err("not encoded in these tests".into())
        }
        fn decode(_: &[u8]) -> std::result::Result<T, CodecError> {
            Err("not decoded in these tests".into())
        }
    }

    macro_rules! topic {
        ($ty:ident, $spec:expr) => {
            struct $ty;
            impl Topic for $ty {
                const SPEC: &'static TopicSpec = &$spec;
                type Codec = Never;
                fn key(&self) -> Option<KeyBytes> {
                    None
                }
                fn dedup_key(&self) -> Vec<DedupValue> {
                    Vec::new()
                }
            }
            impl Producible for $ty {}
            impl Consumable for $ty {}
        };
    }

    topic!(Orders, TopicSpec::new("app::Orders", "orders"));
    topic!(
        Payments,
        TopicSpec::new("app::Payments", "payments").inbox(InboxSpec::new(
            "payments_inbox",
            &[],
            60
        ))
    );

    #[test]
    fn nothing_declared_allows_both_ways() {
        may_produce(None, Orders::SPEC).unwrap();
        may_consume(None, Orders::SPEC).unwrap();
    }

    #[test]
    fn declared_lists_are_complete() {
        let mut d = Directions::default();
        d.produce::<Orders>();
        may_produce(Some(&d), Orders::SPEC).unwrap();
        let err = may_consume(Some(&d), Orders::SPEC).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotConsumed {
                    topic: "orders",
                    type_name: "app::Orders"
                }
            ),
            "{err:?}"
        );
        let err = may_produce(Some(&d), Payments::SPEC).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotProduced {
                    topic: "payments",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn consuming_an_inbox_topic_needs_the_database_at_build() {
        let mut d = Directions::default();
        d.consume::<Orders>();
        d.check_at_build(false).unwrap();
        d.consume::<Payments>();
        let err = d.check_at_build(false).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NoDatabase {
                    operation: "consumes",
                    topic: "payments"
                }
            ),
            "{err:?}"
        );
        d.check_at_build(true).unwrap();
    }
}
