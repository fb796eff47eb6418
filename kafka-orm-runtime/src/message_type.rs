//! Message types: the stable names a topic's messages carry in the `kafka-orm-type`
//! header, and how a consumer uses them.
//!
//! Every message kafka-orm produces names its type in [`TYPE_HEADER`]: the struct's name
//! (`OrderCreated`), or the name given with `#[topic(type_name = "order.created")]`, never a
//! module path, so moving a type does not change the wire format. A topic carries one
//! type (a struct) or several (an enum of structs, one variant each), and its consumers
//! decode a message only as the type its header names:
//!
//! - a header naming a type the topic's type does not carry is
//!   [`Error::UnknownType`](crate::Error::UnknownType), never a payload decoded as the
//!   wrong type (a struct with a subset of another's fields would decode it silently);
//! - a message without the header (a producer that is not kafka-orm) is the topic's type
//!   for a struct, and an unknown type for an enum, which cannot tell its members apart
//!   without it;
//! - a header written by kafka-orm before the stable names held the type's Rust path
//!   (`my_app::events::OrderCreated`); it is read by its last segment, so such messages
//!   still reach a type that kept its default name.
//!
//! # Several types, one consumer
//!
//! A topic enum is one topic type: one stream, one handler, one consumer in one group for
//! all its message types. The handler gets the enum and either `match`es on it (the
//! compiler checks that every type is handled) or routes each type to a handler of its
//! own with [`Routes`](crate::handler::Routes), which only accepts the enum's [`Member`]s:
//!
//! ```text
//! // KafkaFlow: .AddTypedHandlers(h => h.AddHandler<OrderCreatedHandler>().AddHandler<OrderPaidHandler>())
//! orm.topic::<OrderEvent>()
//!     .handler_with(Routes::new()
//!         .on::<OrderCreated>(async |txn, created| { .. })
//!         .on::<OrderPaid>(async |txn, paid| { .. }))
//!     .spawn().await?;
//! ```
//!
//! # Unknown types
//!
//! What happens to a message of an unknown type: a handler follows its
//! [`OnUnknownType`] policy, by default to the dead-letter topic at once (and, without a
//! `dlq`, it stops with the error, its offset uncommitted); a stream yields
//! [`Error::UnknownType`](crate::Error::UnknownType) and goes on; a transactional pipeline
//! treats it as undecodable (to its dead-letter topic, or skipped with a warning).

use crate::codec::{Codec, CodecError};
use crate::key::{ColumnKind, DedupPart, DedupValue, KeyPart};
use crate::topic::Topic;

pub use crate::headers::TYPE_HEADER;

pub use crate::codec::DecodeError;

/// A message type of the topic enum `E`: the struct a variant of `#[derive(Topic)] enum E`
/// holds. Implemented by the derive for each variant's type; it is what
/// [`Routes::on`](crate::handler::Routes::on) checks at compile time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message type of `{E}`",
    label = "not a variant of `{E}`",
    note = "add a variant holding it to the enum, e.g. `Variant({Self})`"
)]
pub trait Member<E: Topic>: Sized + Send + Sync + 'static {
    /// Its stable name on the wire (the `kafka-orm-type` header).
    const TYPE_NAME: &'static str;
    /// The member inside `event`, when `event` holds this type.
    fn peel(event: &E) -> Option<&Self>;
    /// `value` as the enum.
    fn wrap(self) -> E;
}

/// What a handler does with a message whose type header names a type its topic does not
/// carry (see the [module docs](self)); set with
/// [`HandlerBuilder::on_unknown_type`](crate::handler::HandlerBuilder::on_unknown_type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnUnknownType {
    /// The default: to the dead-letter topic at once, like an undecodable payload; on a
    /// topic without `dlq` the handler stops with
    /// [`Error::UnknownType`](crate::Error::UnknownType), its offset uncommitted.
    #[default]
    DeadLetter,
    /// Log it (warn level), count it in
    /// [`HandlerStats::unknown_types`](crate::handler::HandlerStats::unknown_types), move on: for
    /// consumers that expect producers to add types before they know them.
    Skip,
    /// Stop the handler with [`Error::UnknownType`](crate::Error::UnknownType), its
    /// offset uncommitted, even when the topic has a `dlq`.
    Stop,
}

