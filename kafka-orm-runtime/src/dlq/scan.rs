//! Reading a dead-letter topic: its partitions are assigned (no group is joined, nothing
//! is committed) and read one after another, each from its start to the end it had when
//! the read began, `read_committed` (the handler's dead letters are transactional).

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::filter::DlqFilter;
use super::letter::{DeadLetterRecord, Position};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::offthread::OffThread;
use crate::producer::Headers;

/// What to read: the records after `after` (in partition, then offset order) that pass
/// `filter`, at most `limit` of them.
pub(crate) struct Scan<'a> {
    pub after: Option<Position>,
    pub filter: &'a DlqFilter,
    pub limit: Option<usize>,
}

/// What was read, and whether the limit cut it short.
pub(crate) struct Scanned {
    pub records: Vec<DeadLetterRecord>,
    pub more: bool,
}

/// One partition's offsets to read: `[start, end)`.
struct Range {
    partition: i32,
    start: i64,
    end: i64,
}

/// Reads `topic` as `scan` says, each broker call bounded by `timeout`.
pub(crate) async fn scan(
    orm: &KafkaOrm,
    topic: &str,
    scan: Scan<'_>,
    timeout: Duration,
) -> Result<Scanned> {
    let consumer = reader(orm)?;
    let ranges = ranges(consumer.get(), topic, &scan, timeout).await?;
    let reader = Reader {
        consumer: consumer.get(),
        topic,
        timeout,
        bootstrap: orm.bootstrap_servers(),
    };
    // One more than the page holds: whether there is a next page is then known, not
    // guessed (a transactional topic's last offset is often a commit marker).
    let want = scan.limit.map(|l| l.saturating_add(1));
    let mut records = Vec::new();
    for range in ranges {
        let left = want.map(|w| w.saturating_sub(records.len()));
        if left == Some(0) {
            break;
        }
        records.extend(reader.read(&range, scan.filter, left).await?);
    }
    let more = scan.limit.is_some_and(|l| records.len() > l);
    records.truncate(scan.limit.unwrap_or(usize::MAX));
    Ok(Scanned { records, more })
}

/// An assigning reader: end-of-partition events on, `read_committed`.
fn reader(orm: &KafkaOrm) -> Result<OffThread<StreamConsumer>> {
    let group = orm.namespaced("kafka-orm.dlq-reader");
    let consumer: StreamConsumer = orm
        .consumer_config_with(
            &group,
            &[
                ("enable.partition.eof", "true"),
                ("isolation.level", "read_committed"),
            ],
        )
        .create()
        .map_err(|e| Error::kafka("creating the dead-letter reader", e))?;
    Ok(OffThread::new(consumer, |c| {
        let _ = c.unassign();
    }))
}

/// The partitions of `topic` and the offsets to read in each, watermarks read now.
async fn ranges(
    consumer: &std::sync::Arc<StreamConsumer>,
    topic: &str,
    scan: &Scan<'_>,
    timeout: Duration,
) -> Result<Vec<Range>> {
    let watermarks = watermarks(consumer, topic, timeout).await?;
    let positions = scan.filter.positions();
    let mut out = Vec::new();
    for (partition, low, high) in watermarks {
        let mut start = match scan.after {
            Some(after) if partition < after.partition => continue,
            Some(after) if partition == after.partition => (after.offset + 1).max(low),
            _ => low,
        };
        let mut end = high;
        if let Some(positions) = positions {
            let mut wanted = positions.iter().filter(|p| p.partition == partition);
            let Some(first) = wanted.next() else { continue };
            let last = wanted.next_back().unwrap_or(first);
            start = start.max(first.offset);
            end = end.min(last.offset + 1);
        }
        if start < end {
            out.push(Range {
                partition,
                start,
                end,
            });
        }
    }
    Ok(out)
}

/// `(partition, low, high)` of every partition of `topic`, in partition order; an
/// [`Error::Admin`] when the cluster has no such topic.
pub(crate) async fn watermarks(
    consumer: &std::sync::Arc<StreamConsumer>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>> {
    let c = std::sync::Arc::clone(consumer);
    let name = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let meta = c
            .fetch_metadata(Some(&name), timeout)
            .map_err(|e| Error::kafka(format!("reading the metadata of `{name}`"), e))?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .filter(|t| t.name() == name && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::Admin {
                topic: name,
                reason: "the cluster has no such topic".into(),
            });
        }
        let mut out = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (low, high) = c
                .fetch_watermarks(&name, p, timeout)
                .map_err(|e| Error::kafka(format!("reading the watermarks of `{name}`[{p}]"), e))?;
            out.push((p, low, high));
        }
        out.sort_unstable();
        Ok(out)
    })
    .await
    .map_err(|_| Error::Shutdown)?
}

/// The reader of one scan.
struct Reader<'a> {
    consumer: &'a std::sync::Arc<StreamConsumer>,
    topic: &'a str,
    timeout: Duration,
    bootstrap: &'a str,
}

impl Reader<'_> {
    /// Reads `range`, keeping what passes `filter`, at most `limit`.
    async fn read(
        &self,
        range: &Range,
        filter: &DlqFilter,
        limit: Option<usize>,
    ) -> Result<Vec<DeadLetterRecord>> {
        let (consumer, topic) = (self.consumer, self.topic);
        let ctx = || format!("reading `{topic}`[{}]", range.partition);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, range.partition, Offset::Offset(range.start))
            .map_err(|e| Error::kafka(ctx(), e))?;
        consumer.assign(&tpl).map_err(|e| Error::kafka(ctx(), e))?;
        let mut out = Vec::new();
        loop {
            let received = tokio::time::timeout(self.timeout, consumer.recv())
                .await
                .map_err(|_| Error::Unreachable {
                    bootstrap: self.bootstrap.to_string(),
                    timeout: self.timeout,
                    reason: format!("no answer while {}", ctx()),
                })?;
            let m = match received {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) if p == range.partition => return Ok(out),
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) => return Err(Error::kafka(ctx(), e)),
            };
            if m.offset() >= range.end {
                return Ok(out);
            }
            let record = DeadLetterRecord::new(
                topic,
                Position::new(m.partition(), m.offset()),
                m.timestamp().to_millis(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.headers().map(Headers::from_rdkafka).unwrap_or_default(),
            );
            let last = m.offset() + 1 >= range.end;
            if filter.matches(&record) {
                out.push(record);
                if limit.is_some_and(|l| out.len() >= l) {
                    return Ok(out);
                }
            }
            if last {
                return Ok(out);
            }
        }
    }
}
