//! The business row a benchmark handler writes and the handlers themselves, in a module of
//! their own so that the measured child processes (`bench-child`) run exactly the code the
//! in-process scenarios run.

use kafka_orm::{Delivery, HandlerError};
use sea_orm::{DatabaseTransaction, EntityTrait, Set};

use crate::events::BenchEvent;

/// The business row a handler writes, as a SeaORM entity.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bench_business")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub key: String,
        pub sent_at_us: i64,
        pub pad: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The DDL of the business table.
pub const BUSINESS_TABLE: &str = "CREATE TABLE bench_business (seq BIGINT PRIMARY KEY, \
    key TEXT NOT NULL, sent_at_us BIGINT NOT NULL, pad TEXT NOT NULL)";

/// Messages per batch of the batch handler, and how long it waits to fill one.
pub const BATCH: usize = 500;
pub const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// The business row of one event.
pub fn business_row(msg: &BenchEvent) -> entity::ActiveModel {
    entity::ActiveModel {
        seq: Set(msg.seq),
        key: Set(msg.key.clone()),
        sent_at_us: Set(msg.sent_at_us),
        pad: Set(msg.pad.clone()),
    }
}

/// The benchmark's handler: one SeaORM insert.
pub async fn handle(
    txn: &DatabaseTransaction,
    msg: &Delivery<BenchEvent>,
) -> std::result::Result<(), HandlerError> {
    entity::Entity::insert(business_row(msg))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The benchmark's batch handler: one SeaORM `insert_many` for the batch.
pub async fn handle_batch(
    txn: &DatabaseTransaction,
    msgs: &[&Delivery<BenchEvent>],
) -> std::result::Result<(), HandlerError> {
    entity::Entity::insert_many(msgs.iter().map(|msg| business_row(msg)))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
