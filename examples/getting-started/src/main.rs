use kafka_orm::{KafkaOrm, Topic};
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "greetings",
    key = "name",
    outbox,
    inbox(dedup = "id"),
    group = "greeter"
)]
pub struct Greeting {
    pub id: i64,
    pub name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SQLite for the outbox and inbox tables; PostgreSQL in production (`DATABASE_URL`).
    let file = std::env::temp_dir().join(format!("kafka-orm-hello-{}.db", std::process::id()));
    let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", file.display())).await?;
    let orm = KafkaOrm::builder()
        .embedded() // in-process broker, no setup; in production: .bootstrap_from_env()
        .database(db.clone()) // creates the outbox and inbox tables
        .build()
        .await?;

    let relay = orm.outbox_relay().spawn().await?; // outbox → Kafka
    let (seen, mut greeted) = tokio::sync::mpsc::unbounded_channel();
    let greeter = orm
        .topic::<Greeting>()
        .handler(async move |_txn, msg| {
            println!("hello, {}!", msg.name); // database writes go on `_txn`
            seen.send(msg.id).ok();
            Ok(())
        })
        .spawn()
        .await?;

    let txn = db.begin().await?;
    let greeting = Greeting {
        id: 1,
        name: "world".into(),
    };
    orm.topic::<Greeting>().publish(&txn, &greeting).await?;
    txn.commit().await?; // the event leaves only if the transaction commits

    greeted.recv().await;
    greeter.shutdown().await?;
    relay.shutdown().await?;
    std::fs::remove_file(&file).ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The first ```` ```lang ```` block of the README's "Getting started" after `after`.
    fn readme_block(lang: &str, after: &str) -> String {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Getting started").expect("the section")..];
        let from = section.find(after).expect("the anchor text");
        let fence = format!("```{lang}\n");
        let start = from + section[from..].find(&fence).expect("the block") + fence.len();
        let end = start + section[start..].find("```").expect("its end");
        section[start..end].to_string()
    }

    #[test]
    fn the_readme_shows_this_crates_dependencies() {
        let manifest = include_str!("../Cargo.toml");
        let ours = &manifest[manifest.find("[dependencies]\n").expect("dependencies")..];
        let ours = ours.replace(
            "kafka-orm = { path = \"../../kafka-orm\" }",
            &format!("kafka-orm = \"{}\"", minor(&workspace_version())),
        );
        assert_eq!(readme_block("toml", "Cargo.toml"), ours);
    }

    #[test]
    fn the_readme_shows_this_program() {
        let main = include_str!("main.rs");
        let program = &main[..main.find("#[cfg(test)]").expect("the tests")];
        assert_eq!(
            readme_block("rust,no_run", "src/main.rs"),
            program.trim_end().to_string() + "\n"
        );
    }

    /// kafka-orm's version: the workspace's `[workspace.package] version`.
    fn workspace_version() -> String {
        let manifest = include_str!("../../../Cargo.toml");
        let package = &manifest[manifest.find("[workspace.package]").expect("the table")..];
        let line = package
            .lines()
            .find(|l| l.starts_with("version = "))
            .expect("a version");
        line.trim_start_matches("version = ")
            .trim_matches('"')
            .to_string()
    }

    /// `0.1.0` → `0.1`: what a user writes.
    fn minor(version: &str) -> &str {
        &version[..version.rfind('.').expect("a semver")]
    }

    #[test]
    fn the_program_runs_on_the_embedded_defaults() {
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            done.send(super::main().map_err(|e| e.to_string())).ok();
        });
        let outcome = result
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the greeting went through within 2 minutes");
        assert_eq!(outcome, Ok(()));
    }
}
