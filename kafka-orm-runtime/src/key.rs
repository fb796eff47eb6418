//! Message keys and inbox deduplication keys built from struct fields.
//!
//! The derive calls [`single`] or [`Composite`] for `key = ..` and [`DedupPart::dedup_value`]
//! for `inbox(dedup = ..)`. A field whose type implements neither trait is a compile error
//! that points at the field; implement [`KeyPart`] / [`DedupPart`] for your own newtypes.

use std::borrow::Cow;
use std::fmt;

/// The bytes of a Kafka message key.
pub type KeyBytes = Vec<u8>;

/// A value that can be (part of) a Kafka message key.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a kafka-orm message key",
    label = "this field is named in `key = ..`",
    note = "keys are strings, integers, `bool`, `char` or `uuid::Uuid`; implement `kafka_orm::KeyPart` for your own type"
)]
pub trait KeyPart {
    /// The key text of this value (a `String` as is, integers in decimal).
    fn key_text(&self) -> Cow<'_, str>;
    /// Whether the value is a number in a composite (JSON array) key.
    const NUMERIC: bool = false;
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn key_text(&self) -> Cow<'_, str> {
        (**self).key_text()
    }
    const NUMERIC: bool = T::NUMERIC;
}

impl KeyPart for str {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyPart for String {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
}

impl KeyPart for Box<str> {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyPart for bool {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(if *self { "true" } else { "false" })
    }
}

impl KeyPart for char {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

impl KeyPart for uuid::Uuid {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.hyphenated().to_string())
    }
}

macro_rules! numeric_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn key_text(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
            const NUMERIC: bool = true;
        }
    )*};
}
numeric_key_part!(
    i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize
);

/// The key of a topic with one key field: the field's text.
pub fn single<K: KeyPart + ?Sized>(part: &K) -> KeyBytes {
    part.key_text().into_owned().into_bytes()
}

/// The key of a topic with several key fields: a JSON array of the parts, numbers as
/// numbers and everything else as strings, e.g. `["acme",42]`.
#[derive(Debug, Default)]
pub struct Composite {
    buf: String,
}

impl Composite {
    /// An empty composite key.
    pub fn new() -> Self {
        Composite {
            buf: String::from("["),
        }
    }

    /// Appends one part.
    pub fn push<K: KeyPart + ?Sized>(&mut self, part: &K) -> &mut Self {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        let text = part.key_text();
        if K::NUMERIC {
            self.buf.push_str(&text);
        } else {
            // A JSON string literal; serializing a &str cannot fail.
            self.buf
                .push_str(&serde_json::Value::from(text.as_ref()).to_string());
        }
        self
    }

    /// The finished key bytes.
    pub fn finish(&mut self) -> KeyBytes {
        let mut out = std::mem::take(&mut self.buf);
        out.push(']');
        out.into_bytes()
    }
}

/// One typed value of an inbox deduplication key; it becomes one typed column of the
/// topic's inbox table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DedupValue {
    /// Any integer type that fits a signed 64-bit column.
    Int(i64),
    /// Text.
    Text(String),
    /// A UUID.
    Uuid(uuid::Uuid),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for DedupValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DedupValue::Int(v) => write!(f, "{v}"),
            DedupValue::Text(v) => write!(f, "{v:?}"),
            DedupValue::Uuid(v) => write!(f, "{v}"),
            DedupValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// The column type a dedup field is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupColumn {
    /// `BIGINT`.
    BigInt,
    /// `TEXT`.
    Text,
    /// `UUID` (text on SQLite).
    Uuid,
    /// `BOOLEAN`.
    Bool,
}

/// A value that can be (part of) an inbox deduplication key: it must compare exactly, so
/// floats, collections and maps are not accepted.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a kafka-orm inbox dedup key",
    label = "this field is named in `inbox(dedup = ..)`",
    note = "dedup keys are strings, integers up to 64 bits, `bool` or `uuid::Uuid`; implement `kafka_orm::DedupPart` for your own type"
)]
pub trait DedupPart {
    /// The column type of this part in the inbox table.
    const COLUMN: DedupColumn;
    /// The typed value.
    fn dedup_value(&self) -> DedupValue;
}

impl DedupPart for String {
    const COLUMN: DedupColumn = DedupColumn::Text;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Text(self.clone())
    }
}

impl DedupPart for Box<str> {
    const COLUMN: DedupColumn = DedupColumn::Text;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Text(self.to_string())
    }
}

impl DedupPart for uuid::Uuid {
    const COLUMN: DedupColumn = DedupColumn::Uuid;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Uuid(*self)
    }
}

impl DedupPart for bool {
    const COLUMN: DedupColumn = DedupColumn::Bool;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Bool(*self)
    }
}

macro_rules! int_dedup_part {
    ($($t:ty),*) => {$(
        impl DedupPart for $t {
            const COLUMN: DedupColumn = DedupColumn::BigInt;
            fn dedup_value(&self) -> DedupValue {
                DedupValue::Int(i64::from(*self))
            }
        }
    )*};
}
int_dedup_part!(i8, i16, i32, i64, u8, u16, u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_keys_are_text() {
        assert_eq!(single("cust-1"), b"cust-1");
        assert_eq!(single(&42_i64), b"42");
        assert_eq!(single(&-7_i32), b"-7");
        assert_eq!(single(&true), b"true");
    }

    #[test]
    fn composite_keys_are_json_arrays() {
        let key = Composite::new()
            .push("acme")
            .push(&42_u32)
            .push("quote\"d")
            .finish();
        assert_eq!(String::from_utf8(key).unwrap(), r#"["acme",42,"quote\"d"]"#);
        let parsed: serde_json::Value =
            serde_json::from_slice(&Composite::new().push("a,b").push(&1_i8).finish()).unwrap();
        assert_eq!(parsed, serde_json::json!(["a,b", 1]));
    }

    #[test]
    fn dedup_values_are_typed() {
        assert_eq!(7_u32.dedup_value(), DedupValue::Int(7));
        assert_eq!("x".to_string().dedup_value(), DedupValue::Text("x".into()));
        assert_eq!(<i16 as DedupPart>::COLUMN, DedupColumn::BigInt);
    }
}
