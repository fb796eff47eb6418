//! Message keys and inbox deduplication keys built from struct fields.
//!
//! The derive calls [`single`] or [`Composite`] for `key = ..` and [`DedupPart::dedup_value`]
//! for `inbox(dedup = ..)`. A field whose type implements neither trait is a compile error
//! that points at the field; implement [`KeyPart`] / [`DedupPart`] for your own newtypes.
//!
//! Each key field of an outbox topic is also stored in a typed column of the outbox table
//! (`key_<field>`, see [`KeyPart::COLUMN`]), and each dedup field in a typed column of the
//! inbox table (`dedup_<field>`, see [`DedupPart::COLUMN`]).

use std::borrow::Cow;
use std::fmt;

use sea_orm::Value;

/// The bytes of a Kafka message key.
pub type KeyBytes = Vec<u8>;

/// A value that can be (part of) a Kafka message key.
///
/// For your own type, [`key_text`](KeyPart::key_text) is enough: in an outbox table its
/// `key_<field>` column is then `TEXT` holding the key text. Set [`COLUMN`](KeyPart::COLUMN)
/// and [`key_value`](KeyPart::key_value) together for a typed column (e.g. `BIGINT` for an
/// integer newtype); the generated outbox entity follows `COLUMN`.
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
    /// The type of this part's `key_<field>` column in the outbox table. By default
    /// [`ColumnKind::Text`], holding [`KeyPart::key_text`].
    const COLUMN: ColumnKind = ColumnKind::Text;
    /// The value of this part's `key_<field>` column; it must be of the type [`COLUMN`]
    /// says (`Value::BigInt`, `Value::String`, `Value::Uuid` or `Value::Bool`), or
    /// publishing fails with [`Error::Encode`](crate::error::Error::Encode). By default the
    /// key text.
    ///
    /// [`COLUMN`]: KeyPart::COLUMN
    fn key_value(&self) -> Value {
        Value::String(Some(self.key_text().into_owned()))
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn key_text(&self) -> Cow<'_, str> {
        (**self).key_text()
    }
    const NUMERIC: bool = T::NUMERIC;
    const COLUMN: ColumnKind = T::COLUMN;
    fn key_value(&self) -> Value {
        (**self).key_value()
    }
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
    const COLUMN: ColumnKind = ColumnKind::Bool;
    fn key_value(&self) -> Value {
        Value::Bool(Some(*self))
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
    const COLUMN: ColumnKind = ColumnKind::Uuid;
    fn key_value(&self) -> Value {
        Value::Uuid(Some(*self))
    }
}

/// Integers that fit a `BIGINT` column (`isize` is at most 64 bits on every target).
macro_rules! bigint_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn key_text(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
            const NUMERIC: bool = true;
            const COLUMN: ColumnKind = ColumnKind::BigInt;
            #[allow(clippy::cast_lossless, trivial_numeric_casts)]
            fn key_value(&self) -> Value {
                Value::BigInt(Some(*self as i64))
            }
        }
    )*};
}
bigint_key_part!(i8, i16, i32, i64, u8, u16, u32, isize);

/// Integers that may not fit a `BIGINT` column: their column is `TEXT`, in decimal.
macro_rules! text_numeric_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn key_text(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
            const NUMERIC: bool = true;
        }
    )*};
}
text_numeric_key_part!(i128, u64, u128, usize);

/// The SQL type of a typed key or dedup column: `key_<field>` in the outbox table (see
/// [`KeyPart::COLUMN`]), `dedup_<field>` in the inbox table (see [`DedupPart::COLUMN`]).
///
/// Generated entities map it to a Rust type through its discriminant (see
/// [`ColumnType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ColumnKind {
    /// `BIGINT` (Rust `i64`): integers up to `i64`/`u32`, and `isize` in keys.
    BigInt = 0,
    /// `TEXT` (Rust `String`): strings, and in keys `char`, `u64`, `usize`, `i128`,
    /// `u128` (in decimal) and, by default, your own key types (their key text).
    Text = 1,
    /// `UUID` on PostgreSQL, a 16-byte `BLOB` on SQLite (Rust `uuid::Uuid`).
    Uuid = 2,
    /// `BOOLEAN` (Rust `bool`).
    Bool = 3,
}

impl ColumnKind {
    /// The Rust type of the column's field in a generated entity.
    pub(crate) const fn rust(self) -> &'static str {
        match self {
            ColumnKind::BigInt => "i64",
            ColumnKind::Text => "String",
            ColumnKind::Uuid => "uuid::Uuid",
            ColumnKind::Bool => "bool",
        }
    }

    /// Whether `value` has this column's type.
    pub(crate) fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (ColumnKind::BigInt, Value::BigInt(Some(_)))
                | (ColumnKind::Text, Value::String(Some(_)))
                | (ColumnKind::Uuid, Value::Uuid(Some(_)))
                | (ColumnKind::Bool, Value::Bool(Some(_)))
        )
    }
}

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

