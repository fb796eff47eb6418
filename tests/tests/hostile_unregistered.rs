//! Hand-written `impl Topic`s with injections in their table and column names that are
//! never registered (so `build()` never sees them): `publish`, the inbox purge and
//! `schema::statements` check the spec themselves, return a typed error and run nothing.

use kafka_orm::__private::KeyBytes;
use kafka_orm::deps::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use kafka_orm::{
    DedupValue, Error, InboxSpec, Json, KafkaOrm, OutboxSpec, OutboxTopic, Producible, Topic,
    TopicSpec, inbox, schema,
};
use kafka_orm_tests::{fresh_postgres, real_kafka};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Evil {
    id: i64,
}

/// One evil type per hostile spec: `Topic::SPEC` is a constant of the type.
macro_rules! evil_topic {
    ($ty:ident, $spec:expr) => {
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct $ty(Evil);
        impl Topic for $ty {
            const SPEC: &'static TopicSpec = &$spec;
            type Codec = Json;
            fn key(&self) -> Option<KeyBytes> {
                Some(kafka_orm::__private::key::single(&self.0.id))
            }
            fn dedup_key(&self) -> Vec<DedupValue> {
                vec![DedupValue::Int(self.0.id)]
            }
        }
        impl Producible for $ty {}
        impl OutboxTopic for $ty {}
    };
}

// Unquoted, the publish statement would be `INSERT INTO "victim" (id) VALUES (99) --" (..)`:
// a row in someone else's table.
evil_topic!(
    EvilOutbox,
    TopicSpec::new("hostile_unregistered::EvilOutbox", "evil-outbox")
        .outbox(OutboxSpec::new("victim\" (id) VALUES (99) --"))
);
// Unquoted, the purge would be `DELETE FROM "victim" --" WHERE ..`: every row of it.
evil_topic!(
    EvilInbox,
    TopicSpec::new("hostile_unregistered::EvilInbox", "evil-inbox").inbox(InboxSpec::new(
        "victim\" --",
        &[],
        60
    ))
);
evil_topic!(
    EvilDedup,
    TopicSpec::new("hostile_unregistered::EvilDedup", "evil-dedup").inbox(InboxSpec::new(
        "evil_inbox",
        &["id BIGINT, x"],
        60
    ))
);
evil_topic!(
    EvilKey,
    TopicSpec::new("hostile_unregistered::EvilKey", "evil-key")
        .key_fields(&["id\" BIGINT NOT NULL, \"x"])
        .outbox(OutboxSpec::new("evil_outbox"))
);

fn assert_invalid(err: &Error, spec: &TopicSpec, field: &str, name: &str) {
    match err {
        Error::InvalidIdentifier {
            type_name,
            field: f,
            name: n,
            ..
        } => {
            assert_eq!(*type_name, spec.type_name);
            assert_eq!((*f, n.as_str()), (field, name));
        }
        other => panic!("expected Error::InvalidIdentifier, got {other:?}"),
    }
}

async fn victim(db: &DatabaseConnection) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT id FROM victim ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get_by_index(0).unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_purge_refuse_hostile_names_and_touch_nothing() {
    let Some(builder) = real_kafka("hostile-unregistered") else {
        return;
    };
    let Some(db) = fresh_postgres("hostile-unregistered").await else {
        return;
    };
    db.execute_unprepared("CREATE TABLE victim (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    db.execute_unprepared("INSERT INTO victim VALUES (1), (2)")
        .await
        .unwrap();
    let orm: KafkaOrm = builder.database(db.clone()).build().await.unwrap();

    let txn = db.begin().await.unwrap();
    let err = orm
        .topic::<EvilOutbox>()
        .publish(&txn, &EvilOutbox(Evil { id: 7 }))
        .await
        .unwrap_err();
    assert_invalid(
        &err,
        EvilOutbox::SPEC,
        "outbox.table",
        "victim\" (id) VALUES (99) --",
    );
    // The transaction is still usable (nothing failed inside it) and commits nothing.
    txn.commit().await.unwrap();
    assert_eq!(victim(&db).await, [1, 2]);

    let err = inbox::purge(&db, EvilInbox::SPEC, i64::MAX, 1000)
        .await
        .unwrap_err();
    assert_invalid(&err, EvilInbox::SPEC, "inbox.table", "victim\" --");
    let err = inbox::purge_expired(&db, &[EvilInbox::SPEC])
        .await
        .unwrap_err();
    assert_invalid(&err, EvilInbox::SPEC, "inbox.table", "victim\" --");
    assert_eq!(victim(&db).await, [1, 2]);
}

#[test]
fn schema_statements_refuse_hostile_column_names() {
    let err = schema::statements(&[EvilDedup::SPEC], DbBackend::Postgres).unwrap_err();
    assert_invalid(&err, EvilDedup::SPEC, "inbox.dedup_fields", "id BIGINT, x");
    let err = schema::statements(&[EvilKey::SPEC], DbBackend::Sqlite).unwrap_err();
    assert_invalid(
        &err,
        EvilKey::SPEC,
        "key_fields",
        "id\" BIGINT NOT NULL, \"x",
    );
}
