//! Retry tiers (`retry_topics`): Spring-style non-blocking retries through delayed topics
//! `<topic>.retry-1` ..= `<topic>.retry-3`, then the dead-letter topic.
//!
//! [`RetryPlan`] decides, without Kafka or a database, what follows a failed attempt:
//! another attempt in place after a backoff, the next retry tier, or giving up
//! (dead-letter, skip or stop).

use std::time::Duration;

use super::dlq::RawRecord;
use super::{Config, OnExhausted};
use crate::backoff::Backoff;
use crate::producer::Headers;

pub(crate) use crate::topic::{RETRY_TIERS, retry_topic};

const RETRY_HEADER_PREFIX: &str = "kafka-orm-retry-";
/// Header: the attempt number the retried message is on.
const RETRY_ATTEMPT: &str = "kafka-orm-retry-attempt";
/// Header: epoch ms before which it must not be handled.
pub(crate) const RETRY_DUE: &str = "kafka-orm-retry-due";
/// Header: epoch ms of its first failure.
pub(crate) const RETRY_FIRST_FAILURE: &str = "kafka-orm-retry-first-failure";
/// Header: the error of the last attempt.
const RETRY_ERROR: &str = "kafka-orm-retry-error";

/// Why a message is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its payload cannot be decoded: no attempt was possible.
    Undecodable,
    /// Every attempt failed.
    Exhausted,
}

/// What follows a failed handler attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again in place after this delay, as the next attempt.
    Again(Duration),
    /// No attempt left here: the message leaves this lane.
    Leave(Leave),
}

/// Where a message goes when it has no attempt left in place (or cannot be decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leave {
    /// Forward to retry tier `tier` (1-based), due `delay` from now.
    Tier { tier: u8, delay: Duration },
    /// To the dead-letter topic.
    DeadLetter,
    /// Logged and counted; its offset is stored.
    Skip,
    /// The handler stops with `Error::HandlerFailed`.
    Stop,
}

/// A handler's retry schedule: in-place attempts with backoff, then the retry tiers (with
/// `retry_topics`), then the dead-letter topic or the `on_exhausted` policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPlan {
    /// In-place attempts of a message on the topic itself (at least 1).
    pub attempts: u32,
    /// Delays between in-place attempts and while the database is unavailable.
    pub backoff: Backoff,
    /// Whether failures go through the retry tiers.
    pub retry_topics: bool,
    /// How long a message waits on tier `n` (index `n - 1`).
    pub tier_delays: Vec<Duration>,
    /// Whether the topic has a dead-letter topic.
    pub dead_letter: bool,
    /// What to do after the last attempt without a dead-letter topic.
    pub on_exhausted: OnExhausted,
}

impl RetryPlan {
    /// The plan of a handler with `config`, for a topic with or without retry tiers and a
    /// dead-letter topic.
    pub fn new(config: &Config, retry_topics: bool, dead_letter: bool) -> Self {
        RetryPlan {
            attempts: config.attempts,
            backoff: Backoff::new(config.backoff, config.max_backoff),
            retry_topics,
            tier_delays: config.retry_topic_delays.clone(),
            dead_letter,
            on_exhausted: config.on_exhausted,
        }
    }

    /// The last attempt a message may make in place, read from `tier` (0: the topic
    /// itself) with `attempt` as its first: the configured attempts on the topic, one
    /// attempt (the one it arrived with) on a retry tier.
    pub fn last_attempt(&self, tier: u8, attempt: u32) -> u32 {
        if tier == 0 { self.attempts } else { attempt }
    }

    /// After handler attempt `attempt` failed on `tier`, for a message allowed up to
    /// attempt `last` there ([`Self::last_attempt`]); `seed` jitters the delay.
    pub fn after_failure(&self, tier: u8, attempt: u32, last: u32, seed: u64) -> Next {
        if attempt < last {
            return Next::Again(self.backoff.delay(attempt, seed ^ u64::from(attempt)));
        }
        if self.retry_topics && usize::from(tier) < RETRY_TIERS {
            let tier = tier + 1;
            let delay = self.tier_delays[usize::from(tier) - 1];
            return Next::Leave(Leave::Tier { tier, delay });
        }
        Next::Leave(self.give_up(Reason::Exhausted))
    }

    /// How a message is given up: dead-lettered when there is a dead-letter topic, else
    /// skipped (only exhausted ones, with `OnExhausted::Skip`) or the handler stops.
    pub fn give_up(&self, reason: Reason) -> Leave {
        if self.dead_letter {
            Leave::DeadLetter
        } else if reason == Reason::Exhausted && self.on_exhausted == OnExhausted::Skip {
            Leave::Skip
        } else {
            Leave::Stop
        }
    }

    /// The wait before trying again after `streak` database outages in a row; outages do
    /// not spend attempts.
    pub fn outage_delay(&self, streak: u32, seed: u64) -> Duration {
        self.backoff.delay(streak, seed ^ u64::from(streak))
    }
}

