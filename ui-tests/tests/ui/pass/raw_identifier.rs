use kafka_orm::{DedupValue, Topic};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = ["type", "r#match"], inbox(dedup = "type"))]
pub struct Categorized {
    pub r#type: String,
    pub r#match: i32,
}

fn main() {
    assert_eq!(Categorized::SPEC.key_fields, ["type", "match"]);
    let event = Categorized {
        r#type: "a".into(),
        r#match: 3,
    };
    assert_eq!(event.key().unwrap(), br#"["a",3]"#);
    assert_eq!(event.dedup_key(), [DedupValue::Text("a".into())]);
}
