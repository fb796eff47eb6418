//! `kafka-orm dlq list` and `dlq show`: a topic's dead letters, raw (the CLI has no Rust
//! types to decode them with).

use kafka_orm::dlq::{DeadLetterRecord, DlqFilter, Page, RawDlq};

use crate::args::{FilterArgs, ListArgs, ShowArgs};
use crate::fail::{Fail, Outcome};
use crate::output::{Table, now_ms, or_dash, parse_time, print_json, short, utc};
use crate::services::Services;

/// The dead-letter topic of `topic`, on a context that answered.
pub async fn open(services: &Services, topic: &str) -> Outcome<RawDlq> {
    let resolved = services.resolve(topic)?;
    let orm = services.kafka().await?;
    let dlq = orm.dlq_of(resolved.spec).timeout(services.timeout());
    Ok(dlq)
}

/// The filter the flags give.
pub fn filter(args: &FilterArgs) -> Outcome<DlqFilter> {
    let now = now_ms();
    let mut f = DlqFilter::all();
    if let Some(text) = &args.error {
        f = f.error_contains(text.clone());
    }
    if let Some(key) = &args.key {
        f = f.key(key.clone());
    }
    if let Some(t) = &args.since {
        f = f.since_ms(parse_time(t, now)?);
    }
    if let Some(t) = &args.until {
        f = f.until_ms(parse_time(t, now)?);
    }
    if let Some(p) = args.partition {
        f = f.partition(p);
    }
    Ok(f)
}

/// Prints a page of dead letters.
pub async fn list(services: &Services, args: &ListArgs, json: bool) -> Outcome {
    let dlq = open(services, &args.topic).await?;
    let page = Page {
        after: args.after,
        limit: args.limit.max(1),
    };
    let page = dlq
        .list(&filter(&args.filter)?, page)
        .await
        .map_err(|e| unknown(&dlq, e))?;
    if json {
        let letters: Vec<_> = page.letters.iter().map(record_json).collect();
        let next = page.next.map(|p| p.to_string());
        print_json(
            &serde_json::json!({ "dlq_topic": dlq.name(), "letters": letters, "next": next }),
        );
        return Ok(());
    }
    let mut table = Table::new(&[
        "POSITION",
        "KEY",
        "ATTEMPTS",
        "FAILED AT",
        "SOURCE",
        "REPLAYED",
        "ERROR",
    ]);
    for r in &page.letters {
        let source = match (
            &r.info.source_topic,
            r.info.source_partition,
            r.info.source_offset,
        ) {
            (Some(t), Some(p), Some(o)) => format!("{t}[{p}]@{o}"),
            _ => "-".into(),
        };
        table.row(vec![
            r.position.to_string(),
            or_dash(r.key_str()),
            or_dash(r.info.attempts),
            or_dash(r.failed_at_ms().map(utc)),
            source,
            r.replayed
                .map_or("?", |y| if y { "yes" } else { "no" })
                .into(),
            short(r.info.error.as_deref().unwrap_or("-"), 60),
        ]);
    }
    if table.is_empty() {
        crate::outln!("no dead letters in `{}` match", dlq.name());
    } else {
        table.print();
    }
    if let Some(next) = page.next {
        crate::outln!("more: --after {next}");
    }
    Ok(())
}

/// Prints one dead letter in full.
pub async fn show(services: &Services, args: &ShowArgs, json: bool) -> Outcome {
    let dlq = open(services, &args.topic).await?;
    let found = dlq.get(args.offset).await.map_err(|e| unknown(&dlq, e))?;
    let Some(r) = found else {
        return Err(Fail::input(format!(
            "no dead letter at {} in `{}`",
            args.offset,
            dlq.name()
        )));
    };
    if json {
        print_json(&record_json(&r));
        return Ok(());
    }
    let i = &r.info;
    let mut t = Table::new(&["FIELD", "VALUE"]);
    let fields: [(&str, String); 12] = [
        ("position", r.position.to_string()),
        ("dlq topic", r.dlq_topic.clone()),
        ("key", or_dash(r.key_str())),
        ("message id", or_dash(r.message_id())),
        (
            "source",
            format!(
                "{}[{}]@{}",
                or_dash(i.source_topic.as_ref()),
                or_dash(i.source_partition),
                or_dash(i.source_offset)
            ),
        ),
        ("group", or_dash(i.group.as_ref())),
        ("attempts", or_dash(i.attempts)),
        ("first failure", or_dash(i.first_failure_ms.map(utc))),
        ("last failure", or_dash(i.last_failure_ms.map(utc))),
        (
            "replayed",
            r.replayed.map_or("unknown".into(), |y| y.to_string()),
        ),
        ("error", or_dash(i.error.as_ref())),
        ("payload", payload_text(&r)),
    ];
    for (name, value) in fields {
        t.row(vec![name.into(), value]);
    }
    for (name, value) in r.headers.iter() {
        t.row(vec![
            format!("header {name}"),
            String::from_utf8_lossy(value).into_owned(),
        ]);
    }
    t.print();
    Ok(())
}

/// An unknown dead-letter topic said as such.
fn unknown(dlq: &RawDlq, e: kafka_orm::Error) -> Fail {
    match e {
        kafka_orm::Error::Admin { .. } => Fail::input(format!(
            "unknown topic: the cluster has no dead-letter topic `{}`",
            dlq.name()
        )),
        other => other.into(),
    }
}

/// The payload as text when it is UTF-8, else as hex.
fn payload_text(r: &DeadLetterRecord) -> String {
    match r.payload.as_deref() {
        None => "(none)".into(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => format!("(not UTF-8, {} bytes) {}", bytes.len(), hex(bytes)),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A dead letter as JSON: the payload as text (`payload`) when it is UTF-8, as hex
/// (`payload_hex`) always.
pub fn record_json(r: &DeadLetterRecord) -> serde_json::Value {
    let payload = r.payload.as_deref();
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v).into_owned().into(),
            )
        })
        .collect();
    serde_json::json!({
        "position": r.position.to_string(),
        "partition": r.position.partition,
        "offset": r.position.offset,
        "timestamp_ms": r.timestamp_ms,
        "key": r.key_str(),
        "message_id": r.message_id(),
        "info": r.info,
        "replayed": r.replayed,
        "headers": headers,
        "payload": payload.and_then(|p| std::str::from_utf8(p).ok()),
        "payload_hex": payload.map(hex),
    })
}
