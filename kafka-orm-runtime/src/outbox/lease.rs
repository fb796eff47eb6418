//! Bucket leases of relay instances on PostgreSQL: who may deliver which key-hash bucket.
//!
//! A lease row `(outbox, bucket)` names its `owner` (the instance name), an expiry on the
//! database clock and an `epoch`: the fencing token, incremented every time the bucket
//! is acquired. The relay's statements that claim, delete or back off rows name the
//! `(bucket, epoch)` pairs the instance holds, so a relay whose tenure ended (a zombie
//! waking up after its lease passed on) changes nothing.
//!
//! One [`LeaseKeeper`] task per outbox table renews, acquires and releases leases every
//! `renew_every`, independently of batch progress, and publishes a [`LeaseView`]: the
//! buckets held and a local instant until which they are certainly held (the instant
//! *before* the renewing statement was sent, plus the TTL). The relay only enqueues a
//! row while [`LeaseTiming::may_enqueue`] holds and resolves every produced row (ack,
//! failure or purge) by [`LeaseTiming::ack_deadline`], both inside that validity. The
//! relay's producer has `message.timeout.ms` = [`LeaseTiming::message_timeout`], so even a
//! frozen process's messages are dead before its lease can pass on. Hence at most one
//! instance delivers a bucket at any moment, whatever stalls.
//!
//! Fast failover: an instance restarted under the same name reclaims its own unexpired
//! leases at once — but only while it holds the name's session-level advisory lock,
//! which PostgreSQL frees the moment the previous process's connection closes (a
//! SIGKILLed process) and which a live process of the same name still holds (then the
//! newcomer waits for expiry like everyone else). A graceful stop releases at once; a
//! dead instance that is not restarted hands over after the TTL (default 6 s).
//!
//! The keeper's statements are in `lease_sql.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use tokio::sync::{RwLock, watch};

use super::BUCKETS;
use super::relay::Shared;

pub use crate::tables::outbox::{LEASE_TABLE, MEMBER_TABLE};

/// The database clock in epoch milliseconds, so lease expiry never depends on the
/// relay machines' clocks agreeing.
pub(crate) const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// SQL true when a lease row's `bucket:epoch` is one of the fencing tokens in text
/// parameter `param` (comma-separated, [`LeaseView::tokens`]). The tokens are split once
/// per statement (an `ARRAY(..)` init plan): `= ANY(string_to_array($n, ','))` on its own
/// splits them again for every lease row of a generic plan, which was two thirds of a
/// small claim's server time.
pub(crate) fn tokens_match(param: &str) -> String {
    format!("(bucket || ':' || epoch) = ANY(ARRAY(SELECT unnest(string_to_array({param}, ','))))")
}

/// The timing rules that keep one owner per bucket (pure; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTiming {
    /// Lease time-to-live on the database clock.
    pub ttl: Duration,
    /// How often the keeper renews.
    pub renew_every: Duration,
    /// The relay producer's `message.timeout.ms`: the longest a produced row stays
    /// unresolved inside librdkafka.
    pub message_timeout: Duration,
    /// Slack for scheduling delays and clock-rate differences.
    pub margin: Duration,
}

impl LeaseTiming {
    /// Timing for `ttl`, renewing every `renew_every` (at most a third of the TTL).
    pub fn new(ttl: Duration, renew_every: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(600));
        LeaseTiming {
            ttl,
            renew_every: renew_every.min(ttl / 3).max(Duration::from_millis(50)),
            message_timeout: ttl / 3,
            margin: (ttl / 12).max(Duration::from_millis(50)),
        }
    }

    /// Whether a row may be handed to the producer at `now` under a lease certainly held
    /// until `valid_until`: its message is resolved (librdkafka's own timeout) before then.
    pub fn may_enqueue(&self, now: Instant, valid_until: Instant) -> bool {
        now + self.message_timeout + self.margin <= valid_until
    }

    /// When a batch that starts enqueueing at `start` stops waiting for acknowledgements
    /// and purges what is left: before librdkafka's own timeout (so the purge, which drops
    /// every queued message at once, decides and no gap opens in a partition) and before
    /// the lease ends.
    pub fn ack_deadline(&self, start: Instant, valid_until: Instant) -> Instant {
        let own = start + self.message_timeout.saturating_sub(self.margin);
        own.min(valid_until.checked_sub(self.margin).unwrap_or(start))
    }

    /// The lease validity, as a lower bound on the local clock, of a statement sent at
    /// `sent` that set `expires_at = now + ttl` on the database.
    pub fn valid_until(&self, sent: Instant) -> Instant {
        // 1 % for clock-rate differences between this host and the database's.
        sent + self.ttl.mul_f64(0.99)
    }
}

