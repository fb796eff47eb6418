//! [`KafkaOrm::outbox_status`]: backlog, oldest age and failing rows of every outbox.

use std::time::Duration;

use sea_orm::sea_query::{Asterisk, Expr, Func, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::table_of;
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::tables::OUTBOX;
use crate::topic::TopicSpec;
use crate::util::now_ms;

/// The outbox of one topic as the database has it now (all relay instances together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStatus {
    /// The Rust type.
    pub type_name: &'static str,
    /// The outbox table.
    pub table: &'static str,
    /// Rows waiting for delivery.
    pub backlog: u64,
    /// Age of the oldest waiting row.
    pub oldest_age: Option<Duration>,
    /// Rows that failed at least once, lowest id first (at most 20), with their errors.
    pub failing: Vec<FailingRow>,
}

/// A row that failed delivery and is backing off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingRow {
    /// Row id.
    pub id: i64,
    /// Message key.
    pub key: Option<String>,
    /// Failed attempts so far.
    pub attempts: i32,
    /// When it is tried next, epoch ms.
    pub next_attempt_at_ms: i64,
    /// The last error.
    pub last_error: Option<String>,
}

impl KafkaOrm {
    /// Backlog, oldest age and failing rows of every outbox table.
    pub async fn outbox_status(&self) -> Result<Vec<OutboxStatus>> {
        let db = self.database().ok_or(Error::NoDatabase {
            operation: "outbox_status",
            topic: "(all outbox topics)",
        })?;
        status_of(db, self.topics()).await
    }
}

/// [`KafkaOrm::outbox_status`] of the outbox tables of `specs` (the ones with an outbox),
/// registered in this binary or not (see [`crate::ops::outbox_status`]).
pub(crate) async fn status_of(
    db: &DatabaseConnection,
    specs: &[&'static TopicSpec],
) -> Result<Vec<OutboxStatus>> {
    use sea_orm::sea_query::ExprTrait as _;
    let mut out = Vec::new();
    let [id, _, attempts, ..] = FAILING;
    for spec in specs.iter().filter(|s| s.outbox.is_some()) {
        let table = table_of(spec);
        let ctx = || format!("reading the status of outbox table `{table}`");
        let (backlog, oldest_age) = backlog(db, table).await?;
        let select = Query::select()
            .columns(FAILING)
            .from(table)
            .and_where(Expr::col(attempts).gt(0))
            .order_by(id, Order::Asc)
            .limit(20)
            .to_owned();
        let failing = db
            .query_all(&select)
            .await
            .map_err(|e| Error::db(ctx(), e))?
            .iter()
            .map(|r| {
                Ok(FailingRow {
                    id: r.try_get_by_index(0)?,
                    key: r.try_get_by_index(1)?,
                    attempts: r.try_get_by_index(2)?,
                    next_attempt_at_ms: r.try_get_by_index(3)?,
                    last_error: r.try_get_by_index(4)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sea_orm::DbErr>>()
            .map_err(|e| Error::db(ctx(), e))?;
        out.push(OutboxStatus {
            type_name: spec.type_name,
            table,
            backlog,
            oldest_age,
            failing,
        });
    }
    Ok(out)
}

/// The columns of a [`FailingRow`], in its order.
const FAILING: [&str; 5] = OUTBOX.names([
    "id",
    "message_key",
    "attempts",
    "next_attempt_at",
    "last_error",
]);

/// Rows waiting in outbox `table` and the age of the oldest (one statement; the relay's
/// backlog gauges sample it too).
pub(crate) async fn backlog(
    db: &DatabaseConnection,
    table: &str,
) -> Result<(u64, Option<Duration>)> {
    let ctx = || format!("reading the backlog of outbox table `{table}`");
    let select = Query::select()
        .expr(Func::count(Expr::col(Asterisk)))
        .expr(Func::min(Expr::col(OUTBOX.name("created_at"))))
        .from(table.to_string())
        .to_owned();
    let summary = db
        .query_one(&select)
        .await
        .map_err(|e| Error::db(ctx(), e))?;
    let Some(r) = summary else {
        return Ok((0, None));
    };
    let rows = r
        .try_get_by_index::<i64>(0)
        .map_err(|e| Error::db(ctx(), e))?;
    let oldest = r
        .try_get_by_index::<Option<i64>>(1)
        .map_err(|e| Error::db(ctx(), e))?;
    let age = oldest.map(|c| Duration::from_millis((now_ms() - c).max(0) as u64));
    Ok((rows.max(0) as u64, age))
}
