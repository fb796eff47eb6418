//! The generated SeaORM entities of the outbox and inbox tables, queried with SeaORM.
#![deny(warnings)]

use std::borrow::Cow;

use kafka_orm::deps::sea_orm::prelude::Uuid;
use kafka_orm::deps::sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
};
use kafka_orm::{ColumnKind, DedupPart, DedupValue, KeyPart, Topic};
use serde::{Deserialize, Serialize};

/// A newtype key stored in a `BIGINT` column.
#[derive(Serialize, Deserialize)]
pub struct OrderId(pub i64);

impl KeyPart for OrderId {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.0.to_string())
    }
    const NUMERIC: bool = true;
    const COLUMN: ColumnKind = ColumnKind::BigInt;
    fn key_value(&self) -> kafka_orm::deps::sea_orm::Value {
        self.0.into()
    }
}

/// A newtype key with the default column: its key text.
#[derive(Serialize, Deserialize)]
pub struct Region(pub String);

impl KeyPart for Region {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}

/// A newtype dedup part stored in a `UUID` column.
#[derive(Serialize, Deserialize)]
pub struct EventId(pub Uuid);

impl DedupPart for EventId {
    const COLUMN: ColumnKind = ColumnKind::Uuid;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Uuid(self.0)
    }
}

type Tenant = String;

#[derive(Serialize, Deserialize, Topic)]
#[topic(key = ["tenant", "order_id", "region", "seq"], outbox, inbox(dedup = ["tenant", "event_id", "seq"]))]
pub struct OrderPlaced {
    pub tenant: Tenant,
    pub order_id: OrderId,
    pub region: Region,
    pub seq: u32,
    pub event_id: EventId,
}

/// A bare inbox and a renamed outbox table; `crate` paths are absolute.
#[derive(Serialize, Deserialize, Topic)]
#[topic(key = "id", outbox(table = "type"), inbox, crate = "::kafka_orm")]
pub(crate) struct Renamed {
    pub id: Uuid,
}

async fn queries(db: &DatabaseConnection) -> Result<(), DbErr> {
    use order_placed_outbox as outbox;
    let n: u64 = outbox::Entity::find()
        .filter(outbox::Column::KeyTenant.eq("acme"))
        .filter(outbox::Column::KeyOrderId.eq(42_i64))
        .count(db)
        .await?;
    let _ = n;
    for row in outbox::Entity::find().all(db).await? {
        let outbox::Model {
            id,
            message_id,
            message_key,
            bucket,
            payload,
            headers,
            created_at,
            attempts,
            next_attempt_at,
            last_error,
            key_tenant,
            key_order_id,
            key_region,
            key_seq,
        } = row;
        let _: (i64, String, Option<String>, i32) = (id, message_id, message_key, bucket);
        let _: (Vec<u8>, Vec<u8>, i64, i32, i64) = (payload, headers, created_at, attempts, next_attempt_at);
        let _: Option<String> = last_error;
        let _: (String, i64, String, i64) = (key_tenant, key_order_id, key_region, key_seq);
    }
    for row in order_placed_inbox::Entity::find().all(db).await? {
        let order_placed_inbox::Model {
            id,
            consumer_group,
            dedup_tenant,
            dedup_event_id,
            dedup_seq,
            topic,
            kafka_partition,
            kafka_offset,
            processed_at,
        } = row;
        let _: (i64, String, String, Uuid, i64) =
            (id, consumer_group, dedup_tenant, dedup_event_id, dedup_seq);
        let _: (String, i32, i64, i64) = (topic, kafka_partition, kafka_offset, processed_at);
    }
    let renamed: Option<r#type::Model> = r#type::Entity::find_by_id(1).one(db).await?;
    let _: Option<Uuid> = renamed.map(|m| m.key_id);
    let bare: Vec<renamed_inbox::Model> = renamed_inbox::Entity::find()
        .filter(renamed_inbox::Column::MessageId.eq("x"))
        .all(db)
        .await?;
    let _: Vec<String> = bare.into_iter().map(|m| m.message_id).collect();
    Ok(())
}

fn main() {
    let _ = queries;
    assert_eq!(
        OrderPlaced::SPEC.outbox.unwrap().key_columns,
        [ColumnKind::Text, ColumnKind::BigInt, ColumnKind::Text, ColumnKind::BigInt]
    );
}
