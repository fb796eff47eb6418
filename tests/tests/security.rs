//! TLS and SASL against the real broker's SASL_SSL listener (`scripts/kafka` starts one on
//! the single test node: its own CA, PLAIN and SCRAM users, `scripts/kafka env` says
//! where): produce and consume, the outbox relay and an inbox handler over it, and the
//! typed errors of a wrong password, an untrusted CA and a port that does not speak TLS.

use std::time::{Duration, Instant};

use kafka_orm::deps::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, Statement, TransactionTrait,
};
use kafka_orm::{Delivery, Error, HandlerError, KafkaOrm, KafkaOrmBuilder, Scram, Tls, Topic};
use kafka_orm_tests::{SKIP_INFRA_ENV, fresh_postgres, kafka_bootstrap, unique_namespace, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "security.readings",
    key = "sensor",
    partitions = 2,
    group = "security"
)]
struct Reading {
    sensor: String,
    seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(
    name = "security.transfers",
    key = "account",
    outbox,
    inbox(dedup = "transfer_id"),
    partitions = 2,
    group = "security-ledger"
)]
struct Transfer {
    transfer_id: i64,
    account: String,
}

/// The SASL_SSL listener of the test broker, from `scripts/kafka env`.
struct Secure {
    bootstrap: String,
    ca_file: String,
    username: String,
    password: String,
}

/// The SASL_SSL listener's settings; missing, the test fails naming the scripts (or, with
/// `KAFKA_ORM_SKIP_INFRA=1` and no broker configured at all, is skipped loudly).
fn secure() -> Option<Secure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (
        var("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"),
        var("KAFKA_SASL_SSL_CA_FILE"),
        var("KAFKA_SASL_USERNAME"),
        var("KAFKA_SASL_PASSWORD"),
    ) {
        (Some(bootstrap), Some(ca_file), Some(username), Some(password)) => Some(Secure {
            bootstrap,
            ca_file,
            username,
            password,
        }),
        _ => {
            // No broker at all: the shared helper fails or skips as for every other test.
            kafka_bootstrap()?;
            panic!(
                "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS, KAFKA_SASL_SSL_CA_FILE, KAFKA_SASL_USERNAME and \
                 KAFKA_SASL_PASSWORD must be set: run ./scripts/test, or `eval \"$(scripts/kafka env)\"` \
                 after scripts/kafka start (a broker started by an older scripts/kafka needs \
                 scripts/kafka restart); {SKIP_INFRA_ENV}=1 skips only when no broker is configured"
            )
        }
    }
}

/// A builder for the SASL_SSL listener, trusting the test CA, under a unique namespace.
fn builder(s: &Secure, test: &str) -> KafkaOrmBuilder {
    KafkaOrm::builder()
        .bootstrap_servers(&s.bootstrap)
        .namespace(unique_namespace(test))
        .connect_timeout(Duration::from_secs(30))
        .tls(Tls::ca_file(&s.ca_file))
}

