//! The tables kafka-orm needs, created at `build()` (see
//! [`crate::KafkaOrmBuilder::migrate`]) or by your own migrations from [`statements`].
//!
//! Each table is described once (its columns, their SQL types per backend, nullability and
//! defaults); the DDL here, the statements of the outbox, the relay and the inbox, the
//! check [`migrate`] runs and the SeaORM entities `#[derive(Topic)]` generates all come
//! from that description.

use sea_orm::sea_query::{Expr, Func, IntoIden, OnConflict, PostgresQueryBuilder, Query};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait,
};

use crate::error::{Error, Result};
use crate::ident;
use crate::tables::outbox::{self, BUCKETS, LEASE_TABLE, MEMBER_TABLE};
use crate::tables::{Column, INBOX, LEASES, MEMBERS, OUTBOX, TableDef, ddl};
use crate::topic::TopicSpec;

/// Every DDL statement for `specs` on `backend`, idempotent (`IF NOT EXISTS`), in order.
///
/// For users of `sea-orm-migration`: run these in a migration's `up` with
/// `manager.get_connection().execute_unprepared(..)` and turn off
/// [`crate::KafkaOrmBuilder::migrate`].
///
/// Fails with [`Error::InvalidIdentifier`] when a spec's table or column name is not a
/// plain SQL identifier (only a hand-written `impl Topic` can give one), before any
/// statement is built.
pub fn statements(specs: &[&'static TopicSpec], backend: DatabaseBackend) -> Result<Vec<String>> {
    for spec in specs {
        ident::check_spec(spec)?;
    }
    let mut out = Vec::new();
    for spec in specs {
        out.extend(crate::inbox::create_table_sql(spec, backend));
    }
    let outboxes: Vec<_> = specs.iter().filter(|s| s.outbox.is_some()).collect();
    for spec in &outboxes {
        out.extend(outbox::create_table_sql(spec, backend));
    }
    if backend == DatabaseBackend::Postgres && !outboxes.is_empty() {
        out.extend(relay_tables_sql(
            outboxes.iter().map(|spec| outbox::table_of(spec)),
        ));
    }
    if replays_through_an_outbox(specs) {
        out.push(crate::tables::replays::create_table_sql(backend));
    }
    Ok(out)
}

/// Whether a topic's dead letters can be replayed through its outbox, which records them
/// in the replay table (see [`crate::dlq`]).
fn replays_through_an_outbox(specs: &[&'static TopicSpec]) -> bool {
    specs.iter().any(|s| s.outbox.is_some() && s.dlq.is_some())
}

/// The relay's lease and member tables (PostgreSQL), and a free lease row per bucket of
/// each outbox table.
fn relay_tables_sql(outbox_tables: impl Iterator<Item = &'static str>) -> Vec<String> {
    let pg = DatabaseBackend::Postgres;
    let mut out = vec![ddl::create_table(
        &LEASES,
        LEASE_TABLE,
        &LEASES.columns([]),
        pg,
    )];
    // The fencing epoch came after the table: add it to older ones.
    out.extend(
        LEASES
            .column(EPOCH)
            .map(|c| ddl::add_column(LEASE_TABLE, c, pg)),
    );
    out.push(ddl::create_table(
        &MEMBERS,
        MEMBER_TABLE,
        &MEMBERS.columns([]),
        pg,
    ));
    for table in outbox_tables {
        let mut buckets = Query::select();
        buckets.expr(Expr::val(table)).column("b").from_function(
            Func::cust("generate_series").args([Expr::val(0), Expr::val(BUCKETS - 1)]),
            "b",
        );
        let seed = Query::insert()
            .into_table(LEASE_TABLE)
            .columns(SEEDED.map(IntoIden::into_iden))
            .select_from(buckets)
            .expect("two columns, two expressions")
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .to_owned();
        // Values inline (escaped): the statements run as plain text.
        out.push(seed.to_string(PostgresQueryBuilder));
    }
    out
}

/// The lease columns a new outbox table's lease rows are seeded with.
const SEEDED: [&str; 2] = LEASES.names(["outbox", "bucket"]);
/// The lease column added to tables of older versions.
const EPOCH: &str = LEASES.name("epoch");

/// The PostgreSQL advisory lock [`migrate`] holds while it creates tables: the two-`int4`
/// form, a key space apart from the single-`bigint` locks `publish` takes per message key
/// (`"korm"` in ASCII, then 1).
pub const MIGRATE_LOCK: (i32, i32) = (0x6b6f_726d, 1);

/// Creates every table the registered topics need; safe to run again.
///
/// Tables are created with `IF NOT EXISTS` and never altered (but for the relay lease
/// table's `epoch`), so it then checks that each table has every column this version
/// describes: a table created by an older kafka-orm (say, an outbox table without its
/// typed key columns) is an error here, at startup, rather than at the first statement.
///
/// Services starting at once on one PostgreSQL database do not race: the statements run in
/// one transaction that first takes a transaction-level advisory lock
/// ([`MIGRATE_LOCK`]), so one service creates the tables and the others then find them
/// (PostgreSQL's `CREATE TABLE IF NOT EXISTS` alone fails with a duplicate-key error on
/// `pg_type` when two sessions create the same table at the same moment).
pub async fn migrate(db: &DatabaseConnection, specs: &[&'static TopicSpec]) -> Result<()> {
    let backend = db.get_database_backend();
    let statements = statements(specs, backend)?;
    let fail = |sql: &str, e| Error::db(format!("creating kafka-orm tables: `{sql}`"), e);
    let txn = db.begin().await.map_err(|e| fail("BEGIN", e))?;
    if backend == DatabaseBackend::Postgres {
        let (class, object) = MIGRATE_LOCK;
        let lock = format!("SELECT pg_advisory_xact_lock({class}, {object})");
        txn.execute_unprepared(&lock)
            .await
            .map_err(|e| fail(&lock, e))?;
    }
    for sql in statements {
        txn.execute_unprepared(&sql)
            .await
            .map_err(|e| fail(&sql, e))?;
    }
    txn.commit().await.map_err(|e| fail("COMMIT", e))?;
    for (def, table, columns) in tables(specs, backend) {
        check_columns(db, def, table, &columns).await?;
    }
    Ok(())
}

/// The tables [`statements`] creates for `specs` on `backend`: description, name and
/// columns.
fn tables(
    specs: &[&'static TopicSpec],
    backend: DatabaseBackend,
) -> Vec<(&'static TableDef, &'static str, Vec<Column>)> {
    let mut out = Vec::new();
    for spec in specs {
        if let Some(inbox) = spec.inbox {
            out.push((&INBOX, inbox.table, crate::inbox::columns(&inbox)));
        }
    }
    let outboxes: Vec<_> = specs.iter().filter(|s| s.outbox.is_some()).collect();
    for spec in &outboxes {
        out.push((&OUTBOX, outbox::table_of(spec), outbox::columns(spec)));
    }
    if backend == DatabaseBackend::Postgres && !outboxes.is_empty() {
        out.push((&LEASES, LEASE_TABLE, LEASES.columns([])));
        out.push((&MEMBERS, MEMBER_TABLE, MEMBERS.columns([])));
    }
    if replays_through_an_outbox(specs) {
        use crate::tables::replays::{REPLAY_TABLE, REPLAYS};
        out.push((&REPLAYS, REPLAY_TABLE, REPLAYS.columns([])));
    }
    out
}

/// Fails, naming them, when `table` lacks some of `columns`.
async fn check_columns(
    db: &DatabaseConnection,
    def: &TableDef,
    table: &str,
    columns: &[Column],
) -> Result<()> {
    let backend = db.get_database_backend();
    let context = || format!("checking the {} table `{table}`", def.what);
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => "SELECT name FROM pragma_table_info($1)",
    };
    let present: Vec<String> = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await
        .map_err(|e| Error::db(context(), e))?
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<std::result::Result<_, DbErr>>()
        .map_err(|e| Error::db(context(), e))?;
    let missing: Vec<&str> = columns
        .iter()
        .map(|c| c.name.as_ref())
        .filter(|name| !present.iter().any(|p| p == name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::db(
        context(),
        DbErr::Custom(format!(
            "it lacks the columns {}, so an older kafka-orm created it (tables are never altered): \
             add the columns (see `kafka_orm::schema::statements`), or drop the table once it is \
             empty (an outbox table once the relay has emptied it)",
            missing.join(", ")
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_tables_are_created_and_seeded_on_postgres() {
        let sql = relay_tables_sql(["t_outbox", "it's"].into_iter());
        assert_eq!(
            sql[0],
            "CREATE TABLE IF NOT EXISTS \"kafka_orm_relay_leases\" ( \"outbox\" TEXT NOT NULL, \
             \"bucket\" INTEGER NOT NULL, \"owner\" TEXT NULL, \"expires_at\" BIGINT NOT NULL DEFAULT 0, \
             \"epoch\" BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (\"outbox\", \"bucket\") )"
        );
        assert_eq!(
            sql[1],
            "ALTER TABLE \"kafka_orm_relay_leases\" ADD COLUMN IF NOT EXISTS \"epoch\" BIGINT NOT NULL DEFAULT 0"
        );
        assert!(
            sql[2].contains("PRIMARY KEY (\"outbox\", \"owner\")"),
            "{}",
            sql[2]
        );
        assert_eq!(
            sql[3],
            "INSERT INTO \"kafka_orm_relay_leases\" (\"outbox\", \"bucket\") SELECT 't_outbox', \"b\" \
             FROM generate_series(0, 63) AS \"b\" ON CONFLICT  DO NOTHING"
        );
        assert!(sql[4].contains("SELECT E'it\\'s', \"b\""), "{}", sql[4]);
    }

    #[test]
    fn the_lease_tables_come_with_the_first_outbox_on_postgres_only() {
        use crate::topic::{InboxSpec, OutboxSpec};
        static SPEC: TopicSpec = TopicSpec::new("t::T", "t")
            .outbox(OutboxSpec::new("t_outbox"))
            .inbox(InboxSpec::new("t_inbox", &[], 60));
        let names = |backend| -> Vec<&str> {
            tables(&[&SPEC], backend)
                .into_iter()
                .map(|(_, table, _)| table)
                .collect()
        };
        let pg = names(DatabaseBackend::Postgres);
        assert_eq!(pg, ["t_inbox", "t_outbox", LEASE_TABLE, MEMBER_TABLE]);
        assert_eq!(names(DatabaseBackend::Sqlite), ["t_inbox", "t_outbox"]);
        let created = statements(&[&SPEC], DatabaseBackend::Postgres).unwrap();
        for table in pg {
            let create = format!("CREATE TABLE IF NOT EXISTS \"{table}\" (");
            assert!(created.iter().any(|s| s.starts_with(&create)), "{table}");
        }
    }
}
