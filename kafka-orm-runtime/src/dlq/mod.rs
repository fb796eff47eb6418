//! Reading dead-letter topics and replaying dead letters.
//!
//! A handler that gives up on a message (its last attempt failed, or its payload does not
//! decode) writes the raw record to the topic's `dlq` with `kafka-orm-dlq-*` headers.
//! [`KafkaOrm::dlq`] reads them back typed, and re-publishes chosen ones once fixed:
//!
//! ```no_run
//! # use kafka_orm_runtime as kafka_orm;
//! # async fn run<T: kafka_orm::Topic + std::fmt::Debug>(orm: kafka_orm::KafkaOrm) -> kafka_orm::Result<()> {
//! use kafka_orm::dlq::{DlqFilter, Page, Payload};
//!
//! let dlq = orm.dlq::<T>();                         // `<namespace><topic>.dlq`
//! let page = dlq.list(&DlqFilter::all().error_contains("timeout"), Page::first(50)).await?;
//! for letter in &page.letters {
//!     let info = &letter.record.info;                // source topic/partition/offset, group,
//!     match &letter.payload {                        // attempts, error, first/last failure
//!         Payload::Decoded(value) => println!("{value:?}: {:?}", info.error),
//!         Payload::Raw { bytes, reason } => println!("{} raw bytes: {reason}", bytes.len()),
//!     }
//! }
//! let report = dlq.replay(DlqFilter::all().error_contains("timeout")).await?;
//! println!("replayed {} to {}", report.replayed.len(), report.target);
//! # Ok(()) }
//! ```
//!
//! - **Reading** assigns the dead-letter topic's partitions (no group is joined, nothing
//!   is committed) and reads them `read_committed`, partition after partition, up to the
//!   end they had when the read began. [`Page`] and [`DlqPage::next`] page through them.
//! - **Replaying** re-publishes each selected dead letter to the topic once: through the
//!   outbox for a topic with one (a database transaction writes the outbox row and a row
//!   of `kafka_orm_dlq_replays` keyed by the dead letter's partition and offset), in a
//!   Kafka transaction with a marker in `<dead-letter topic>.replayed` otherwise. A replay
//!   run twice, two at once, or one run again after a crash re-publishes each dead letter
//!   once. The message keeps its key, payload and headers, message id included, and gains
//!   [`REPLAY_OF_HEADER`] (`<dead-letter topic>[<partition>]@<offset>`).
//!
//! [`KafkaOrm::dlq_of`] does the same without the Rust type, from a [`TopicSpec`] (the
//! `kafka-orm` CLI builds those from a topics file).

mod filter;
mod ledger;
mod letter;
mod markers;
mod replay;
pub(crate) mod scan;

use std::marker::PhantomData;
use std::time::Duration;

use rdkafka::message::OwnedMessage;

pub use crate::tables::replays::{REPLAY_TABLE, create_table_sql};
pub use filter::DlqFilter;
pub use letter::{
    DeadLetter, DeadLetterInfo, DeadLetterRecord, Payload, Position, REPLAY_OF_HEADER, ReplayOf,
};
pub use replay::{Replay, ReplayProgress, ReplayReport, Replayed};

use crate::context::{KafkaOrm, TopicHandle};
use crate::error::{Error, Result};
use crate::topic::{Topic, TopicSpec};

/// Which page of dead letters to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Start after this position (partition, then offset order); `None`: from the start.
    pub after: Option<Position>,
    /// At most this many.
    pub limit: usize,
}

impl Page {
    /// The first `limit` dead letters.
    pub const fn first(limit: usize) -> Self {
        Page { after: None, limit }
    }

    /// The `limit` dead letters after `position` (a page's [`DlqPage::next`]).
    pub const fn after(position: Position, limit: usize) -> Self {
        Page {
            after: Some(position),
            limit,
        }
    }
}

/// One page of dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqPage<L> {
    /// The dead letters, in partition, then offset order.
    pub letters: Vec<L>,
    /// Where the next page starts (pass it to [`Page::after`]); `None` on the last page.
    pub next: Option<Position>,
}

/// The dead-letter topic of one topic, untyped: records with raw payloads.
#[derive(Clone, Debug)]
pub struct RawDlq {
    orm: KafkaOrm,
    spec: &'static TopicSpec,
    name: String,
    timeout: Duration,
}

/// The dead-letter topic of topic `T`: its dead letters decoded as `T` where they decode.
pub struct Dlq<T> {
    raw: RawDlq,
    _type: PhantomData<fn() -> T>,
}

impl KafkaOrm {
    /// The dead-letter topic of `T` (its `dlq`), to read and replay.
    pub fn dlq<T: Topic>(&self) -> Dlq<T> {
        Dlq {
            raw: self.dlq_of(T::SPEC),
            _type: PhantomData,
        }
    }

    /// The dead-letter topic of the topic `spec` describes, untyped.
    pub fn dlq_of(&self, spec: &'static TopicSpec) -> RawDlq {
        let topic = spec
            .dlq
            .map_or_else(|| format!("{}.dlq", spec.name), |d| d.topic.to_string());
        RawDlq {
            orm: self.clone(),
            spec,
            name: self.namespaced(&topic),
            timeout: crate::defaults::DLQ_TIMEOUT,
        }
    }
}

