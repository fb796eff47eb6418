//! The built `kafka-orm` binary against real Kafka and PostgreSQL: a service of this test
//! (an outbox topic and a plain one, both with a `dlq`) makes dead letters and outbox
//! rows, writes its topics file, and every command is run on them, in tables and in JSON.

mod common;

use common::*;
use kafka_orm::deps::sea_orm::ConnectionTrait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_against_the_real_services() {
    let Some(s) = service_with_dead_letters("cli_all").await else {
        return;
    };
    let ns = s.namespace.clone();

    let topics = ok(&s.run(&["topics"]));
    for want in [
        format!("{ns}cli.orders"),
        "order_outbox".into(),
        format!("{ns}cli.pings.dlq"),
    ] {
        assert!(topics.contains(&want), "{want} in:\n{topics}");
    }
    let listed = json(&s.run(&["topics", "--json"]));
    let listed = listed["topics"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|t| t["message_types"] == serde_json::json!(["Order"])),
        "each topic names its message types: {listed:?}"
    );

    outbox_commands(&s).await;
    dlq_list_and_show(&s);

    dlq_replay_once(&s).await;

    let group = format!("{ns}cli-orders");
    let lag = ok(&s.run(&["lag", &group]));
    assert!(
        lag.contains(&format!("{ns}cli.orders")) && lag.contains("total"),
        "{lag}"
    );
    assert_eq!(
        json(&s.run(&["lag", &group, "--json"]))["total"],
        serde_json::json!(0)
    );
    failed(
        &s.run(&["lag", &format!("{ns}nobody")]),
        2,
        "has no committed offsets",
    );
    drop(s.orm);
}

/// `outbox status` and `outbox retry`, on two more rows of which one is failing.
async fn outbox_commands(s: &Service) {
    let orders = [5, 6].map(|id| Order {
        id,
        customer: format!("c-{id}"),
        fail: false,
    });
    publish(&s.orm, &s.db, &orders).await;
    let fail = "UPDATE order_outbox SET attempts = 2, next_attempt_at = 9999999999999, \
                last_error = 'broker said no' WHERE id = (SELECT min(id) FROM order_outbox)";
    s.db.execute_unprepared(fail).await.unwrap();
    let status = ok(&s.run(&["outbox", "status"]));
    assert!(
        status.contains("order_outbox") && status.contains("broker said no"),
        "{status}"
    );
    let status = json(&s.run(&["outbox", "status", "--json"]));
    assert_eq!(status[0]["backlog"], serde_json::json!(2));
    let id = status[0]["failing"][0]["id"].as_i64().unwrap();

    let retried = ok(&s.run(&["outbox", "retry", &id.to_string()]));
    assert!(
        retried.contains("1 row(s) of `order_outbox` due now"),
        "{retried}"
    );
    let due = format!("SELECT next_attempt_at FROM order_outbox WHERE id = {id}");
    assert_eq!(s.scalar(&due).await, 0);
    s.db.execute_unprepared(fail).await.unwrap();
    assert_eq!(
        json(&s.run(&["outbox", "retry", "--failing", "--json"]))["rows"],
        serde_json::json!(1)
    );
    assert_eq!(s.scalar(&due).await, 0);
    failed(
        &s.run(&["outbox", "retry", "999999"]),
        2,
        "no row 999999 in the outbox table `order_outbox`",
    );
    failed(
        &s.run(&["outbox", "retry", "1", "--topic", "cli.pings"]),
        2,
        "has no outbox",
    );
}

/// `dlq list` (filters, pages) and `dlq show`.
fn dlq_list_and_show(s: &Service) {
    let table = ok(&s.run(&["dlq", "list", "cli.orders"]));
    assert!(
        table.contains("refused: order 2") && table.contains("refused: order 4"),
        "{table}"
    );
    let all = json(&s.run(&["dlq", "list", "Order", "--json"]));
    let letters = all["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert!(
        letters
            .iter()
            .all(|l| l["info"]["attempts"] == serde_json::json!(1))
    );
    let first = json(&s.run(&["dlq", "list", "cli.orders", "--limit", "1", "--json"]));
    let next = first["next"].as_str().unwrap().to_string();
    assert!(ok(&s.run(&["dlq", "list", "cli.orders", "--limit", "1"])).contains("more: --after"));
    let second = json(&s.run(&[
        "dlq",
        "list",
        "cli.orders",
        "--limit",
        "1",
        "--after",
        &next,
        "--json",
    ]));
    assert_eq!(second["letters"].as_array().unwrap().len(), 1);
    assert_eq!(second["next"], serde_json::Value::Null);
    assert_ne!(
        first["letters"][0]["position"],
        second["letters"][0]["position"]
    );
    let count = |args: &[&str]| {
        let mut all = vec!["dlq", "list", "cli.orders", "--json"];
        all.extend_from_slice(args);
        json(&s.run(&all))["letters"].as_array().unwrap().len()
    };
    assert_eq!(count(&["--error", "ORDER 4"]), 1);
    assert_eq!(count(&["--key", "c-2"]), 1);
    assert_eq!(count(&["--since", "1h"]), 2);
    assert_eq!(count(&["--until", "1h"]), 0);
    assert!(
        ok(&s.run(&["dlq", "list", "cli.orders", "--until", "1h"])).contains("no dead letters")
    );

    let at = letters[0]["position"].as_str().unwrap();
    let shown = ok(&s.run(&["dlq", "show", "cli.orders", at]));
    assert!(
        shown.contains("refused: order") && shown.contains("\"customer\":\"c-"),
        "{shown}"
    );
    let shown = json(&s.run(&["dlq", "show", "cli.orders", at, "--json"]));
    assert_eq!(shown["position"].as_str(), Some(at));
    failed(
        &s.run(&["dlq", "show", "cli.orders", "0:999999"]),
        2,
        "no dead letter at 0:999999",
    );
}

/// `dlq replay`: a dry run, the replay through the outbox, and a rerun that finds it done.
async fn dlq_replay_once(s: &Service) {
    let dry = ok(&s.run(&[
        "dlq",
        "replay",
        "cli.orders",
        "--error",
        "order 2",
        "--dry-run",
    ]));
    assert!(dry.contains("would replay 1 of 1"), "{dry}");
    let rows = s.scalar("SELECT count(*) FROM order_outbox").await;
    let done = ok(&s.run(&["dlq", "replay", "cli.orders", "--error", "order 2"]));
    assert!(
        done.contains("replayed 1 of 1") && done.contains("through the outbox `order_outbox`"),
        "{done}"
    );
    assert_eq!(
        s.scalar("SELECT count(*) FROM order_outbox").await,
        rows + 1
    );
    let again = json(&s.run(&[
        "dlq",
        "replay",
        "cli.orders",
        "--error",
        "order 2",
        "--json",
    ]));
    assert_eq!(
        (
            again["replayed"].as_array().unwrap().len(),
            again["already_replayed"].as_u64()
        ),
        (0, Some(1))
    );
    assert_eq!(
        s.scalar("SELECT count(*) FROM order_outbox").await,
        rows + 1,
        "once"
    );
    let listed = json(&s.run(&["dlq", "list", "cli.orders", "--key", "c-2", "--json"]));
    assert_eq!(listed["letters"][0]["replayed"], serde_json::json!(true));
}
