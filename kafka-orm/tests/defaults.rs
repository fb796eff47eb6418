//! The defaults table of `docs/topic.md` quotes `kafka_orm::defaults`, the one
//! place the defaults are defined; the derive refers to the same constants.

use std::time::Duration;

use kafka_orm::defaults;
use kafka_orm::{RetrySpec, Topic};

/// The `default` cell of the row of `docs/topic.md`'s defaults table that links `constant`.
fn quoted(constant: &str) -> String {
    let doc = include_str!("../docs/topic.md");
    let link = format!("[`{constant}`](crate::defaults::{constant})");
    let row = doc
        .lines()
        .find(|line| line.starts_with('|') && line.contains(&link))
        .unwrap_or_else(|| panic!("docs/topic.md has no row for `{constant}`"));
    // `| setting | default | constant |`
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    cells[2].trim_matches('`').to_owned()
}

/// `100ms`, `30s`, `7d`: the one-unit durations the table quotes.
fn duration(text: &str) -> Duration {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text}"));
    match &text[digits.len()..] {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        unit => panic!("unknown unit in {text}: {unit}"),
    }
}

#[test]
fn the_docs_quote_the_constants() {
    assert_eq!(
        quoted("RETRY_ATTEMPTS"),
        defaults::RETRY_ATTEMPTS.to_string()
    );
    assert_eq!(duration(&quoted("RETRY_BACKOFF")), defaults::RETRY_BACKOFF);
    assert_eq!(
        duration(&quoted("RETRY_MAX_BACKOFF")),
        defaults::RETRY_MAX_BACKOFF
    );
    assert_eq!(
        duration(&quoted("INBOX_RETENTION")),
        defaults::INBOX_RETENTION
    );
    assert_eq!(
        defaults::RETRY,
        RetrySpec::new(
            defaults::RETRY_ATTEMPTS,
            defaults::RETRY_BACKOFF,
            defaults::RETRY_MAX_BACKOFF
        )
    );
}

#[derive(serde::Serialize, serde::Deserialize, Topic)]
#[topic(inbox, retry(attempts = 7))]
pub struct Partial {
    pub id: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Topic)]
#[topic(retry)]
pub struct Bare {
    pub id: i64,
}

#[derive(serde::Serialize, serde::Deserialize, Topic)]
pub struct Absent {
    pub id: i64,
}

#[test]
fn the_derive_fills_in_the_constants() {
    let retry = Partial::SPEC.retry.unwrap();
    assert_eq!(retry.attempts, 7);
    assert_eq!(retry.backoff, defaults::RETRY_BACKOFF);
    assert_eq!(retry.max_backoff, defaults::RETRY_MAX_BACKOFF);
    let retention = Partial::SPEC.inbox.unwrap().retention_secs;
    assert_eq!(retention, defaults::INBOX_RETENTION.as_secs());
    // A bare `retry` and no `retry` are the same: the defaults.
    assert_eq!(Bare::SPEC.retry, None);
    assert_eq!(Absent::SPEC.retry, None);
}
