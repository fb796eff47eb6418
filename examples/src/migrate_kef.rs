//! The K-Entity-Framework migration guide's scenarios, run for real: every Rust snippet of
//! `kafka-orm/docs/migrating-from-k-entity-framework.md` is a piece of this file (its tests
//! check that), and this program runs them in order:
//!
//! 1. the context: K-EF's `UseKafkaExtensibility(..)` is `KafkaOrm::builder()`;
//! 2. a topic with a key (`Topic<T>`, `HasName`, `HasKey`), produced directly;
//! 3. an outbox in the business transaction (`HasOutbox`; `BeginTransactionAsync` …
//!    `CommitAsync`); a rolled-back transaction sends nothing;
//! 4. the single-node relay (`AddOutboxKafkaWorker` / `HasOutboxWorker` with
//!    `UseSingleNode`);
//! 5. consuming the first message and committing it (`FirstAsync`, then `CommitAsync` /
//!    `SaveChangesAsync`);
//! 6. an inbox deduplicating on two fields (`HasInbox(i => i.HasDeduplicateProperties(..))`):
//!    the same request sent twice is invoiced once.
//!
//! Zero setup by default: the embedded broker and an SQLite file under `target/`;
//! `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` point it at real ones.
//!
//! ```text
//! cargo run -p kafka-orm-examples --bin migrate_kef
//! ```

use std::time::Duration;

use kafka_orm::{KafkaOrm, Topic};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, Database, DatabaseConnection, Schema, TransactionTrait};
use serde::{Deserialize, Serialize};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

// Scenario 2: a topic with a key.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "order-events", key = "customer_id")]
pub struct OrderCreated {
    pub order_id: i64,
    pub customer_id: String,
}

// Scenario 3: an outbox in the business transaction.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "order-confirmations", key = "customer_id", outbox)]
pub struct OrderConfirmed {
    pub order_id: i64,
    pub customer_id: String,
}

// Scenario 6: an inbox deduplicating on two fields.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "invoice-requests",
    key = "order_id",
    inbox(dedup = ["tenant_id", "order_id"], retention = "5m"),
    group = "billing",
)]
pub struct InvoiceRequested {
    pub tenant_id: String,
    pub order_id: i64,
    pub cents: i64,
}

/// The producing service's business table (K-EF: a `DbSet<Order>`).
mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kef_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub customer_id: String,
        pub status: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The billing service's table: one row per invoiced order.
mod invoice {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kef_invoices")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        pub order_id: i64,
        pub cents: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[tokio::main]
async fn main() -> Result<()> {
    let db = fresh_database().await?;
    let orm = context(&db).await?;
    topic_with_a_key(&orm).await?;
    outbox_in_the_transaction(&orm, &db).await?;
    single_node_relay(&orm).await?;
    first_and_commit(&orm).await?;
    inbox_with_dedup_properties(&orm, &db).await?;
    println!("every scenario of the K-Entity-Framework guide ran");
    Ok(())
}

/// The business tables, created afresh (kafka-orm creates its own at `build()`).
async fn fresh_database() -> Result<DatabaseConnection> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://target/kafka-orm-migrate-kef.db?mode=rwc".to_string());
    let db = Database::connect(&database_url).await?;
    for table in [
        "kef_orders",
        "kef_invoices",
        "order_confirmed_outbox",
        "invoice_requested_inbox",
    ] {
        db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
            .await?;
    }
    let schema = Schema::new(db.get_database_backend());
    for mut table in [
        schema.create_table_from_entity(order::Entity),
        schema.create_table_from_entity(invoice::Entity),
    ] {
        db.execute(table.if_not_exists()).await?;
    }
    Ok(db)
}

/// Scenario 1: the context.
async fn context(db: &DatabaseConnection) -> Result<KafkaOrm> {
    let builder = KafkaOrm::builder()
        .group("order-processor") // client.Consumer.GroupId
        .database(db.clone()); // the outbox and inbox tables are created at build()
    let builder = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) if !servers.is_empty() => builder
            .bootstrap_servers(servers) // client.BootstrapServers
            .namespace(format!("kef-{}.", std::process::id())), // a fresh run each time
        _ => builder.embedded(), // an in-process broker, for demos and tests
    };
    let orm = builder.build().await?; // checks every topic, creates missing ones
    Ok(orm)
}

/// Scenario 2: produced directly, acknowledged by the broker when the call returns.
async fn topic_with_a_key(orm: &KafkaOrm) -> Result<()> {
    let created = OrderCreated {
        order_id: 1,
        customer_id: "c-42".into(),
    };
    let report = orm.topic::<OrderCreated>().produce(&created).await?;
    println!("order 1 at offset {} of {}", report.offset, report.topic);
    Ok(())
}

/// Scenario 3: the order row and its event commit together; a rollback drops both.
async fn outbox_in_the_transaction(orm: &KafkaOrm, db: &DatabaseConnection) -> Result<()> {
    let txn = db.begin().await?;
    order::ActiveModel {
        id: Set(7),
        customer_id: Set("c-42".into()),
        status: Set("confirmed".into()),
    }
    .insert(&txn)
    .await?;
    let confirmed = OrderConfirmed {
        order_id: 7,
        customer_id: "c-42".into(),
    };
    orm.topic::<OrderConfirmed>()
        .publish(&txn, &confirmed)
        .await?;
    txn.commit().await?; // rolled back instead: no order row, no message

    let txn = db.begin().await?;
    let ghost = OrderConfirmed {
        order_id: 8,
        customer_id: "c-43".into(),
    };
    orm.topic::<OrderConfirmed>().publish(&txn, &ghost).await?;
    txn.rollback().await?;
    let backlog: u64 = orm.outbox_status().await?.iter().map(|s| s.backlog).sum();
    println!("outbox: {backlog} event waiting (the rolled-back one is gone)");
    if backlog != 1 {
        return Err(format!("expected 1 outbox row, found {backlog}").into());
    }
    Ok(())
}

