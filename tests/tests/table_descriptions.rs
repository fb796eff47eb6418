//! The SeaORM entities `#[derive(Topic)]` generates have exactly the columns of the tables
//! `schema::migrate` creates, on real PostgreSQL and SQLite: same names in the same order,
//! same nullability, compatible types, same primary key. The entity side is read through
//! SeaORM (`Column::iter()`, `column.def()`), the table side from the database itself
//! (`information_schema` / `pragma_table_info`), so neither goes through kafka-orm's own
//! table descriptions.

use std::borrow::Cow;

use kafka_orm::deps::sea_orm::prelude::Uuid;
use kafka_orm::deps::sea_orm::sea_query::ColumnType;
use kafka_orm::deps::sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, IdenStatic, Iterable,
    PrimaryKeyToColumn, Statement,
};
use kafka_orm::{ColumnKind, DedupPart, DedupValue, KeyPart, Topic, schema};
use kafka_orm_tests::{fresh_postgres, fresh_sqlite};
use serde::{Deserialize, Serialize};

/// A newtype key in a `BIGINT` column (its entity field type comes from the trait).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderNo(pub i64);

impl KeyPart for OrderNo {
    fn key_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.0.to_string())
    }
    const NUMERIC: bool = true;
    const COLUMN: ColumnKind = ColumnKind::BigInt;
    fn key_value(&self) -> kafka_orm::deps::sea_orm::Value {
        self.0.into()
    }
}

/// A newtype dedup part in a `UUID` column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventId(pub Uuid);

impl DedupPart for EventId {
    const COLUMN: ColumnKind = ColumnKind::Uuid;
    fn dedup_value(&self) -> DedupValue {
        DedupValue::Uuid(self.0)
    }
}

/// Typed key columns of every kind (text, integer, UUID, boolean, a `u64` in text, a
/// newtype, a mixed-case field name) and typed dedup columns of every kind.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "descriptions.everything",
    key = ["tenant", "seq", "device", "active", "serial", "order", "customerId"],
    outbox,
    inbox(dedup = ["tenant", "attempt", "device", "active", "event"]),
    group = "descriptions"
)]
pub struct Everything {
    pub tenant: String,
    pub seq: i64,
    pub device: Uuid,
    pub active: bool,
    pub serial: u64,
    pub order: OrderNo,
    pub customerId: String,
    pub attempt: i32,
    pub event: EventId,
}

/// An outbox without a key (no typed columns) and a bare inbox (`message_id`), in renamed
/// tables.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "descriptions.bare",
    outbox(table = "bare_events"),
    inbox(table = "bare_seen"),
    group = "descriptions"
)]
pub struct Bare {
    pub note: String,
}

/// One column as the entity or the database has it.
#[derive(Debug, Clone, PartialEq)]
struct Described {
    name: String,
    /// The SQL type: SeaORM's column type, or the database's type name.
    ty: String,
    nullable: bool,
    primary_key: bool,
}

/// The entity's columns, through SeaORM.
fn entity<E: EntityTrait>() -> Vec<Described> {
    let keys: Vec<String> = E::PrimaryKey::iter()
        .map(|k| k.into_column().as_str().to_string())
        .collect();
    E::Column::iter()
        .map(|column| {
            let def = column.def();
            let name = column.as_str().to_string();
            Described {
                primary_key: keys.contains(&name),
                ty: format!("{:?}", def.get_column_type()),
                nullable: def.is_null(),
                name,
            }
        })
        .collect()
}

/// The table's columns, in order, as the database has them.
async fn table(db: &DatabaseConnection, table: &str) -> Vec<Described> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT c.column_name::text, c.data_type::text, c.is_nullable = 'YES', \
             EXISTS (SELECT 1 FROM information_schema.table_constraints t \
               JOIN information_schema.key_column_usage k \
                 ON k.constraint_name = t.constraint_name AND k.table_schema = t.table_schema \
               WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = c.table_schema \
                 AND t.table_name = c.table_name AND k.column_name = c.column_name) \
             FROM information_schema.columns c \
             WHERE c.table_schema = current_schema() AND c.table_name = $1 \
             ORDER BY c.ordinal_position"
        }
        _ => "SELECT name, type, \"notnull\" = 0, pk > 0 FROM pragma_table_info($1) ORDER BY cid",
    };
    db.query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await
        .unwrap()
        .iter()
        .map(|r| Described {
            name: r.try_get_by_index(0).unwrap(),
            ty: r.try_get_by_index(1).unwrap(),
            nullable: r.try_get_by_index(2).unwrap(),
            primary_key: r.try_get_by_index(3).unwrap(),
        })
        .collect()
}

