//! Table names at PostgreSQL's 63-byte limit (which the derive allows): the indexes
//! kafka-orm creates on them must still exist. PostgreSQL truncates longer identifiers
//! silently, and `<table>_dedup` truncated to 63 bytes is the table's own name: `CREATE
//! UNIQUE INDEX IF NOT EXISTS` then skipped the inbox's unique index, and a duplicate was
//! applied twice.

use std::time::Duration;

use kafka_orm::Topic;
use kafka_orm::deps::sea_orm::{ConnectionTrait, DbBackend, Statement};
use kafka_orm_tests::{fresh_postgres, real_kafka, within};
use serde::{Deserialize, Serialize};

const INBOX: &str = "long_inbox_name_at_the_postgres_limit_of_sixty_three_bytes_abcd";
const OUTBOX: &str = "long_outbox_name_at_the_postgres_limit_of_sixty_three_bytes_abc";

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "long.names",
    key = "id",
    outbox(table = "long_outbox_name_at_the_postgres_limit_of_sixty_three_bytes_abc"),
    inbox(
        dedup = "id",
        table = "long_inbox_name_at_the_postgres_limit_of_sixty_three_bytes_abcd"
    ),
    partitions = 1,
    group = "long-names"
)]
struct LongNamed {
    id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_at_the_length_limit_keep_their_indexes_and_the_inbox_dedups() {
    assert_eq!((INBOX.len(), OUTBOX.len()), (63, 63));
    let Some(builder) = real_kafka("long-names") else {
        return;
    };
    let Some(db) = fresh_postgres("long-names").await else {
        return;
    };
    let orm = builder.database(db.clone()).build().await.unwrap();
    let indexes = |table: &'static str| {
        let db = db.clone();
        async move {
            db.query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
                [table.into()],
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
        }
    };
    let inbox = indexes(INBOX).await;
    assert!(
        inbox
            .iter()
            .any(|d| d.contains("UNIQUE") && d.contains("(consumer_group, dedup_id)")),
        "the inbox's unique index exists: {inbox:?}"
    );
    assert!(
        inbox.iter().any(|d| d.contains("(processed_at)")),
        "the purge's index exists: {inbox:?}"
    );
    let outbox = indexes(OUTBOX).await;
    assert!(
        outbox.iter().any(|d| d.contains("WHERE (attempts > 0)")),
        "the outbox's failing-rows index exists: {outbox:?}"
    );

    // The same message twice: applied once.
    let topic = orm.topic::<LongNamed>();
    topic.produce(&LongNamed { id: 7 }).await.unwrap();
    topic.produce(&LongNamed { id: 7 }).await.unwrap();
    let h = topic
        .handler_boxed(|_, _| Box::pin(async { Ok(()) }))
        .spawn()
        .await
        .unwrap();
    within(60, "both deliveries", async {
        while h.stats().handled + h.stats().duplicates < 2 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    let stats = h.shutdown().await.unwrap();
    assert_eq!((stats.handled, stats.duplicates), (1, 1), "{stats:?}");
}