/// Epoch ms at which a message forwarded at `now_ms` to a tier waiting `delay` is due.
pub(crate) fn due_ms(now_ms: i64, delay: Duration) -> i64 {
    now_ms + delay.as_millis() as i64
}

/// An integer header.
pub(crate) fn header_i64(headers: &Headers, name: &str) -> Option<i64> {
    headers.get_str(name)?.parse().ok()
}

/// The attempt a message read from a retry tier is on.
pub(crate) fn retry_attempt(headers: &Headers) -> Option<u32> {
    headers.get_str(RETRY_ATTEMPT)?.parse().ok()
}

/// `raw` as forwarded to a retry tier: its headers without earlier retry headers, plus
/// the next attempt, when it is due, the first failure and the last error.
pub(crate) fn to_tier(
    raw: &RawRecord,
    next_attempt: u32,
    due_ms: i64,
    first_ms: i64,
    error: String,
) -> RawRecord {
    let mut headers = Headers::new();
    for (name, value) in raw.headers.iter() {
        if !name.starts_with(RETRY_HEADER_PREFIX) {
            headers.insert(name, value);
        }
    }
    headers.insert(RETRY_ATTEMPT, next_attempt.to_string());
    headers.insert(RETRY_DUE, due_ms.to_string());
    headers.insert(RETRY_FIRST_FAILURE, first_ms.to_string());
    headers.insert(RETRY_ERROR, error);
    RawRecord {
        headers,
        ..raw.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const TIERS: [Duration; 3] = [
        Duration::from_secs(1),
        Duration::from_secs(10),
        Duration::from_secs(60),
    ];

    /// 3 attempts, 100 ms doubling to 1 s without jitter, tiers and DLQ as given.
    fn plan(retry_topics: bool, dead_letter: bool, on_exhausted: OnExhausted) -> RetryPlan {
        RetryPlan {
            attempts: 3,
            backoff: Backoff {
                jitter: 0.0,
                ..Backoff::new(100 * MS, Duration::from_secs(1))
            },
            retry_topics,
            tier_delays: TIERS.to_vec(),
            dead_letter,
            on_exhausted,
        }
    }

    /// What follows each failed attempt of a message read from `tier`, arriving with
    /// `attempt`, until it leaves.
    fn run(plan: &RetryPlan, tier: u8, mut attempt: u32) -> (Vec<Duration>, u32, Leave) {
        let last = plan.last_attempt(tier, attempt);
        let mut delays = Vec::new();
        loop {
            match plan.after_failure(tier, attempt, last, 7) {
                Next::Again(delay) => delays.push(delay),
                Next::Leave(leave) => return (delays, attempt, leave),
            }
            attempt += 1;
        }
    }

    #[test]
    fn in_place_attempts_then_the_first_tier() {
        let p = plan(true, true, OnExhausted::Stop);
        let (delays, attempts, leave) = run(&p, 0, 1);
        assert_eq!(
            delays,
            [100 * MS, 200 * MS],
            "two waits between three attempts"
        );
        assert_eq!(attempts, 3);
        assert_eq!(
            leave,
            Leave::Tier {
                tier: 1,
                delay: TIERS[0]
            }
        );
    }

    #[test]
    fn a_tier_message_gets_the_one_attempt_it_arrived_with() {
        let p = plan(true, true, OnExhausted::Stop);
        // Forwarded from the topic after attempt 3, it arrives on tier 1 as attempt 4.
        assert_eq!(p.last_attempt(1, 4), 4);
        assert_eq!(
            run(&p, 1, 4),
            (
                vec![],
                4,
                Leave::Tier {
                    tier: 2,
                    delay: TIERS[1]
                }
            )
        );
        assert_eq!(
            run(&p, 2, 5),
            (
                vec![],
                5,
                Leave::Tier {
                    tier: 3,
                    delay: TIERS[2]
                }
            )
        );
        // Without an attempt header it counts as attempt 1: still one attempt.
        assert_eq!(run(&p, 1, 1).1, 1);
    }

    #[test]
    fn after_the_last_tier_the_dead_letter_topic() {
        let p = plan(true, true, OnExhausted::Skip);
        assert_eq!(run(&p, 3, 6), (vec![], 6, Leave::DeadLetter));
    }

    /// Where a message read from `tier` (as attempt `tier`, at least 1) leaves, without a
    /// dead-letter topic.
    fn leaves_without_dlq(retry_topics: bool, on_exhausted: OnExhausted, tier: u8) -> Leave {
        run(
            &plan(retry_topics, false, on_exhausted),
            tier,
            u32::from(tier).max(1),
        )
        .2
    }

    #[test]
    fn after_the_last_tier_without_a_dead_letter_topic_on_exhausted() {
        assert_eq!(leaves_without_dlq(true, OnExhausted::Stop, 3), Leave::Stop);
        assert_eq!(leaves_without_dlq(true, OnExhausted::Skip, 3), Leave::Skip);
    }

    #[test]
    fn without_retry_topics_exhausted_in_place_gives_up() {
        let dlq = plan(false, true, OnExhausted::Stop);
        let delays = vec![100 * MS, 200 * MS];
        assert_eq!(run(&dlq, 0, 1), (delays, 3, Leave::DeadLetter));
        assert_eq!(leaves_without_dlq(false, OnExhausted::Skip, 0), Leave::Skip);
        assert_eq!(leaves_without_dlq(false, OnExhausted::Stop, 0), Leave::Stop);
    }

    #[test]
    fn one_attempt_means_no_wait() {
        let p = RetryPlan {
            attempts: 1,
            ..plan(false, false, OnExhausted::Skip)
        };
        assert_eq!(run(&p, 0, 1), (vec![], 1, Leave::Skip));
    }

    #[test]
    fn in_place_delays_grow_and_are_capped() {
        let p = RetryPlan {
            attempts: 8,
            ..plan(false, true, OnExhausted::Stop)
        };
        let (delays, attempts, _) = run(&p, 0, 1);
        let ms: Vec<u64> = delays.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(attempts, 8);
        let jittered = RetryPlan {
            backoff: Backoff::new(100 * MS, Duration::from_secs(1)),
            ..p
        };
        for seed in 0..200 {
            let Next::Again(d) = jittered.after_failure(0, 7, 8, seed) else {
                panic!("attempt 7 of 8 retries in place");
            };
            assert!(d >= 800 * MS && d <= Duration::from_secs(1), "{d:?}");
        }
    }

    #[test]
    fn undecodable_is_dead_lettered_or_stops_never_skipped() {
        let skip = plan(true, false, OnExhausted::Skip);
        assert_eq!(skip.give_up(Reason::Undecodable), Leave::Stop);
        assert_eq!(skip.give_up(Reason::Exhausted), Leave::Skip);
        let dlq = plan(false, true, OnExhausted::Skip);
        assert_eq!(dlq.give_up(Reason::Undecodable), Leave::DeadLetter);
    }

    #[test]
    fn outages_back_off_by_their_streak_not_the_attempt() {
        let p = plan(false, false, OnExhausted::Stop);
        let streak: Vec<_> = (1..=5).map(|n| p.outage_delay(n, 0)).collect();
        assert_eq!(streak, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS]);
    }

    #[test]
    fn plan_from_the_handler_config() {
        let config = Config {
            concurrency: Default::default(),
            key_lanes: 1,
            batch: None,
            max_pending: 1,
            drain_timeout: MS,
            shutdown_timeout: MS,
            on_exhausted: OnExhausted::Skip,
            on_unknown_type: Default::default(),
            layers: Default::default(),
            purge_interval: MS,
            attempts: 5,
            backoff: 50 * MS,
            max_backoff: 20 * MS,
            retry_topic_delays: TIERS.to_vec(),
            instance_id: None,
            lag_threshold: None,
        };
        let p = RetryPlan::new(&config, true, false);
        assert_eq!(p.attempts, 5);
        assert_eq!(p.backoff.base, 50 * MS);
        assert_eq!(
            p.backoff.cap,
            50 * MS,
            "a cap below the base is raised to it"
        );
        assert_eq!(p.tier_delays, TIERS);
        assert!(p.retry_topics && !p.dead_letter);
        assert_eq!(p.on_exhausted, OnExhausted::Skip);
    }

    #[test]
    fn to_tier_replaces_retry_headers_and_keeps_the_rest() {
        let mut headers = Headers::new();
        headers.insert("traceparent", "00-abc");
        headers.insert(RETRY_ATTEMPT, "4");
        headers.insert(RETRY_DUE, "1");
        headers.insert(RETRY_ERROR, "old");
        let raw = RawRecord {
            topic: "orders.retry-1".into(),
            partition: 2,
            offset: 9,
            key: Some(b"k".to_vec()),
            payload: Some(b"p".to_vec()),
            headers,
        };
        let due = due_ms(1_000, TIERS[1]);
        assert_eq!(due, 11_000);
        let out = to_tier(&raw, 5, due, 500, "boom".into());
        assert_eq!(retry_attempt(&out.headers), Some(5));
        assert_eq!(header_i64(&out.headers, RETRY_DUE), Some(11_000));
        assert_eq!(header_i64(&out.headers, RETRY_FIRST_FAILURE), Some(500));
        assert_eq!(out.headers.get_str(RETRY_ERROR), Some("boom"));
        assert_eq!(out.headers.get_str("traceparent"), Some("00-abc"));
        let retry_headers = out.headers.iter();
        let retry_headers = retry_headers.filter(|(n, _)| n.starts_with(RETRY_HEADER_PREFIX));
        assert_eq!(
            retry_headers.count(),
            4,
            "one of each, none left from before"
        );
        let rest = RawRecord {
            headers: raw.headers.clone(),
            ..out
        };
        assert_eq!(rest, raw, "key, payload and position unchanged");
    }
}
