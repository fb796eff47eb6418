//! `kafka-orm topics`: the service's topics and their settings, from its topics file.

use kafka_orm::ops::TopicEntry;

use crate::fail::Outcome;
use crate::output::{Table, or_dash, print_json};
use crate::services::Services;

/// Prints the topics of the topics file.
pub fn run(services: &Services, json: bool) -> Outcome {
    let file = services.topics_file("`topics`")?;
    if json {
        print_json(&serde_json::json!({ "namespace": file.namespace, "topics": file.topics }));
        return Ok(());
    }
    let mut table = Table::new(&[
        "TOPIC",
        "TYPE",
        "KEY",
        "GROUP",
        "PARTITIONS",
        "OUTBOX",
        "INBOX",
        "RETRY",
        "DLQ",
    ]);
    for t in &file.topics {
        table.row(row(t));
    }
    table.print();
    Ok(())
}

fn row(t: &TopicEntry) -> Vec<String> {
    let inbox = t.inbox.as_ref().map(|i| match i.dedup_fields.as_slice() {
        [] => format!("{} (message id)", i.table),
        fields => format!("{} ({})", i.table, fields.join(", ")),
    });
    let retry = t.retry.as_ref().map(|r| {
        let topics = if t.retry_topics {
            " + retry topics"
        } else {
            ""
        };
        format!(
            "{}x {}ms..{}ms{topics}",
            r.attempts, r.backoff_ms, r.max_backoff_ms
        )
    });
    vec![
        t.kafka_topic.clone(),
        t.type_name.clone(),
        if t.key_fields.is_empty() {
            "-".into()
        } else {
            t.key_fields.join(", ")
        },
        or_dash(t.kafka_group.as_ref()),
        or_dash(t.partitions),
        or_dash(t.outbox.as_ref().map(|o| &o.table)),
        or_dash(inbox),
        or_dash(retry.or_else(|| t.retry_topics.then(|| "retry topics".to_string()))),
        or_dash(t.kafka_dlq.as_ref()),
    ]
}
