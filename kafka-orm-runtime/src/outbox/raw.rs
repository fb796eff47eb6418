//! Writing a message that is already encoded into a topic's outbox (a dead letter being
//! replayed): its key, payload and headers as they are, the typed key columns parsed
//! back from the key text.

use sea_orm::{DatabaseTransaction, Value};

use super::{NewRow, bucket_of, encode_headers, insert_new_rows, key_columns, table_of};
use crate::error::{Error, Result};
use crate::key::ColumnKind;
use crate::producer::{Headers, MESSAGE_ID_HEADER};
use crate::topic::TopicSpec;

/// An encoded message for an outbox table.
pub(crate) struct RawMessage<'a> {
    /// The message id the relayed message carries.
    pub message_id: &'a str,
    /// The key, as text (kafka-orm's keys are).
    pub key: Option<&'a str>,
    /// The encoded payload.
    pub payload: &'a [u8],
    /// Its headers (a message-id header among them is dropped: the row's id wins).
    pub headers: &'a Headers,
}

/// Writes `msg` into `spec`'s outbox inside `txn`; the relay delivers it once `txn`
/// commits, like a published event.
pub(crate) async fn publish_raw(
    txn: &DatabaseTransaction,
    spec: &'static TopicSpec,
    msg: RawMessage<'_>,
) -> Result<()> {
    crate::ident::check_spec(spec)?;
    let table = table_of(spec);
    let columns = key_columns(spec);
    let key_values = typed_key_values(msg.key, &columns).ok_or_else(|| Error::Encode {
        topic: spec.name,
        type_name: spec.type_name,
        source: format!(
            "the key {:?} does not fill the typed key columns of the outbox table `{table}`",
            msg.key
        )
        .into(),
    })?;
    let mut headers = Headers::new();
    for (name, value) in msg.headers.iter().filter(|(n, _)| *n != MESSAGE_ID_HEADER) {
        headers.insert(name, value);
    }
    let row = NewRow {
        message_id: msg.message_id.to_string(),
        key: msg.key.map(str::to_string),
        bucket: bucket_of(msg.key.map(str::as_bytes), msg.message_id),
        payload: msg.payload.to_vec(),
        headers: encode_headers(&headers),
        key_values,
    };
    insert_new_rows(txn, table, &columns, vec![row]).await
}

/// The typed key columns' values read back from a key's text (one field: its text; several:
/// a JSON array, see [`crate::key`]); `None` when the text does not fit them.
pub(crate) fn typed_key_values(
    key: Option<&str>,
    columns: &[(String, ColumnKind)],
) -> Option<Vec<Value>> {
    match columns {
        [] => Some(Vec::new()),
        [(_, kind)] => Some(vec![from_text(key?, *kind)?]),
        many => {
            let parts: Vec<serde_json::Value> = serde_json::from_str(key?).ok()?;
            if parts.len() != many.len() {
                return None;
            }
            parts
                .iter()
                .zip(many)
                .map(|(part, (_, kind))| match part {
                    serde_json::Value::String(s) => from_text(s, *kind),
                    other => from_text(&other.to_string(), *kind),
                })
                .collect()
        }
    }
}

fn from_text(text: &str, kind: ColumnKind) -> Option<Value> {
    Some(match kind {
        ColumnKind::BigInt => Value::BigInt(Some(text.parse().ok()?)),
        ColumnKind::Text => Value::String(Some(text.to_string())),
        ColumnKind::Uuid => Value::Uuid(Some(text.parse().ok()?)),
        ColumnKind::Bool => Value::Bool(Some(text.parse().ok()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(kinds: &[ColumnKind]) -> Vec<(String, ColumnKind)> {
        kinds.iter().map(|k| (format!("key_{k:?}"), *k)).collect()
    }

    #[test]
    fn key_text_is_read_back_into_typed_columns() {
        assert_eq!(typed_key_values(None, &[]), Some(vec![]));
        assert_eq!(
            typed_key_values(Some("42"), &cols(&[ColumnKind::BigInt])),
            Some(vec![Value::BigInt(Some(42))])
        );
        let id = uuid::Uuid::now_v7();
        let key = format!("[\"t-1\",7,\"{id}\",\"true\"]");
        let kinds = [
            ColumnKind::Text,
            ColumnKind::BigInt,
            ColumnKind::Uuid,
            ColumnKind::Bool,
        ];
        assert_eq!(
            typed_key_values(Some(&key), &cols(&kinds)),
            Some(vec![
                Value::String(Some("t-1".into())),
                Value::BigInt(Some(7)),
                Value::Uuid(Some(id)),
                Value::Bool(Some(true)),
            ])
        );
    }

    #[test]
    fn a_key_that_does_not_fit_is_none() {
        let one = cols(&[ColumnKind::BigInt]);
        assert_eq!(typed_key_values(Some("x"), &one), None);
        assert_eq!(typed_key_values(None, &one), None);
        let two = cols(&[ColumnKind::Text, ColumnKind::Text]);
        assert_eq!(typed_key_values(Some("[\"a\"]"), &two), None);
        assert_eq!(typed_key_values(Some("a,b"), &two), None);
    }
}