/// The buckets one instance holds for one outbox table, and until when (pure value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseView {
    /// Bucket → epoch of this instance's tenure.
    pub owned: BTreeMap<i32, i64>,
    /// Local instant until which every bucket in `owned` is certainly held.
    pub valid_until: Instant,
}

impl LeaseView {
    /// Nothing held.
    pub fn empty() -> Self {
        LeaseView {
            owned: BTreeMap::new(),
            valid_until: Instant::now(),
        }
    }

    /// Every bucket, forever: single-node mode, no leases.
    pub fn everything() -> Self {
        LeaseView {
            owned: (0..BUCKETS).map(|b| (b, 0)).collect(),
            valid_until: Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
        }
    }

    /// Whether `bucket` is held.
    pub fn owns(&self, bucket: i32) -> bool {
        self.owned.contains_key(&bucket)
    }

    /// The fencing tokens, `bucket:epoch` joined by commas, as the statements take them.
    pub fn tokens(&self) -> String {
        let mut out = String::with_capacity(self.owned.len() * 6);
        for (b, e) in &self.owned {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&format!("{b}:{e}"));
        }
        out
    }
}

/// What the keeper does with its share (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharePlan {
    /// Hold what is held.
    Keep,
    /// Give back this many buckets (a new member joined).
    Release(usize),
    /// Try to take this many more.
    Acquire(usize),
}

/// The fair share of `members` live instances, and what to do holding `owned` buckets.
pub(crate) fn share_plan(owned: usize, members: usize) -> SharePlan {
    let fair = (BUCKETS as usize).div_ceil(members.max(1));
    match owned.cmp(&fair) {
        std::cmp::Ordering::Greater => SharePlan::Release(owned - fair),
        std::cmp::Ordering::Less => SharePlan::Acquire(fair - owned),
        std::cmp::Ordering::Equal => SharePlan::Keep,
    }
}

/// Renews, acquires and releases one table's leases, publishing [`LeaseView`]s.
pub(crate) struct LeaseKeeper {
    pub db: DatabaseConnection,
    pub table: &'static str,
    pub me: String,
    pub timing: LeaseTiming,
    pub view: watch::Sender<LeaseView>,
    /// Read-held by every batch in flight, from its claim until its delete: a release
    /// takes the write side, so released buckets wait until no batch holds them.
    pub batch_lock: Arc<RwLock<()>>,
    /// Whether this process holds the instance name's session lock (may reclaim its
    /// own name's unexpired leases).
    pub name_locked: watch::Receiver<bool>,
    pub shared: Arc<Shared>,
}