impl<T: Topic> TopicHandle<T> {
    /// The Kafka name of the topic's dead-letter topic (with the context's namespace);
    /// `None` when the topic has no `dlq`.
    pub fn dlq_name(&self) -> Option<String> {
        T::SPEC.dlq.map(|_| self.orm().dlq_of(T::SPEC).name)
    }
}

impl RawDlq {
    /// The dead-letter topic's Kafka name, with the namespace (for a topic without `dlq`,
    /// the name it would have: nothing is written there, and reading it is [`Error::NoDlq`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's settings.
    pub fn spec(&self) -> &'static TopicSpec {
        self.spec
    }

    /// How long one broker call may take (default [`DLQ_TIMEOUT`](crate::defaults::DLQ_TIMEOUT)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The dead letters `filter` selects, one page of them.
    pub async fn list(&self, filter: &DlqFilter, page: Page) -> Result<DlqPage<DeadLetterRecord>> {
        let scan = scan::Scan {
            after: page.after,
            filter,
            limit: Some(page.limit),
        };
        let scanned = scan::scan(&self.orm, self.checked_name()?, scan, self.timeout).await?;
        let mut letters = scanned.records;
        self.mark_replayed(&mut letters).await?;
        let next = scanned
            .more
            .then(|| letters.last().map(|l| l.position))
            .flatten();
        Ok(DlqPage { letters, next })
    }

    /// The dead letter at `position`, if there is one.
    pub async fn get(&self, position: Position) -> Result<Option<DeadLetterRecord>> {
        let filter = DlqFilter::all().at(position);
        Ok(self.list(&filter, Page::first(1)).await?.letters.pop())
    }

    /// Re-publishes the dead letters `filter` selects to the topic, once each (see the
    /// [module docs](self)); `.await` the [`Replay`].
    pub fn replay(&self, filter: DlqFilter) -> Replay<'_> {
        Replay::new(self, filter)
    }

    /// Every dead letter `filter` selects.
    async fn scan_all(&self, filter: &DlqFilter) -> Result<Vec<DeadLetterRecord>> {
        let scan = scan::Scan {
            after: None,
            filter,
            limit: None,
        };
        Ok(
            scan::scan(&self.orm, self.checked_name()?, scan, self.timeout)
                .await?
                .records,
        )
    }

    /// Fills in [`DeadLetterRecord::replayed`] where the replay records can be read.
    async fn mark_replayed(&self, letters: &mut [DeadLetterRecord]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let done = match (self.spec.outbox, self.orm.database()) {
            (Some(_), None) => return Ok(()),
            (Some(_), Some(db)) => match ledger::replayed(db, &self.name).await {
                Ok(done) => done,
                // No replay yet (the table comes with the first): not known, then.
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the replay records");
                    return Ok(());
                }
            },
            (None, _) => markers::replayed(&self.orm, &self.name, self.timeout).await?,
        };
        for letter in letters {
            letter.replayed = Some(done.contains(&letter.position));
        }
        Ok(())
    }

    /// The name, once the topic is known to have a `dlq`.
    fn checked_name(&self) -> Result<&str> {
        match self.spec.dlq {
            Some(_) => Ok(&self.name),
            None => Err(Error::NoDlq {
                topic: self.spec.name,
                type_name: self.spec.type_name,
            }),
        }
    }
}

impl<T: Topic> Dlq<T> {
    /// The dead-letter topic's Kafka name, with the namespace.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The untyped view.
    pub fn raw(&self) -> &RawDlq {
        &self.raw
    }

    /// How long one broker call may take (default [`DLQ_TIMEOUT`](crate::defaults::DLQ_TIMEOUT)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.raw = self.raw.timeout(timeout);
        self
    }

    /// The dead letters `filter` selects, one page of them, decoded as `T` where they
    /// decode.
    pub async fn list(&self, filter: &DlqFilter, page: Page) -> Result<DlqPage<DeadLetter<T>>> {
        let page = self.raw.list(filter, page).await?;
        Ok(DlqPage {
            letters: page.letters.into_iter().map(decode).collect(),
            next: page.next,
        })
    }

    /// The dead letter at `position`, if there is one.
    pub async fn get(&self, position: Position) -> Result<Option<DeadLetter<T>>> {
        Ok(self.raw.get(position).await?.map(decode))
    }

    /// Re-publishes the dead letters `filter` selects to `T`'s topic, once each (see the
    /// [module docs](self)); `.await` the [`Replay`].
    pub fn replay(&self, filter: DlqFilter) -> Replay<'_> {
        self.raw.replay(filter)
    }
}

/// `record` with its payload decoded as `T`, as a consumer of the topic would.
fn decode<T: Topic>(record: DeadLetterRecord) -> DeadLetter<T> {
    let message = OwnedMessage::new(
        record.payload.clone(),
        record.key.clone(),
        record.dlq_topic.clone(),
        rdkafka::Timestamp::NotAvailable,
        record.position.partition,
        record.position.offset,
        Some(record.headers.to_rdkafka()),
    );
    let payload = match crate::consumer::decode::<T, _>(&message) {
        Ok(delivery) => Payload::Decoded(delivery.into_value()),
        Err(e) => Payload::Raw {
            bytes: record.payload.clone().unwrap_or_default(),
            reason: e.to_string(),
        },
    };
    DeadLetter { payload, record }
}