/// The Rust type of a typed column, from its kind's discriminant: generated entities
/// name a column of a field type they do not know by name as
/// `ColumnType<{ <Ty as KeyPart>::COLUMN as u8 }>` (or `DedupPart`).
#[doc(hidden)]
pub type ColumnType<const KIND: u8> = <Kind<KIND> as ColumnRust>::Type;

/// See [`ColumnType`].
#[doc(hidden)]
pub struct Kind<const KIND: u8>;

/// See [`ColumnType`].
#[doc(hidden)]
pub trait ColumnRust {
    type Type;
}

impl ColumnRust for Kind<{ ColumnKind::BigInt as u8 }> {
    type Type = i64;
}
impl ColumnRust for Kind<{ ColumnKind::Text as u8 }> {
    type Type = String;
}
impl ColumnRust for Kind<{ ColumnKind::Uuid as u8 }> {
    type Type = uuid::Uuid;
}
impl ColumnRust for Kind<{ ColumnKind::Bool as u8 }> {
    type Type = bool;
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
    const COLUMN: ColumnKind;
    /// The typed value.
    fn dedup_value(&self) -> DedupValue;
}

impl DedupPart for String {
    const COLUMN: ColumnKind = ColumnKind::Text;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Text(self.clone())
    }
}

impl DedupPart for Box<str> {
    const COLUMN: ColumnKind = ColumnKind::Text;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Text(self.to_string())
    }
}

impl DedupPart for uuid::Uuid {
    const COLUMN: ColumnKind = ColumnKind::Uuid;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Uuid(*self)
    }
}

impl DedupPart for bool {
    const COLUMN: ColumnKind = ColumnKind::Bool;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Bool(*self)
    }
}

macro_rules! int_dedup_part {
    ($($t:ty),*) => {$(
        impl DedupPart for $t {
            const COLUMN: ColumnKind = ColumnKind::BigInt;
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
    fn key_columns_are_typed() {
        assert_eq!(<i64 as KeyPart>::COLUMN, ColumnKind::BigInt);
        assert_eq!(<u32 as KeyPart>::COLUMN, ColumnKind::BigInt);
        assert_eq!(<isize as KeyPart>::COLUMN, ColumnKind::BigInt);
        assert_eq!(<u64 as KeyPart>::COLUMN, ColumnKind::Text);
        assert_eq!(<&str as KeyPart>::COLUMN, ColumnKind::Text);
        assert_eq!(<char as KeyPart>::COLUMN, ColumnKind::Text);
        assert_eq!(<uuid::Uuid as KeyPart>::COLUMN, ColumnKind::Uuid);
        assert_eq!(<bool as KeyPart>::COLUMN, ColumnKind::Bool);
        assert_eq!(7_u32.key_value(), Value::BigInt(Some(7)));
        assert_eq!(
            u64::MAX.key_value(),
            Value::String(Some(u64::MAX.to_string()))
        );
        assert_eq!('x'.key_value(), Value::String(Some("x".into())));
        for (part, column) in [
            (1_i8.key_value(), <i8 as KeyPart>::COLUMN),
            ("a".key_value(), <str as KeyPart>::COLUMN),
            (
                uuid::Uuid::nil().key_value(),
                <uuid::Uuid as KeyPart>::COLUMN,
            ),
            (true.key_value(), <bool as KeyPart>::COLUMN),
            (1_u128.key_value(), <u128 as KeyPart>::COLUMN),
        ] {
            assert!(column.accepts(&part), "{column:?} {part:?}");
        }
    }

    #[test]
    fn column_types_follow_the_kind() {
        fn same<A: 'static, B: 'static>() -> bool {
            std::any::TypeId::of::<A>() == std::any::TypeId::of::<B>()
        }
        assert!(same::<ColumnType<{ <i16 as KeyPart>::COLUMN as u8 }>, i64>());
        assert!(same::<ColumnType<{ <u64 as KeyPart>::COLUMN as u8 }>, String>());
        assert!(same::<
            ColumnType<{ <uuid::Uuid as DedupPart>::COLUMN as u8 }>,
            uuid::Uuid,
        >());
        assert!(same::<
            ColumnType<{ <bool as DedupPart>::COLUMN as u8 }>,
            bool,
        >());
        assert!(same::<
            ColumnType<{ <String as DedupPart>::COLUMN as u8 }>,
            String,
        >());
    }

    #[test]
    fn dedup_values_are_typed() {
        assert_eq!(7_u32.dedup_value(), DedupValue::Int(7));
        assert_eq!("x".to_string().dedup_value(), DedupValue::Text("x".into()));
        assert_eq!(<i16 as DedupPart>::COLUMN, ColumnKind::BigInt);
    }
}
