//! Which dead letters of a topic without an outbox were replayed: the records of the
//! compacted marker topic `<dead-letter topic>.replayed`, keyed by the dead letter's
//! `partition:offset`. A replayed message and its marker are written in one Kafka
//! transaction, so both are there or neither is.
//!
//! The transactional id is `kafka-orm.replay.<dead-letter topic>`: a replay starting
//! fences any other still running (or crashed with a transaction open) before it reads
//! the markers, so what it reads is everything that was ever committed.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::filter::DlqFilter;
use super::letter::Position;
use super::scan::{self, Scan};
use crate::context::KafkaOrm;
use crate::error::{Error, Result};
use crate::producer::{Headers, blocking};

/// The marker topic of dead-letter topic `dlq`.
pub(crate) fn marker_topic(dlq: &str) -> String {
    format!("{dlq}.replayed")
}

/// The dead letters of `dlq` replayed so far (none while the marker topic does not exist).
pub(crate) async fn replayed(
    orm: &KafkaOrm,
    dlq: &str,
    timeout: Duration,
) -> Result<BTreeSet<Position>> {
    let all = DlqFilter::all();
    let scan = Scan {
        after: None,
        filter: &all,
        limit: None,
    };
    let records = match scan::scan(orm, &marker_topic(dlq), scan, timeout).await {
        Ok(s) => s.records,
        // The first replay creates it.
        Err(Error::Admin { .. }) => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    };
    Ok(records
        .iter()
        .filter_map(|r| r.key_str()?.parse().ok())
        .collect())
}

/// One message to re-publish.
pub(crate) struct Outgoing<'a> {
    pub at: Position,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: Headers,
    pub message_id: &'a str,
}

/// The transactional producer of one replay.
pub(crate) struct MarkerWriter {
    producer: FutureProducer,
    dlq: String,
    markers: String,
    timeout: Duration,
    /// Whether this replay created the marker topic (so there are no markers to read).
    pub created: bool,
}

impl MarkerWriter {
    /// Creates the marker topic if needed and a producer that fenced every earlier
    /// replay of `dlq`.
    pub async fn open(orm: &KafkaOrm, dlq: &str, timeout: Duration) -> Result<Self> {
        let markers = marker_topic(dlq);
        let created = create_marker_topic(orm, &markers, timeout).await?;
        let id = format!("kafka-orm.replay.{dlq}");
        let mut cfg = orm.producer_config();
        cfg.set("transactional.id", &id)
            .set("transaction.timeout.ms", "60000");
        let producer: FutureProducer = cfg
            .create()
            .map_err(|e| Error::kafka("creating the replay producer", e))?;
        crate::producer::init_transactions(&producer, &id, timeout).await?;
        Ok(MarkerWriter {
            producer,
            dlq: dlq.to_string(),
            markers,
            timeout,
            created,
        })
    }

    /// Sends `batch` to `target` with their markers in one transaction, committed when
    /// `commit` (a test's crash leaves it open).
    pub async fn send(&self, target: &str, batch: &[Outgoing<'_>], commit: bool) -> Result<()> {
        let ctx = |what: &str| format!("{what} (replaying `{}` to `{target}`)", self.dlq);
        let p = self.producer.clone();
        blocking(move || p.begin_transaction())
            .await
            .map_err(|e| Error::kafka(ctx("beginning a transaction"), e))?;
        let sent = self.within(target, batch).await;
        if sent.is_err() || !commit {
            if commit {
                let (p, t) = (self.producer.clone(), self.timeout);
                let _ = blocking(move || p.abort_transaction(t)).await;
            }
            return sent;
        }
        let (p, t) = (self.producer.clone(), self.timeout);
        blocking(move || p.commit_transaction(t))
            .await
            .map_err(|e| Error::kafka(ctx("committing the replay transaction"), e))
    }

    async fn within(&self, target: &str, batch: &[Outgoing<'_>]) -> Result<()> {
        let until = std::time::Instant::now() + self.timeout;
        let mut acks = Vec::with_capacity(batch.len() * 2);
        let now = crate::util::now_ms();
        for msg in batch {
            let headers = msg.headers.to_rdkafka();
            let mut record = FutureRecord::to(target)
                .payload(msg.payload)
                .headers(headers);
            if let Some(key) = msg.key {
                record = record.key(key);
            }
            acks.push((
                target,
                crate::producer::enqueue(&self.producer, record, until).await,
            ));
            let key = msg.at.to_string();
            let value = serde_json::json!({ "message_id": msg.message_id, "target": target, "replayed_at": now })
                .to_string();
            let marker = FutureRecord::to(&self.markers).key(&key).payload(&value);
            acks.push((
                &self.markers,
                crate::producer::enqueue(&self.producer, marker, until).await,
            ));
        }
        for (topic, ack) in acks {
            let failed = |source| Error::Delivery {
                topic: topic.to_string(),
                source,
            };
            let future = ack.map_err(failed)?;
            match future.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(failed(source)),
                Err(_) => return Err(Error::Shutdown),
            }
        }
        Ok(())
    }
}

/// Creates the compacted, one-partition marker topic unless it exists; `true` when it
/// created it.
async fn create_marker_topic(orm: &KafkaOrm, name: &str, timeout: Duration) -> Result<bool> {
    let admin: AdminClient<DefaultClientContext> = orm
        .client_config()
        .create()
        .map_err(|e| Error::kafka("creating the admin client", e))?;
    let topic =
        NewTopic::new(name, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(|e| Error::kafka(format!("creating the marker topic `{name}`"), e))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((topic, code))) => Err(Error::Admin {
            topic,
            reason: code.to_string(),
        }),
    }
}