/// Scenario 4: one relay per database, without leases; it delivers the committed row.
async fn single_node_relay(orm: &KafkaOrm) -> Result<()> {
    let relay = orm
        .outbox_relay()
        .single_node() // UseSingleNode(): one relay per database, no leases
        .poll_interval(Duration::from_secs(1)) // WithPollingInterval
        .batch(100) // WithMaxMessagesPerPoll
        .spawn()
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while relay.stats().delivered < 1 {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the relay stalled: {:?}", relay.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = relay.shutdown().await?;
    println!("relay delivered {} event", stats.delivered);
    if stats.delivered != 1 {
        return Err(format!("expected 1 delivered, got {stats:?}").into());
    }
    Ok(())
}

/// Scenario 5: the first message of the topic, committed by hand.
async fn first_and_commit(orm: &KafkaOrm) -> Result<()> {
    let mut orders = orm.topic::<OrderCreated>().consume().await?;
    let first = orders.next().await.ok_or("the stream ended")??; // FirstAsync()
    println!("order {} of {}", first.order_id, first.customer_id);
    orders.commit(&first).await?; // CommitAsync() / SaveChangesAsync()
    orders.shutdown().await?;
    Ok(())
}

/// Scenario 6: the same request twice (two messages, two message ids), invoiced once.
async fn inbox_with_dedup_properties(orm: &KafkaOrm, db: &DatabaseConnection) -> Result<()> {
    let billing = orm
        .topic::<InvoiceRequested>()
        .handler(async |txn, request| {
            invoice::ActiveModel {
                tenant_id: Set(request.tenant_id.clone()),
                order_id: Set(request.order_id),
                cents: Set(request.cents),
                ..Default::default()
            }
            .insert(txn) // in one transaction with the inbox row
            .await?;
            Ok(())
        })
        .spawn()
        .await?;
    let request = InvoiceRequested {
        tenant_id: "acme".into(),
        order_id: 7,
        cents: 1999,
    };
    let requests = orm.topic::<InvoiceRequested>();
    requests.produce(&request).await?;
    requests.produce(&request).await?; // a retried job sends it again
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while billing.stats().handled + billing.stats().duplicates < 2 {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the handler stalled: {:?}", billing.stats()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = billing.shutdown().await?;
    let invoices = invoice::Entity::find().count(db).await?;
    println!(
        "billing: {} applied, {} duplicate skipped, {invoices} invoice",
        stats.handled, stats.duplicates
    );
    if (stats.handled, stats.duplicates, invoices) != (1, 1, 1) {
        return Err(format!("expected one invoice and one duplicate: {stats:?}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    const GUIDE: &str = include_str!("../../kafka-orm/docs/migrating-from-k-entity-framework.md");
    const EXAMPLE: &str = include_str!("migrate_kef.rs");

    /// The fenced blocks of `text` whose info string starts with `lang`.
    fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
        let mut found = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("```") {
            let after = &rest[at + 3..];
            let info_end = after.find('\n').unwrap_or(after.len());
            let body = &after[(info_end + 1).min(after.len())..];
            let end = body.find("```").expect("every block is closed");
            if after[..info_end].trim().starts_with(lang) {
                found.push(&body[..end]);
            }
            rest = &body[end + 3..];
        }
        found
    }

    /// Whether `block`'s lines are consecutive lines of `file`, all indented alike (a
    /// function body is shown without its indentation).
    fn contains_indented(file: &str, block: &str) -> bool {
        let file: Vec<&str> = file.lines().collect();
        let block: Vec<&str> = block.lines().collect();
        (0..file.len().saturating_sub(block.len() - 1)).any(|start| {
            let first = file[start];
            let indent = &first[..first.len() - first.trim_start().len()];
            block.iter().enumerate().all(|(i, line)| {
                let line_in_file = file[start + i];
                if line.is_empty() {
                    line_in_file.is_empty()
                } else {
                    line_in_file.strip_prefix(indent) == Some(line)
                }
            })
        })
    }

    #[test]
    fn every_rust_snippet_of_the_guide_is_in_this_example() {
        let snippets = blocks(GUIDE, "rust");
        assert!(snippets.len() >= 6, "one per scenario: {}", snippets.len());
        for snippet in snippets {
            assert!(
                contains_indented(EXAMPLE, snippet),
                "the guide shows code that examples/src/migrate_kef.rs does not have:\n{snippet}"
            );
        }
    }

    #[test]
    fn every_scenario_shows_both_sides() {
        let scenarios: Vec<&str> = GUIDE.split("\n# ").skip(1).collect();
        let with_csharp: Vec<&&str> = scenarios
            .iter()
            .filter(|s| !blocks(s, "csharp").is_empty())
            .collect();
        assert!(with_csharp.len() >= 6, "{} scenarios", with_csharp.len());
        for scenario in with_csharp {
            let title = scenario.lines().next().unwrap_or_default();
            assert!(
                !blocks(scenario, "rust").is_empty(),
                "`{title}` has no Rust side"
            );
        }
    }

    #[test]
    fn the_check_finds_what_is_missing() {
        assert!(contains_indented(
            "fn f() {\n    let a = 1;\n    let b = 2;\n}\n",
            "let a = 1;\nlet b = 2;\n"
        ));
        assert!(!contains_indented(
            "fn f() {\n    let a = 1;\n    let b = 2;\n}\n",
            "let a = 1;\nlet c = 2;\n"
        ));
        assert!(!contains_indented(
            "    let a = 1;\n  let b = 2;\n",
            "let a = 1;\nlet b = 2;\n"
        ));
    }
}
