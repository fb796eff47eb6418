//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kafka_orm::dlq::Position;

/// The heading of the options every command takes.
const GLOBAL: &str = "Connection and output";

/// Operate kafka-orm services: their topics, outboxes, dead letters and consumer lag.
///
/// Topic settings come from the topics file the service writes (`orm.registry_json()`),
/// Kafka and the database from flags or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL.
/// Output is a table, or JSON with --json.
///
/// Exit codes: 0 done; 1 a service failed (unreachable in time, an error);
/// 2 bad input (usage, unknown topic, no such table, row or dead letter).
#[derive(Debug, Parser)]
#[command(name = "kafka-orm", version, verbatim_doc_comment)]
pub struct Cli {
    /// Kafka bootstrap servers (host:port,..)
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "SERVERS", help_heading = GLOBAL)]
    #[arg(global = true, hide_env_values = true)]
    pub bootstrap_servers: Option<String>,

    /// Database URL (postgres://.. or sqlite://..)
    #[arg(long, env = "DATABASE_URL", value_name = "URL", help_heading = GLOBAL)]
    #[arg(global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// The service's topics file (written from `orm.registry_json()`)
    #[arg(long, env = "KAFKA_ORM_TOPICS", value_name = "FILE", help_heading = GLOBAL)]
    #[arg(global = true, hide_env_values = true)]
    pub topics: Option<PathBuf>,

    /// How long to wait for Kafka or the database, in seconds
    #[arg(long, default_value_t = 10, value_name = "SECS", help_heading = GLOBAL)]
    #[arg(global = true)]
    pub timeout: u64,

    /// Print JSON instead of tables
    #[arg(long, help_heading = GLOBAL, global = true)]
    pub json: bool,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the service's topics and their settings (from the topics file)
    Topics,
    /// The transactional outboxes: backlog, failing rows, retries
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Dead-letter topics: list, show, replay
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// A consumer group's lag per partition (committed offsets)
    Lag(LagArgs),
}

/// `outbox ..`
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Backlog, oldest age and failing rows of every outbox table
    Status,
    /// Make failing rows due now (the relay delivers them at once)
    Retry(RetryArgs),
}

/// `outbox retry`
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The row id
    #[arg(required_unless_present = "failing", conflicts_with = "failing")]
    pub id: Option<i64>,
    /// Every row that failed at least once
    #[arg(long)]
    pub failing: bool,
    /// The outbox topic (needed when the service has several)
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
}

/// `dlq ..`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, a page at a time
    List(ListArgs),
    /// Show one dead letter: headers, error, payload
    Show(ShowArgs),
    /// Re-publish dead letters to their topic, once each
    Replay(ReplayArgs),
}

/// Which dead letters.
#[derive(Debug, Args, Clone)]
pub struct FilterArgs {
    /// Only those whose error contains TEXT (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub error: Option<String>,
    /// Only those with this message key
    #[arg(long)]
    pub key: Option<String>,
    /// Only those that failed since TIME (epoch ms, or an age: 30s, 15m, 2h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only those that failed before TIME (epoch ms, or an age: 30s, 15m, 2h, 7d)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only those in this partition of the dead-letter topic
    #[arg(long)]
    pub partition: Option<i32>,
}

/// `dlq list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The topic (its name, Kafka name or type), or its dead-letter topic
    pub topic: String,
    /// Which ones
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Start after this position (PARTITION:OFFSET, as the last page ends)
    #[arg(long, value_name = "POSITION")]
    pub after: Option<Position>,
}

/// `dlq show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The topic (its name, Kafka name or type), or its dead-letter topic
    pub topic: String,
    /// The dead letter: PARTITION:OFFSET, or OFFSET in partition 0
    pub offset: Position,
}

/// `dlq replay`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The topic (its name, Kafka name or type), or its dead-letter topic
    pub topic: String,
    /// Which ones
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the dead letter at PARTITION:OFFSET (repeat for more)
    #[arg(long, value_name = "POSITION")]
    pub at: Vec<Position>,
    /// Say what would be replayed; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Replay dead letters that were replayed before too
    #[arg(long)]
    pub again: bool,
}

/// `lag`
#[derive(Debug, Args)]
pub struct LagArgs {
    /// The consumer group (its Kafka name, namespace included)
    pub group: String,
    /// Only these topics (default: every topic the group committed on)
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,
}
