//! `kafka-orm outbox status` and `outbox retry`: the database alone, no broker needed.

use kafka_orm::deps::sea_orm::DatabaseConnection;
use kafka_orm::ops::{self, RetryRows};
use kafka_orm::{OutboxStatus, TopicSpec};

use crate::args::RetryArgs;
use crate::fail::{Fail, Outcome};
use crate::output::{Table, age, or_dash, print_json, short, utc};
use crate::services::Services;

/// The database and the outbox topics of the topics file, their tables checked.
async fn outboxes(
    services: &Services,
    what: &str,
) -> Outcome<(DatabaseConnection, Vec<&'static TopicSpec>)> {
    let specs: Vec<_> = services
        .specs(what)?
        .into_iter()
        .filter(|s| s.outbox.is_some())
        .collect();
    let db = services.database().await?;
    let missing = ops::missing_outbox_tables(&db, &specs).await?;
    if !missing.is_empty() {
        return Err(Fail::input(format!(
            "no such table: the database has no outbox table `{}` (has the service run with this database, or its migrations?)",
            missing.join("`, `")
        )));
    }
    Ok((db, specs))
}

/// Prints every outbox's backlog, oldest age and failing rows.
pub async fn status(services: &Services, json: bool) -> Outcome {
    let (db, specs) = outboxes(services, "`outbox status`").await?;
    let status = ops::outbox_status(&db, &specs).await?;
    if json {
        print_json(&serde_json::Value::Array(
            status.iter().map(to_json).collect(),
        ));
        return Ok(());
    }
    let mut table = Table::new(&["TABLE", "TYPE", "BACKLOG", "OLDEST", "FAILING"]);
    let mut failing = Table::new(&["TABLE", "ID", "KEY", "ATTEMPTS", "NEXT ATTEMPT", "ERROR"]);
    for s in &status {
        table.row(vec![
            s.table.into(),
            s.type_name.into(),
            s.backlog.to_string(),
            or_dash(s.oldest_age.map(age)),
            s.failing.len().to_string(),
        ]);
        for f in &s.failing {
            failing.row(vec![
                s.table.into(),
                f.id.to_string(),
                or_dash(f.key.as_ref()),
                f.attempts.to_string(),
                utc(f.next_attempt_at_ms),
                short(f.last_error.as_deref().unwrap_or("-"), 80),
            ]);
        }
    }
    if status.is_empty() {
        crate::outln!("the topics file has no outbox topics");
        return Ok(());
    }
    table.print();
    if !failing.is_empty() {
        crate::outln!();
        failing.print();
    }
    Ok(())
}

fn to_json(s: &OutboxStatus) -> serde_json::Value {
    let failing: Vec<_> = s
        .failing
        .iter()
        .map(|f| {
            serde_json::json!({
                "id": f.id, "key": f.key, "attempts": f.attempts,
                "next_attempt_at_ms": f.next_attempt_at_ms, "last_error": f.last_error,
            })
        })
        .collect();
    serde_json::json!({
        "table": s.table, "type_name": s.type_name, "backlog": s.backlog,
        "oldest_age_ms": s.oldest_age.map(|a| a.as_millis() as u64), "failing": failing,
    })
}

/// Makes one row, or every failing row, of an outbox due now.
pub async fn retry(services: &Services, args: &RetryArgs, json: bool) -> Outcome {
    let (db, specs) = outboxes(services, "`outbox retry`").await?;
    let spec = match (&args.topic, specs.as_slice()) {
        (Some(name), _) => {
            let spec = services.resolve(name)?.spec;
            specs
                .iter()
                .copied()
                .find(|s| s.name == spec.name)
                .ok_or_else(|| Fail::input(format!("topic `{name}` has no outbox")))?
        }
        (None, [one]) => one,
        (None, []) => return Err(Fail::input("the topics file has no outbox topics")),
        (None, many) => {
            let names: Vec<&str> = many.iter().map(|s| s.name).collect();
            return Err(Fail::input(format!(
                "the service has several outboxes: say which with --topic (`{}`)",
                names.join("`, `")
            )));
        }
    };
    let table = spec.outbox.map_or(spec.name, |o| o.table);
    let rows = match args.id {
        Some(id) if !args.failing => RetryRows::Row(id),
        _ => RetryRows::Failing,
    };
    let n = ops::outbox_retry(&db, spec, rows).await?;
    if let RetryRows::Row(id) = rows
        && n == 0
    {
        return Err(Fail::input(format!(
            "no row {id} in the outbox table `{table}`"
        )));
    }
    if json {
        print_json(&serde_json::json!({ "table": table, "rows": n }));
    } else {
        crate::outln!("{n} row(s) of `{table}` due now");
    }
    Ok(())
}
