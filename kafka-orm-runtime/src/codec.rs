//! Payload encoding. JSON through serde is the default; a topic can name its own
//! [`Codec`] with `#[topic(codec = "path::MyCodec")]`.

use std::error::Error as StdError;

/// Boxed error a codec returns; kafka-orm wraps it in a typed [`crate::Error`] that says
/// which topic, partition and offset failed.
pub type CodecError = Box<dyn StdError + Send + Sync + 'static>;

/// Turns a topic's values into payload bytes and back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a kafka-orm codec for `{T}`",
    note = "implement `kafka_orm::Codec<{T}>` for it, or use the default JSON format (which needs `serde::Serialize` and `serde::Deserialize` on `{T}`)"
)]
pub trait Codec<T>: Send + Sync + 'static {
    /// Short name used in logs and the registry, e.g. `"json"`.
    const NAME: &'static str;
    /// Encodes `value` into `out` (which is empty).
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes one payload.
    fn decode(bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: JSON through serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T> Codec<T> for Json
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    const NAME: &'static str = "json";

    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(Into::into)
    }

    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(Into::into)
    }
}

/// The codec of a topic enum (`#[derive(Topic)] enum OrderEvent { Created(OrderCreated), .. }`):
/// each variant's struct is encoded alone with the enum's codec (`Json` unless
/// `codec = ".."`), and decoded by the type header, through
/// [`Topic::encode_payload`](crate::Topic::encode_payload) and
/// [`Topic::decode_payload`](crate::Topic::decode_payload). Without the header a payload
/// cannot tell which variant it is, so [`Codec::decode`] alone always fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct Variants;

impl<T: crate::Topic> Codec<T> for Variants {
    const NAME: &'static str = "variants";

    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        value.encode_payload(out)
    }

    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        T::decode_payload(None, bytes).map_err(Into::into)
    }
}

/// Why a payload did not decode into a topic's type ([`Topic::decode_payload`](crate::Topic::decode_payload)).
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The type header names a message type the topic's type does not carry (or is missing
    /// on a topic of several types).
    UnknownType,
    /// The codec could not decode the payload.
    Codec(CodecError),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownType => f.write_str("a message type this topic does not carry"),
            DecodeError::Codec(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::UnknownType => None,
            DecodeError::Codec(e) => Some(e.as_ref()),
        }
    }
}