/// Produces readings and consumes them back in a group, all over SASL_SSL.
async fn round_trip(orm: &KafkaOrm) {
    let topic = orm.topic::<Reading>();
    let sent: Vec<Reading> = (0..20)
        .map(|seq| Reading {
            sensor: format!("s{}", seq % 3),
            seq,
        })
        .collect();
    let reports = within(60, "producing over SASL_SSL", topic.produce_all(&sent))
        .await
        .unwrap();
    assert_eq!(reports.len(), sent.len());
    let mut consumer = topic.consume().await.unwrap();
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let d = within(60, "consuming over SASL_SSL", consumer.next())
            .await
            .unwrap()
            .unwrap();
        got.push(d.into_value());
    }
    got.sort_by_key(|r| r.seq);
    assert_eq!(got, sent);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_produce_and_consume() {
    let Some(s) = secure() else { return };
    let orm = builder(&s, "scram256")
        .sasl_scram(Scram::Sha256, &s.username, &s.password)
        .build()
        .await
        .unwrap();
    round_trip(&orm).await;
    let cfg = orm.client_config();
    assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(cfg.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_produce_and_consume() {
    let Some(s) = secure() else { return };
    let orm = builder(&s, "scram512")
        .sasl_scram(Scram::Sha512, &s.username, &s.password)
        .build()
        .await
        .unwrap();
    round_trip(&orm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_with_the_ca_as_pem_text_produce_and_consume() {
    let Some(s) = secure() else { return };
    let pem = std::fs::read_to_string(&s.ca_file).unwrap();
    let orm = builder(&s, "plain")
        .tls(Tls::ca_pem(pem))
        .sasl_plain(&s.username, &s.password)
        .build()
        .await
        .unwrap();
    round_trip(&orm).await;
}

async fn ledger_rows(db: &DatabaseConnection) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT transfer_id FROM ledger ORDER BY transfer_id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get_by_index(0).unwrap())
    .collect()
}

async fn apply(txn: &DatabaseTransaction, msg: &Delivery<Transfer>) -> Result<(), HandlerError> {
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO ledger (transfer_id, account) VALUES ($1, $2)",
        [msg.transfer_id.into(), msg.account.clone().into()],
    ))
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_relay_and_inbox_handler_over_sasl_ssl() {
    let Some(s) = secure() else { return };
    let Some(db) = fresh_postgres("security-outbox").await else {
        return;
    };
    db.execute_unprepared(
        "CREATE TABLE ledger (transfer_id BIGINT PRIMARY KEY, account TEXT NOT NULL)",
    )
    .await
    .unwrap();
    let orm = builder(&s, "outbox")
        .sasl_scram(Scram::Sha512, &s.username, &s.password)
        .database(db.clone())
        .build()
        .await
        .unwrap();

    let events: Vec<Transfer> = (1..=30)
        .map(|i| Transfer {
            transfer_id: i,
            account: format!("a{}", i % 4),
        })
        .collect();
    let txn = db.begin().await.unwrap();
    orm.topic::<Transfer>()
        .publish_all(&txn, &events)
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let relay = orm.outbox_relay().spawn().await.unwrap();
    let handler = orm
        .topic::<Transfer>()
        .handler_boxed(|txn, msg| Box::pin(async move { apply(txn, msg).await }))
        .spawn()
        .await
        .unwrap();
    within(90, "30 transfers applied over SASL_SSL", async {
        while ledger_rows(&db).await.len() < events.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(ledger_rows(&db).await, (1..=30).collect::<Vec<i64>>());
    assert!(relay.stats().delivered >= 30, "{:?}", relay.stats());
    assert_eq!(orm.outbox_status().await.unwrap()[0].backlog, 0);
    let stats = handler.shutdown().await.unwrap();
    assert_eq!(stats.handled, 30, "{stats:?}");
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authentication_error_within_the_connect_timeout() {
    let Some(s) = secure() else { return };
    let timeout = Duration::from_secs(15);
    let started = Instant::now();
    let err = builder(&s, "wrong-password")
        .connect_timeout(timeout)
        .sasl_scram(Scram::Sha256, &s.username, "not-the-password")
        .build()
        .await
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("after {took:?}: {err}");
    let Error::Authentication {
        bootstrap,
        mechanism,
        username,
        ..
    } = &err
    else {
        panic!("expected Error::Authentication, got: {err}");
    };
    assert_eq!(
        (bootstrap.as_str(), mechanism.as_str()),
        (s.bootstrap.as_str(), "SCRAM-SHA-256")
    );
    assert_eq!(username.as_deref(), Some(s.username.as_str()));
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains(&s.bootstrap), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(
        took < timeout,
        "took {took:?}, the connect timeout is {timeout:?}"
    );

    // PLAIN's refusal is the same typed error.
    let err = builder(&s, "wrong-password-plain")
        .connect_timeout(timeout)
        .sasl_plain("nobody", "nothing")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Authentication { mechanism, .. } if mechanism == "PLAIN"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error_within_the_connect_timeout() {
    let Some(s) = secure() else { return };
    let timeout = Duration::from_secs(15);
    let started = Instant::now();
    // The system's CAs do not know the test broker's self-signed CA.
    let err = builder(&s, "untrusted")
        .connect_timeout(timeout)
        .tls_system_roots()
        .sasl_scram(Scram::Sha256, &s.username, &s.password)
        .build()
        .await
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("after {took:?}: {err}");
    assert!(
        matches!(&err, Error::Tls { bootstrap, .. } if *bootstrap == s.bootstrap),
        "expected Error::Tls, got: {err}"
    );
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
    assert!(
        took < timeout,
        "took {took:?}, the connect timeout is {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_plaintext_listener_is_a_tls_error() {
    let Some(s) = secure() else { return };
    let Some(plaintext) = kafka_bootstrap() else {
        return;
    };
    let timeout = Duration::from_secs(15);
    let started = Instant::now();
    let err = builder(&s, "plaintext-port")
        .bootstrap_servers(&plaintext)
        .connect_timeout(timeout)
        .sasl_scram(Scram::Sha256, &s.username, &s.password)
        .build()
        .await
        .unwrap_err();
    eprintln!("after {:?}: {err}", started.elapsed());
    assert!(
        matches!(&err, Error::Tls { bootstrap, .. } if *bootstrap == plaintext),
        "expected Error::Tls, got: {err}"
    );
    assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tls_port_names_the_address_and_the_reason() {
    let Some(s) = secure() else { return };
    // A port nothing listens on: the connect timeout runs out, with librdkafka's reason.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = builder(&s, "unreachable")
        .bootstrap_servers(&closed)
        .connect_timeout(Duration::from_secs(3))
        .sasl_scram(Scram::Sha256, &s.username, &s.password)
        .build()
        .await
        .unwrap_err();
    eprintln!("{err}");
    let Error::Unreachable {
        bootstrap, reason, ..
    } = &err
    else {
        panic!("expected Error::Unreachable, got: {err}");
    };
    assert_eq!(bootstrap, &closed);
    assert!(reason.contains("Connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_is_a_tls_error_before_connecting() {
    let err = KafkaOrm::builder()
        .bootstrap_servers("127.0.0.1:9")
        .tls(Tls::ca_file("/nonexistent/kafka-orm/ca.pem"))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Tls { reason, .. } if reason.contains("/nonexistent/kafka-orm/ca.pem")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_refuses_security_settings() {
    let err = KafkaOrm::builder()
        .embedded()
        .sasl_plain("u", "p")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("plaintext")),
        "{err}"
    );
}

#[test]
fn the_builder_debug_output_hides_secrets() {
    let b = KafkaOrm::builder()
        .sasl_scram(Scram::Sha512, "alice", "typed-secret")
        .set("ssl.key.password", "raw-secret");
    let shown = format!("{b:?}");
    assert!(shown.contains("alice"), "{shown}");
    assert!(
        !shown.contains("typed-secret") && !shown.contains("raw-secret"),
        "{shown}"
    );
}