/// The database type names a SeaORM column type may be stored as, per backend: the
/// oracle of this test, written here and not taken from kafka-orm.
fn stored_as(column_type: &ColumnType, backend: DbBackend) -> &'static [&'static str] {
    let postgres = backend == DbBackend::Postgres;
    match column_type {
        ColumnType::BigInteger if postgres => &["bigint"],
        // SQLite's 64-bit row id is spelled `INTEGER`.
        ColumnType::BigInteger => &["BIGINT", "INTEGER"],
        ColumnType::Integer if postgres => &["integer"],
        ColumnType::Integer => &["INTEGER"],
        ColumnType::String(_) | ColumnType::Text if postgres => &["text"],
        ColumnType::String(_) | ColumnType::Text => &["TEXT"],
        ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob if postgres => {
            &["bytea"]
        }
        ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => &["BLOB"],
        ColumnType::Uuid if postgres => &["uuid"],
        // A 16-byte BLOB, the form SeaORM reads a `Uuid` from on SQLite.
        ColumnType::Uuid => &["BLOB"],
        ColumnType::Boolean if postgres => &["boolean"],
        ColumnType::Boolean => &["BOOLEAN"],
        _ => &[],
    }
}

/// `E`'s columns are `name`'s columns on `db`.
async fn same_columns<E: EntityTrait>(db: &DatabaseConnection, name: &str) {
    let backend = db.get_database_backend();
    let entity = entity::<E>();
    let table = table(db, name).await;
    let names = |cs: &[Described]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&entity),
        names(&table),
        "{backend:?} `{name}`: the entity's columns (left) and the table's (right)"
    );
    for (e, t) in entity.iter().zip(&table) {
        let column_type = E::Column::iter()
            .find(|c| c.as_str() == e.name)
            .map(|c| c.def().get_column_type().clone())
            .unwrap();
        assert!(
            stored_as(&column_type, backend).contains(&t.ty.as_str()),
            "{backend:?} `{name}`.`{}`: the entity's {} is stored as {}",
            e.name,
            e.ty,
            t.ty
        );
        assert_eq!(
            (e.nullable, e.primary_key),
            (t.nullable, t.primary_key),
            "{backend:?} `{name}`.`{}`: (nullable, primary key) of the entity (left) and the table (right)",
            e.name
        );
    }
}

async fn every_entity_matches_its_table(db: &DatabaseConnection) {
    schema::migrate(db, &[Everything::SPEC, Bare::SPEC])
        .await
        .unwrap();
    same_columns::<everything_outbox::Entity>(db, "everything_outbox").await;
    same_columns::<everything_inbox::Entity>(db, "everything_inbox").await;
    same_columns::<bare_events::Entity>(db, "bare_events").await;
    same_columns::<bare_seen::Entity>(db, "bare_seen").await;
    // The typed columns are there, named and typed as the docs say.
    let outbox = entity::<everything_outbox::Entity>();
    let typed: Vec<(&str, &str)> = outbox[10..]
        .iter()
        .map(|c| (c.name.as_str(), c.ty.as_str()))
        .collect();
    assert_eq!(
        typed,
        [
            ("key_tenant", "String(None)"),
            ("key_seq", "BigInteger"),
            ("key_device", "Uuid"),
            ("key_active", "Boolean"),
            ("key_serial", "String(None)"),
            ("key_order", "BigInteger"),
            ("key_customerid", "String(None)"),
        ]
    );
    assert_eq!(entity::<bare_seen::Entity>()[2].name, "message_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_entities_have_the_columns_of_the_created_tables() {
    let Some(db) = fresh_postgres("table-descriptions-pg").await else {
        return;
    };
    every_entity_matches_its_table(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_entities_have_the_columns_of_the_created_tables() {
    let db = fresh_sqlite("table-descriptions-sqlite").await;
    every_entity_matches_its_table(&db).await;
}