impl LeaseKeeper {
    /// Runs until `stop` turns true, then releases everything.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // A restarted instance reclaims its own leases in its first round: know first
        // whether it holds its name (the lock is taken on another connection, at once).
        let mut name = self.name_locked.clone();
        let _ = tokio::time::timeout(self.timing.renew_every * 2, name.changed()).await;
        loop {
            let sent = Instant::now();
            match self.round(sent).await {
                // Wake the worker only when the buckets change, not at every renewal.
                Ok(view) => {
                    self.view.send_if_modified(|old| {
                        let changed = old.owned != view.owned;
                        *old = view;
                        changed
                    });
                    self.shared.lease_round(self.table, None);
                }
                // The old view stays: its validity is not extended, so it runs out.
                Err(e) => {
                    self.shared.error(e.to_string());
                    self.shared.lease_round(self.table, Some(e.to_string()));
                }
            }
            self.shared
                .set_owned(self.table, self.view.borrow().owned.len());
            tokio::select! {
                _ = tokio::time::sleep(self.timing.renew_every) => {}
                // The name's lock was just taken (the previous process's session ended a
                // moment after this one started): reclaim now, not at the next renewal.
                Ok(()) = name.changed(), if !*name.borrow() => {}
                // The worker stopped: release. The worker vanished (aborted, as in a
                // crash): leave the leases to expire, as a crashed process would.
                changed = stop.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
            }
        }
        if self
            .shared
            .aborted
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return; // a crash releases nothing
        }
        self.view.send_replace(LeaseView::empty());
        let _guard = self.batch_lock.write().await;
        if let Err(e) = self.release_all().await {
            self.shared.error(e.to_string());
        }
        self.shared.set_owned(self.table, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> LeaseTiming {
        LeaseTiming::new(Duration::from_secs(6), Duration::from_secs(1))
    }

    #[test]
    fn defaults_keep_message_timeout_and_margin_inside_the_ttl() {
        let t = timing();
        assert_eq!(t.message_timeout, Duration::from_secs(2));
        assert_eq!(t.margin, Duration::from_millis(500));
        assert_eq!(t.renew_every, Duration::from_secs(1));
        assert!(t.message_timeout + t.margin + t.renew_every < t.ttl);
    }

    #[test]
    fn renewal_is_at_most_a_third_of_the_ttl() {
        let t = LeaseTiming::new(Duration::from_secs(3), Duration::from_secs(5));
        assert_eq!(t.renew_every, Duration::from_secs(1));
    }

    #[test]
    fn enqueue_stops_before_a_message_could_outlive_the_lease() {
        let t = timing();
        let now = Instant::now();
        let valid = now + Duration::from_secs(6);
        assert!(t.may_enqueue(now, valid));
        assert!(t.may_enqueue(now + Duration::from_millis(3500), valid));
        assert!(!t.may_enqueue(now + Duration::from_millis(3501), valid));
        // A process that slept past its lease (a zombie) enqueues nothing.
        assert!(!t.may_enqueue(now + Duration::from_secs(20), valid));
    }

    #[test]
    fn every_row_is_resolved_before_the_lease_ends() {
        let t = timing();
        let start = Instant::now();
        let valid = start + Duration::from_secs(6);
        // Whatever was enqueued while allowed is dead (librdkafka) or purged (relay)
        // before `valid`.
        let latest_enqueue = valid - t.message_timeout - t.margin;
        assert!(latest_enqueue + t.message_timeout < valid);
        let deadline = t.ack_deadline(start, valid);
        assert!(
            deadline < start + t.message_timeout,
            "purge before librdkafka's timeout"
        );
        assert!(deadline <= valid - t.margin);
        // Near the end of the validity, the lease bounds the wait.
        let late = valid - Duration::from_millis(2600);
        assert_eq!(
            t.ack_deadline(late, valid),
            late + Duration::from_millis(1500)
        );
        let later = valid - Duration::from_millis(700);
        assert_eq!(t.ack_deadline(later, valid), valid - t.margin);
    }

    #[test]
    fn validity_is_a_lower_bound_of_the_database_expiry() {
        let t = timing();
        let sent = Instant::now();
        assert!(t.valid_until(sent) < sent + t.ttl);
        assert!(t.valid_until(sent) > sent + t.ttl - Duration::from_millis(100));
    }

    #[test]
    fn fair_share_plans() {
        assert_eq!(share_plan(0, 1), SharePlan::Acquire(64));
        assert_eq!(share_plan(64, 2), SharePlan::Release(32));
        assert_eq!(share_plan(32, 2), SharePlan::Keep);
        assert_eq!(share_plan(20, 3), SharePlan::Acquire(2));
        assert_eq!(share_plan(22, 3), SharePlan::Keep);
        assert_eq!(
            share_plan(0, 0),
            SharePlan::Acquire(64),
            "no member row yet counts as one"
        );
    }

    #[test]
    fn tokens_name_bucket_and_epoch() {
        let mut v = LeaseView::empty();
        assert_eq!(v.tokens(), "");
        v.owned.insert(3, 7);
        v.owned.insert(12, 1);
        assert_eq!(v.tokens(), "3:7,12:1");
        assert!(v.owns(12) && !v.owns(4));
        assert_eq!(LeaseView::everything().owned.len(), BUCKETS as usize);
    }
}
