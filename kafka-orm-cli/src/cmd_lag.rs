//! `kafka-orm lag <group>`: a consumer group's committed-offset lag per partition.

use crate::args::LagArgs;
use crate::fail::{Fail, Outcome};
use crate::output::{Table, print_json};
use crate::services::Services;

/// Prints the lag of the group.
pub async fn run(services: &Services, args: &LagArgs, json: bool) -> Outcome {
    let orm = services.kafka().await?;
    let lag = orm
        .group_lag(&args.group, &args.topic, services.timeout())
        .await?;
    if lag.is_empty() {
        let on = if args.topic.is_empty() {
            "any topic".to_string()
        } else {
            format!("`{}`", args.topic.join("`, `"))
        };
        return Err(Fail::input(format!(
            "consumer group `{}` has no committed offsets on {on}: no such group, or it never committed (a namespaced group's name starts with the namespace)",
            args.group
        )));
    }
    let total: i64 = lag.iter().map(|p| p.lag).sum();
    if json {
        let partitions: Vec<_> = lag
            .iter()
            .map(
                |p| serde_json::json!({ "topic": p.topic, "partition": p.partition, "lag": p.lag }),
            )
            .collect();
        print_json(
            &serde_json::json!({ "group": args.group, "total": total, "partitions": partitions }),
        );
        return Ok(());
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "LAG"]);
    for p in &lag {
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.lag.to_string(),
        ]);
    }
    table.row(vec!["total".into(), String::new(), total.to_string()]);
    table.print();
    Ok(())
}
