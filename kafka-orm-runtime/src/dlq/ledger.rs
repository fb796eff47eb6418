//! Which dead letters a topic with an outbox had replayed: rows of
//! `kafka_orm_dlq_replays`, each inserted in the transaction that writes the replayed
//! message's outbox row, so a replay and its record commit together or not at all.

use std::collections::BTreeSet;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};

use super::letter::Position;
use crate::error::{Error, Result};
use crate::tables::replays::{REPLAY_TABLE, REPLAYS, create_table_sql};

/// The columns, in insert order.
const COLUMNS: [&str; 5] = REPLAYS.names([
    "dlq_topic",
    "dlq_partition",
    "dlq_offset",
    "message_id",
    "replayed_at",
]);

/// Creates the table when it is missing (a database migrated before replays existed).
pub(crate) async fn ensure_table(db: &DatabaseConnection) -> Result<()> {
    let sql = create_table_sql(db.get_database_backend());
    db.execute_unprepared(&sql)
        .await
        .map(|_| ())
        .map_err(|e| Error::db(format!("creating the replay table `{REPLAY_TABLE}`"), e))
}

/// The dead letters of `dlq_topic` replayed so far.
pub(crate) async fn replayed<C: ConnectionTrait>(
    db: &C,
    dlq_topic: &str,
) -> Result<BTreeSet<Position>> {
    let [topic, partition, offset, ..] = COLUMNS;
    let select = Query::select()
        .columns([partition, offset])
        .from(REPLAY_TABLE)
        .and_where(Expr::col(topic).eq(dlq_topic))
        .to_owned();
    let ctx = || format!("reading the replays of `{dlq_topic}` from `{REPLAY_TABLE}`");
    db.query_all(&select)
        .await
        .map_err(|e| Error::db(ctx(), e))?
        .iter()
        .map(|r| {
            Ok(Position::new(
                r.try_get_by_index(0)?,
                r.try_get_by_index(1)?,
            ))
        })
        .collect::<std::result::Result<_, sea_orm::DbErr>>()
        .map_err(|e| Error::db(ctx(), e))
}

/// Records in `txn` that the dead letter at `at` of `dlq_topic` is replayed as
/// `message_id`; `false` when it already was (another replay got there first).
pub(crate) async fn claim(
    txn: &DatabaseTransaction,
    dlq_topic: &str,
    at: Position,
    message_id: &str,
    now_ms: i64,
) -> Result<bool> {
    let [topic, partition, offset, ..] = COLUMNS;
    let insert = Query::insert()
        .into_table(REPLAY_TABLE)
        .columns(COLUMNS)
        .values_panic([
            dlq_topic.into(),
            at.partition.into(),
            at.offset.into(),
            message_id.into(),
            now_ms.into(),
        ])
        .on_conflict(
            OnConflict::columns([topic, partition, offset])
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let done = txn.execute(&insert).await.map_err(|e| {
        Error::db(
            format!(
                "recording the replay of `{dlq_topic}`[{}]@{}",
                at.partition, at.offset
            ),
            e,
        )
    })?;
    Ok(done.rows_affected() == 1)
}
