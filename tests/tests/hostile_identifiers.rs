//! A hand-written `impl Topic` whose outbox table name is an SQL injection: `build()`
//! refuses it with a typed error before any SQL runs, so the victim table survives.
//! (Its own test binary: the registered hostile type makes every `build()` in the binary
//! fail. `hostile_unregistered.rs` covers types that are never registered.)

use kafka_orm::__private::KeyBytes;
use kafka_orm::deps::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use kafka_orm::schema;
use kafka_orm::{DedupValue, Error, Json, OutboxSpec, Topic, TopicSpec};
use kafka_orm_tests::{fresh_postgres, real_kafka};
use serde::{Deserialize, Serialize};

/// With the naive `"{table}"` interpolation, the outbox DDL becomes three valid
/// statements: `CREATE TABLE IF NOT EXISTS "x" (id INT); DROP TABLE victim; CREATE TABLE
/// "w" (..the outbox columns..)`, run at once by the migration's simple query.
const HOSTILE_TABLE: &str = "x\" (id INT); DROP TABLE victim; CREATE TABLE \"w";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hostile {
    id: i64,
}

impl Topic for Hostile {
    const SPEC: &'static TopicSpec = &TopicSpec::new("hostile_identifiers::Hostile", "hostile")
        .key_fields(&["id"])
        .outbox(OutboxSpec::new(HOSTILE_TABLE));
    type Codec = Json;
    fn key(&self) -> Option<KeyBytes> {
        Some(kafka_orm::__private::key::single(&self.id))
    }
    fn dedup_key(&self) -> Vec<DedupValue> {
        Vec::new()
    }
}

kafka_orm::__private::inventory::submit! {
    kafka_orm::TopicRegistration::new(<Hostile as Topic>::SPEC)
}

async fn tables(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get_by_index(0).unwrap())
    .collect()
}

fn assert_names_the_hostile_table(err: &Error) {
    match err {
        Error::InvalidIdentifier {
            type_name,
            field,
            name,
            reason,
        } => {
            assert_eq!(*type_name, "hostile_identifiers::Hostile");
            assert_eq!(*field, "outbox.table");
            assert_eq!(name, HOSTILE_TABLE);
            assert!(reason.contains("is not allowed"), "{reason}");
        }
        other => panic!("expected Error::InvalidIdentifier, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("hostile_identifiers::Hostile") && text.contains("outbox.table"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_table_name_fails_build_with_a_typed_error_and_runs_no_sql() {
    let Some(builder) = real_kafka("hostile-build") else {
        return;
    };
    let Some(db) = fresh_postgres("hostile-build").await else {
        return;
    };
    db.execute_unprepared("CREATE TABLE victim (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    db.execute_unprepared("INSERT INTO victim VALUES (1), (2)")
        .await
        .unwrap();

    let err = builder.database(db.clone()).build().await.unwrap_err();
    assert_names_the_hostile_table(&err);

    // Nothing ran: the victim is there with its rows, and no kafka-orm table was created
    // (not even the lease tables, whose DDL comes after the outbox's).
    assert_eq!(tables(&db).await, ["victim"]);
    let rows = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) FROM victim",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn schema_statements_refuse_the_hostile_spec() {
    for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
        let err = schema::statements(&[Hostile::SPEC], backend).unwrap_err();
        assert_names_the_hostile_table(&err);
    }
}
