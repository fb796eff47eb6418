//! The built `kafka-orm` binary on bad input, against real Kafka and PostgreSQL: unknown
//! topic, unreachable broker and database (bounded by `--timeout`), no such table, row or
//! dead letter, a missing or broken topics file. Never a panic, always an exit code.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_orm::KafkaOrm;

/// A service without a database: its topics file names an outbox table no database has.
/// The connection settings (Kafka, a fresh empty database, the file) and the namespace.
async fn service_without_tables(test: &str) -> Option<([(&'static str, String); 3], String)> {
    let (bootstrap, url) = services()?;
    let namespace = format!("{}.", unique(test));
    let orm = KafkaOrm::builder()
        .bootstrap_servers(bootstrap.clone())
        .namespace(namespace.clone())
        .build()
        .await
        .unwrap();
    let topics = temp_file("topics.json");
    std::fs::write(&topics, orm.registry_json()).unwrap();
    let (url, _db) = fresh_database(&url, test).await;
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("DATABASE_URL", url),
        ("KAFKA_ORM_TOPICS", topics.display().to_string()),
    ];
    Some((env, namespace))
}

fn pick<'a>(env: &'a [(&'static str, String); 3], which: &[usize]) -> Vec<(&'static str, &'a str)> {
    which
        .iter()
        .map(|i| (env[*i].0, env[*i].1.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_saying_what_is_wrong() {
    let Some((env, namespace)) = service_without_tables("cli_bad").await else {
        return;
    };
    let all = pick(&env, &[0, 1, 2]);
    let table = "no such table: the database has no outbox table `order_outbox`";
    failed(&kafka_orm(&all, &["outbox", "status"]), 2, table);
    let unknown = "unknown topic `nope`: the topics file has `cli.orders`, `cli.pings`";
    failed(&kafka_orm(&all, &["dlq", "list", "nope"]), 2, unknown);
    let no_letter = "no dead letter at 0:99";
    failed(
        &kafka_orm(&all, &["dlq", "show", "cli.orders", "0:99"]),
        2,
        no_letter,
    );

    let no_file = pick(&env, &[0, 1]);
    let missing = format!("{namespace}cli.nothing");
    let no_dlq = "unknown topic: the cluster has no dead-letter topic";
    failed(&kafka_orm(&no_file, &["dlq", "list", &missing]), 2, no_dlq);
    let needs = "needs the service's topics file";
    failed(&kafka_orm(&no_file, &["topics"]), 2, needs);
    failed(&kafka_orm(&no_file, &["dlq", "replay", &missing]), 2, needs);
    let no_db = "no database: pass --database-url";
    failed(
        &kafka_orm(&pick(&env, &[0, 2]), &["outbox", "status"]),
        2,
        no_db,
    );
    let no_kafka = "no Kafka: pass --bootstrap-servers";
    failed(&kafka_orm(&pick(&env, &[1, 2]), &["lag", "g"]), 2, no_kafka);

    let broken = temp_file("broken.json");
    std::fs::write(&broken, "{").unwrap();
    let broken = broken.display().to_string();
    failed(
        &kafka_orm(&[("KAFKA_ORM_TOPICS", &broken)], &["topics"]),
        2,
        "is not valid",
    );
    let nowhere = [("KAFKA_ORM_TOPICS", "/nonexistent/t.json")];
    failed(
        &kafka_orm(&nowhere, &["topics"]),
        2,
        "cannot read the topics file",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_services_exit_1_within_the_timeout() {
    let Some((env, _)) = service_without_tables("cli_unreachable").await else {
        return;
    };
    let all = pick(&env, &[0, 1, 2]);
    let started = Instant::now();
    let kafka = ["--bootstrap-servers", "127.0.0.1:9", "--timeout", "2"];
    let args = [&kafka[..], &["dlq", "list", "cli.orders"]].concat();
    failed(
        &kafka_orm(&all, &args),
        1,
        "cannot reach Kafka at `127.0.0.1:9`",
    );
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(20), "bounded: {waited:?}");

    let started = Instant::now();
    let db = [
        "--database-url",
        "postgres://u:p@127.0.0.1:9/x",
        "--timeout",
        "2",
    ];
    let args = [&db[..], &["outbox", "status"]].concat();
    failed(&kafka_orm(&all, &args), 1, "cannot connect to the database");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(20), "bounded: {waited:?}");
}
