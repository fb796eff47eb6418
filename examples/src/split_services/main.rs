//! A producer-only and a consumer-only service sharing one events module (`events.rs`),
//! run as two processes: `split_producer` publishes `OrderEvent`s through its outbox,
//! `split_consumer` applies them with typed handlers and its inbox. The type says neither
//! `produce_only` nor `consume_only`; each service declares its direction on its builder
//! (`.produces::<OrderEvent>()`, `.consumes::<OrderEvent>()`), and using the other one is
//! a typed error (`NotConsumed`, `NotProduced`).
//!
//! This launcher is the infrastructure: with `KAFKA_BOOTSTRAP_SERVERS` it passes the real
//! broker on; without, it runs the embedded broker (reachable from the other processes on
//! a local port) and creates the topic on it. Each service has an SQLite file of its own:
//! they share the topic, not a database.
//!
//! ```text
//! cargo build -p kafka-orm-examples --bins && target/debug/split_services
//! ```

#[path = "events.rs"]
mod events;

use std::process::{Command, ExitStatus};

use kafka_orm::KafkaOrm;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namespace = format!("split-{}.", std::process::id());
    let real = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .ok()
        .filter(|s| !s.is_empty());
    // The embedded broker lives as long as this context.
    let (_embedded, servers, create_topics) = match real {
        Some(servers) => (None, servers, "1"),
        None => {
            let orm = KafkaOrm::builder()
                .embedded()
                .namespace(namespace.clone())
                .build()
                .await?;
            let servers = orm.bootstrap_servers().to_string();
            (Some(orm), servers, "0")
        }
    };
    println!("split_services: broker {servers}, namespace {namespace}");
    let spawn = |service: &str| {
        let exe = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name(service);
        Command::new(&exe)
            .env("KAFKA_BOOTSTRAP_SERVERS", &servers)
            .env("SPLIT_NAMESPACE", &namespace)
            .env("SPLIT_CREATE_TOPICS", create_topics)
            .spawn()
            .map_err(|e| {
                format!(
                    "starting {}: {e} (build it: cargo build -p kafka-orm-examples --bins)",
                    exe.display()
                )
            })
    };
    let mut consumer = spawn("split_consumer")?;
    let mut producer = spawn("split_producer")?;
    let (produced, consumed) =
        tokio::task::spawn_blocking(move || (producer.wait(), consumer.wait())).await?;
    check("split_producer", produced?)?;
    check("split_consumer", consumed?)?;
    println!("split_services: both services did their part, and only theirs");
    Ok(())
}

fn check(service: &str, status: ExitStatus) -> Result<(), String> {
    match status.success() {
        true => Ok(()),
        false => Err(format!("{service} failed: {status}")),
    }
}
