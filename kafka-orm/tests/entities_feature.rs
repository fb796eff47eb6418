//! The `entities` feature decides whether a topic gets its SeaORM entity modules; the rest
//! of the expansion does not depend on it. Run with and without default features.

#![deny(warnings)]

use std::borrow::Cow;

use kafka_orm::{KeyPart, Topic};

/// A key type the derive does not know by name: its column type comes through an alias.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Region(pub String);

impl KeyPart for Region {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}

#[derive(serde::Serialize, serde::Deserialize, Topic)]
#[topic(key = "id", outbox, inbox(dedup = "id"))]
pub struct Ordered {
    pub id: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Topic)]
#[topic(key = "region", outbox, inbox)]
pub struct Moved {
    pub region: Region,
}

#[test]
fn the_spec_is_the_same_either_way() {
    let spec = Ordered::SPEC;
    assert_eq!(spec.outbox.unwrap().table, "ordered_outbox");
    assert_eq!(spec.inbox.unwrap().dedup_fields, ["id"]);
    assert_eq!(Ordered { id: 4 }.key(), Some(b"4".to_vec()));
    assert_eq!(Moved::SPEC.outbox.unwrap().table, "moved_outbox");
}

#[cfg(feature = "entities")]
#[test]
fn with_the_feature_the_entities_exist() {
    use kafka_orm::deps::sea_orm::EntityName;
    assert_eq!(ordered_outbox::Entity.table_name(), "ordered_outbox");
    let _ = ordered_outbox::Column::KeyId;
    assert_eq!(ordered_inbox::Entity.table_name(), "ordered_inbox");
    let _ = ordered_inbox::Column::DedupId;
    let _ = moved_outbox::Column::KeyRegion;
    let _ = moved_inbox::Column::MessageId;
}

/// Without the feature the derive defines no `ordered_outbox` module: with it, these two
/// would be "defined multiple times".
#[cfg(not(feature = "entities"))]
#[allow(dead_code)]
mod ordered_outbox {}
#[cfg(not(feature = "entities"))]
#[allow(dead_code)]
mod ordered_inbox {}
