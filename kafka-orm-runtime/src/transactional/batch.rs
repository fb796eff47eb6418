//! The messages of one transaction, and the rebalance context that says which of them
//! this instance no longer owns (pure parts unit-tested).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::consumer::Delivery;
use crate::producer::Headers;

/// The input consumer's context: remembers revoked partitions, so collected messages of a
/// partition this instance no longer owns never make it into a transaction.
#[derive(Default)]
pub(super) struct PipelineContext {
    pub(super) revoked: Mutex<Revoked>,
}

#[derive(Default)]
pub(super) struct Revoked {
    pub(super) all: bool,
    pub(super) partitions: Vec<i32>,
}

impl ClientContext for PipelineContext {}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions_of(tpl), "transactional pipeline: partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                tracing::info!(partitions = ?parts, "transactional pipeline: partitions revoked");
                revoked.partitions.extend(parts);
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "transactional pipeline: rebalance error; dropping the collected batch");
                revoked.all = true;
            }
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

pub(super) type PipelineConsumer = StreamConsumer<PipelineContext>;

/// A message the input codec could not decode.
pub(super) struct Undecodable {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) headers: Headers,
    pub(super) payload: Option<Vec<u8>>,
    pub(super) error: String,
    /// When decoding failed, in epoch milliseconds.
    pub(super) failed_ms: i64,
}

/// The messages of one transaction, in the order received.
pub(super) struct Batch<T> {
    pub(super) deliveries: Vec<Delivery<T>>,
    pub(super) undecodable: Vec<Undecodable>,
}

impl<T> Batch<T> {
    pub(super) fn new() -> Self {
        Batch {
            deliveries: Vec::new(),
            undecodable: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.deliveries.len() + self.undecodable.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.undecodable.is_empty()
    }

    pub(super) fn positions(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.deliveries
            .iter()
            .map(|d| (d.partition(), d.offset()))
            .chain(self.undecodable.iter().map(|u| (u.partition, u.offset)))
    }

    /// Per partition: (first offset, last offset).
    pub(super) fn ranges(&self) -> BTreeMap<i32, (i64, i64)> {
        let mut ranges = BTreeMap::new();
        for (p, o) in self.positions() {
            let r = ranges.entry(p).or_insert((o, o));
            r.0 = r.0.min(o);
            r.1 = r.1.max(o);
        }
        ranges
    }

    pub(super) fn drop_revoked(&mut self, revoked: &Revoked) {
        if revoked.all {
            self.deliveries.clear();
            self.undecodable.clear();
        } else if !revoked.partitions.is_empty() {
            let gone = |p: i32| revoked.partitions.contains(&p);
            self.deliveries.retain(|d| !gone(d.partition()));
            self.undecodable.retain(|u| !gone(u.partition));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(partition: i32, offset: i64) -> Undecodable {
        Undecodable {
            partition,
            offset,
            key: None,
            headers: Headers::new(),
            payload: None,
            error: "bad".into(),
            failed_ms: 0,
        }
    }

    #[test]
    fn ranges_and_revocation() {
        let mut b = Batch::<()>::new();
        for (p, o) in [(0, 5), (1, 9), (0, 6), (0, 7), (2, 1), (1, 10)] {
            b.undecodable.push(bad(p, o));
        }
        let r = b.ranges();
        assert_eq!(r[&0], (5, 7));
        assert_eq!(r[&1], (9, 10));
        assert_eq!(r[&2], (1, 1));
        b.drop_revoked(&Revoked {
            all: false,
            partitions: vec![1],
        });
        assert_eq!(b.len(), 4);
        assert!(!b.ranges().contains_key(&1));
        b.drop_revoked(&Revoked {
            all: true,
            partitions: vec![],
        });
        assert!(b.is_empty());
    }
}
