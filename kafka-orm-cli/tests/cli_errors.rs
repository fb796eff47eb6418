//! The built `kafka-orm` binary on bad input, against real Kafka and PostgreSQL: unknown
//! topic, unreachable broker and database (bounded by `--timeout`), no such table, row or
//! dead letter, a missing or broken topics file. Never a panic, always an exit code.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_orm::KafkaOrm;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unreachable_services_fail_cleanly() {
    let namespace = format!("{}.", unique("cli_bad"));
    let Some((bootstrap, url)) = services() else {
        return;
    };
    // A service without a database: its topics file names an outbox table no database has.
    let orm = KafkaOrm::builder()
        .bootstrap_servers(bootstrap.clone())
        .namespace(namespace.clone())
        .build()
        .await
        .unwrap();
    let topics = temp_file("topics.json");
    std::fs::write(&topics, orm.registry_json()).unwrap();
    let (url, _db) = fresh_database(&url, "cli_bad").await;
    let file = topics.display().to_string();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("DATABASE_URL", url.as_str()),
        ("KAFKA_ORM_TOPICS", file.as_str()),
    ];

    failed(
        &kafka_orm(&env, &["outbox", "status"]),
        2,
        "no such table: the database has no outbox table `order_outbox`",
    );
    failed(
        &kafka_orm(&env, &["dlq", "list", "nope"]),
        2,
        "unknown topic `nope`: the topics file has `cli.orders`, `cli.pings`",
    );
    failed(
        &kafka_orm(&env, &["dlq", "show", "cli.orders", "0:99"]),
        2,
        "no dead letter at 0:99",
    );
    let no_file = [env[0], env[1]];
    let missing = format!("{namespace}cli.nothing");
    failed(
        &kafka_orm(&no_file, &["dlq", "list", &missing]),
        2,
        "unknown topic: the cluster has no dead-letter topic",
    );
    failed(
        &kafka_orm(&no_file, &["topics"]),
        2,
        "needs the service's topics file",
    );
    failed(
        &kafka_orm(&no_file, &["dlq", "replay", &missing]),
        2,
        "needs the service's topics file",
    );
    failed(
        &kafka_orm(&[env[0], env[2]], &["outbox", "status"]),
        2,
        "no database: pass --database-url",
    );
    failed(
        &kafka_orm(&[env[1], env[2]], &["lag", "g"]),
        2,
        "no Kafka: pass --bootstrap-servers",
    );
    let broken = temp_file("broken.json");
    std::fs::write(&broken, "{").unwrap();
    let broken = broken.display().to_string();
    failed(
        &kafka_orm(&[("KAFKA_ORM_TOPICS", &broken)], &["topics"]),
        2,
        "is not valid",
    );
    failed(
        &kafka_orm(&[("KAFKA_ORM_TOPICS", "/nonexistent/t.json")], &["topics"]),
        2,
        "cannot read the topics file",
    );

    let started = Instant::now();
    let unreachable = ["--bootstrap-servers", "127.0.0.1:9", "--timeout", "2"];
    failed(
        &kafka_orm(
            &env,
            &[&unreachable[..], &["dlq", "list", "cli.orders"]].concat(),
        ),
        1,
        "cannot reach Kafka at `127.0.0.1:9`",
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let no_db = [
        "--database-url",
        "postgres://u:p@127.0.0.1:9/x",
        "--timeout",
        "2",
    ];
    failed(
        &kafka_orm(&env, &[&no_db[..], &["outbox", "status"]].concat()),
        1,
        "cannot connect to the database",
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        started.elapsed()
    );
}