/// The message type a type header's value names: the value itself, or for a Rust path
/// (written by kafka-orm before the stable names) its last segment. Stable names cannot
/// contain `:`, so the two never clash.
pub(crate) fn named_by(header: &str) -> &str {
    header.rsplit("::").next().unwrap_or(header)
}

/// The type header's value in `headers`, as [`named_by`] reads it (`None` without one;
/// a value that is not UTF-8 names no type the topic carries).
pub(crate) fn of(headers: &crate::headers::Headers) -> Option<std::borrow::Cow<'_, str>> {
    let raw = headers.get(TYPE_HEADER)?;
    Some(match std::str::from_utf8(raw) {
        Ok(text) => std::borrow::Cow::Borrowed(named_by(text)),
        Err(_) => std::borrow::Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
    })
}

/// Used by `#[derive(Topic)]` on an enum: the column type of a key field of a variant's
/// struct, named by a closure (the derive does not see the field's type). Not public API.
#[doc(hidden)]
pub const fn key_column<M, K: KeyPart + ?Sized>(_field: fn(&M) -> &K) -> ColumnKind {
    K::COLUMN
}

/// Used by `#[derive(Topic)]`: [`key_column`] for a dedup field. Not public API.
#[doc(hidden)]
pub const fn dedup_column<M, D: DedupPart>(_field: fn(&M) -> &D) -> ColumnKind {
    D::COLUMN
}

/// Used by `#[derive(Topic)]`: whether two variants' fields share a column type. Not
/// public API.
#[doc(hidden)]
pub const fn same_column(a: ColumnKind, b: ColumnKind) -> bool {
    a as u8 == b as u8
}

/// Used by `#[derive(Topic)]`: the leading dedup value of a topic enum's message, its
/// message type. Not public API.
#[doc(hidden)]
pub fn dedup_value(message_type: &'static str) -> DedupValue {
    DedupValue::Text(message_type.to_owned())
}

/// Used by `#[derive(Topic)]`: how a topic enum variant's struct `M` is encoded and
/// decoded, from [`variant_codec`]. Not public API.
#[doc(hidden)]
pub struct VariantCodec<M> {
    encode: fn(&M, &mut Vec<u8>) -> Result<(), CodecError>,
    decode: fn(&[u8]) -> Result<M, CodecError>,
}

impl<M> VariantCodec<M> {
    /// Encodes the variant's struct.
    pub fn encode(&self, value: &M, out: &mut Vec<u8>) -> Result<(), CodecError> {
        (self.encode)(value, out)
    }

    /// Decodes the variant's struct and wraps it in the enum.
    pub fn decode<E>(&self, payload: &[u8], wrap: fn(M) -> E) -> Result<E, DecodeError> {
        (self.decode)(payload).map(wrap).map_err(DecodeError::Codec)
    }
}

/// Used by `#[derive(Topic)]`: the codec `C` of a topic enum variant's struct `M`. One
/// function for encoding and decoding, so that a missing bound is reported once per
/// variant. Not public API.
#[doc(hidden)]
pub const fn variant_codec<C: Codec<M>, M>() -> VariantCodec<M> {
    VariantCodec {
        encode: C::encode,
        decode: C::decode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    #[test]
    fn a_rust_path_is_read_by_its_last_segment() {
        assert_eq!(named_by("my_app::events::OrderCreated"), "OrderCreated");
        assert_eq!(named_by("OrderCreated"), "OrderCreated");
        assert_eq!(named_by("order.created"), "order.created");
    }

    #[test]
    fn the_header_is_read_from_the_last_value() {
        let headers = Headers::new()
            .with(TYPE_HEADER, "a::Old")
            .with(TYPE_HEADER, "New");
        assert_eq!(of(&headers).as_deref(), Some("New"));
        assert_eq!(of(&Headers::new()), None);
        let bad = Headers::new().with(TYPE_HEADER, vec![0xff, b'x']);
        assert_eq!(of(&bad).as_deref(), Some("\u{fffd}x"));
    }
}
