use serde::{Deserialize, Serialize};

/// A crate that re-exports kafka-orm; users of it need not depend on kafka-orm directly.
mod my {
    pub use kafka_orm;
}

use my::kafka_orm::codec::CodecError;

/// A hand-written codec: the type needs no serde derives.
pub struct Text;

impl my::kafka_orm::Codec<Greeting> for Text {
    const NAME: &'static str = "text";
    fn encode(value: &Greeting, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value.text.as_bytes());
        Ok(())
    }
    fn decode(bytes: &[u8]) -> Result<Greeting, CodecError> {
        Ok(Greeting {
            lang: String::new(),
            text: String::from_utf8(bytes.to_vec())?,
        })
    }
}

#[derive(my::kafka_orm::Topic)]
#[topic(crate = "my::kafka_orm", codec = "Text", key = "lang")]
pub struct Greeting {
    pub lang: String,
    pub text: String,
}

/// The default codec through the re-export too, and the outbox entity, whose module
/// reaches the re-export from inside.
#[derive(Serialize, Deserialize, my::kafka_orm::Topic)]
#[topic(crate = "my::kafka_orm", key = "text", outbox)]
pub struct Farewell {
    pub text: String,
}

fn main() {
    use my::kafka_orm::{Codec, Topic};
    assert_eq!(Greeting::SPEC.format, "Text");
    let greeting = Greeting {
        lang: "en".into(),
        text: "hello".into(),
    };
    let mut out = Vec::new();
    <Greeting as Topic>::Codec::encode(&greeting, &mut out).unwrap();
    assert_eq!(out, b"hello");
    assert_eq!(greeting.key().unwrap(), b"en");
    assert_eq!(Farewell::SPEC.format, "json");
    let _ = |m: farewell_outbox::Model| -> String { m.key_text };
    let _ = <farewell_outbox::Entity as my::kafka_orm::deps::sea_orm::EntityTrait>::find;
}
