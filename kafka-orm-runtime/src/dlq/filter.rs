//! [`DlqFilter`]: which dead letters a listing shows or a replay re-publishes. A value,
//! no I/O: every condition given must hold.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::letter::{DeadLetterRecord, Position};

/// Which dead letters to list or replay: all of them ([`DlqFilter::all`]) narrowed by
/// each condition added (all must hold).
///
/// ```
/// # use kafka_orm_runtime::dlq::DlqFilter;
/// let timeouts_of_c42 = DlqFilter::all().error_contains("timeout").key("c-42");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqFilter {
    error_contains: Option<String>,
    key: Option<Vec<u8>>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    partition: Option<i32>,
    source_partition: Option<i32>,
    positions: Option<BTreeSet<Position>>,
    undecodable: Option<bool>,
    include_replayed: bool,
}

impl DlqFilter {
    /// Every dead letter (but, for a replay, those replayed already).
    pub fn all() -> Self {
        DlqFilter::default()
    }

    /// Those whose error contains `text` (case-insensitive).
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error_contains = Some(text.into().to_lowercase());
        self
    }

    /// Those with message key `key`.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Those that failed last at or after `since_ms` (epoch milliseconds; see
    /// [`DeadLetterRecord::failed_at_ms`]).
    pub fn since_ms(mut self, since_ms: i64) -> Self {
        self.since_ms = Some(since_ms);
        self
    }

    /// Those that failed last at or after `time`.
    pub fn since(self, time: SystemTime) -> Self {
        self.since_ms(epoch_ms(time))
    }

    /// Those that failed last before `until_ms` (epoch milliseconds).
    pub fn until_ms(mut self, until_ms: i64) -> Self {
        self.until_ms = Some(until_ms);
        self
    }

    /// Those that failed last before `time`.
    pub fn until(self, time: SystemTime) -> Self {
        self.until_ms(epoch_ms(time))
    }

    /// Those in partition `partition` of the dead-letter topic.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Those read from partition `partition` of the source topic.
    pub fn source_partition(mut self, partition: i32) -> Self {
        self.source_partition = Some(partition);
        self
    }

    /// Only the dead letter at `position` (call again to add more).
    pub fn at(mut self, position: Position) -> Self {
        self.positions
            .get_or_insert_with(BTreeSet::new)
            .insert(position);
        self
    }

    /// Only those whose payload did (`true`) or did not (`false`) fail to decode (0
    /// attempts: dead-lettered at once).
    pub fn undecodable(mut self, undecodable: bool) -> Self {
        self.undecodable = Some(undecodable);
        self
    }

    /// Whether a replay takes dead letters that were replayed already too (default: no,
    /// which makes a replay once per dead letter; with `true` they are replayed again).
    /// Listings show them either way.
    pub fn include_replayed(mut self, include: bool) -> Self {
        self.include_replayed = include;
        self
    }

    /// Whether a replay re-publishes replayed dead letters again.
    pub fn includes_replayed(&self) -> bool {
        self.include_replayed
    }

    /// The only positions it can match, if it names some.
    pub(crate) fn positions(&self) -> Option<&BTreeSet<Position>> {
        self.positions.as_ref()
    }

    /// Whether `record` passes every condition.
    pub fn matches(&self, record: &DeadLetterRecord) -> bool {
        let info = &record.info;
        let error = || info.error.as_deref().unwrap_or_default().to_lowercase();
        let failed = record.failed_at_ms();
        self.error_contains
            .as_ref()
            .is_none_or(|t| error().contains(t.as_str()))
            && self
                .key
                .as_ref()
                .is_none_or(|k| record.key.as_ref() == Some(k))
            && self.since_ms.is_none_or(|s| failed.is_some_and(|f| f >= s))
            && self.until_ms.is_none_or(|u| failed.is_some_and(|f| f < u))
            && self
                .partition
                .is_none_or(|p| record.position.partition == p)
            && self
                .source_partition
                .is_none_or(|p| info.source_partition == Some(p))
            && self
                .positions
                .as_ref()
                .is_none_or(|ps| ps.contains(&record.position))
            && self
                .undecodable
                .is_none_or(|u| (info.attempts == Some(0)) == u)
    }
}

fn epoch_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_millis().min(i64::MAX as u128) as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{DLQ_ATTEMPTS, DLQ_ERROR, DLQ_LAST_FAILURE, DLQ_SOURCE_PARTITION};
    use crate::producer::Headers;

    fn record(
        at: Position,
        key: &str,
        error: &str,
        attempts: u32,
        failed: i64,
    ) -> DeadLetterRecord {
        let headers = Headers::new()
            .with(DLQ_ERROR, error)
            .with(DLQ_ATTEMPTS, attempts.to_string())
            .with(DLQ_LAST_FAILURE, failed.to_string())
            .with(DLQ_SOURCE_PARTITION, "4");
        DeadLetterRecord::new("d", at, None, Some(key.into()), None, headers)
    }

    #[test]
    fn all_matches_everything() {
        let r = record(Position::new(0, 1), "k", "e", 1, 10);
        assert!(DlqFilter::all().matches(&r));
    }

    #[test]
    fn each_condition_narrows() {
        let r = record(
            Position::new(1, 7),
            "c-42",
            "Timeout talking to db",
            3,
            1_000,
        );
        let yes = [
            DlqFilter::all().error_contains("TIMEOUT"),
            DlqFilter::all().key("c-42"),
            DlqFilter::all().since_ms(1_000).until_ms(1_001),
            DlqFilter::all().partition(1).source_partition(4),
            DlqFilter::all()
                .at(Position::new(0, 0))
                .at(Position::new(1, 7)),
            DlqFilter::all().undecodable(false),
        ];
        for f in yes {
            assert!(f.matches(&r), "{f:?}");
        }
        let no = [
            DlqFilter::all().error_contains("refused"),
            DlqFilter::all().key("c-4"),
            DlqFilter::all().since_ms(1_001),
            DlqFilter::all().until_ms(1_000),
            DlqFilter::all().partition(0),
            DlqFilter::all().source_partition(3),
            DlqFilter::all().at(Position::new(1, 8)),
            DlqFilter::all().undecodable(true),
            DlqFilter::all().key("c-42").error_contains("refused"),
        ];
        for f in no {
            assert!(!f.matches(&r), "{f:?}");
        }
    }

    #[test]
    fn times_before_the_epoch_compare_too() {
        let before = UNIX_EPOCH - std::time::Duration::from_millis(5);
        assert_eq!(epoch_ms(before), -5);
        let r = record(Position::new(0, 0), "k", "e", 1, 0);
        assert!(DlqFilter::all().since(before).matches(&r));
    }
}
