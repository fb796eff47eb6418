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
        type_column(t),
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

/// The Rust type, and the message type names when they are not just its own name (a topic
/// enum's variants, or a `type_name = ".."`).
fn type_column(t: &TopicEntry) -> String {
    let short = t.type_name.rsplit("::").next().unwrap_or(&t.type_name);
    match t.message_types.as_slice() {
        [] => t.type_name.clone(),
        [one] if one == short => t.type_name.clone(),
        types => format!("{} [{}]", t.type_name, types.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(type_name: &str, types: &[&str]) -> TopicEntry {
        let file = format!(
            r#"{{"type_name":"{type_name}","message_types":{types:?},"name":"t","kafka_topic":"t",
            "key_fields":[],"format":"json","direction":"both","group":null,"kafka_group":null,
            "partitions":null,"replication":null,"outbox":null,"inbox":null,"retry":null,
            "retry_topics":false,"dlq":null,"kafka_dlq":null}}"#
        );
        serde_json::from_str(&file).unwrap()
    }

    #[test]
    fn the_type_column_names_the_message_types_of_a_topic_enum() {
        assert_eq!(type_column(&entry("app::Order", &["Order"])), "app::Order");
        assert_eq!(
            type_column(&entry("app::OrderEvent", &["order.created", "order.paid"])),
            "app::OrderEvent [order.created, order.paid]"
        );
        assert_eq!(type_column(&entry("app::Order", &[])), "app::Order");
    }
}
