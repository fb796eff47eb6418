//! What the pipelined relay has in flight (pure state): the batches claimed and not yet
//! finished, the keys and row ids the next claim must leave alone, and when to claim the
//! next batch.
//!
//! A batch goes through two phases. **Producing**: claimed, handed to the producer,
//! awaiting the broker's acknowledgements, then its failed rows backed off; its keys are
//! held, so the next claim takes no later row of them (a row that fails still blocks its
//! key's later rows, and per-key order holds across batches). **Deleting**: the outcome is
//! recorded and the acknowledged rows are being deleted in the background; only its row
//! ids are held (the rows are still in the table), its keys are free again.

use std::collections::{BTreeMap, HashMap};

/// The batches in flight and what they hold (pure).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    batches: BTreeMap<u64, Held>,
    /// Key → how many producing batches hold it (a key is in at most one, by
    /// construction: the claim excludes held keys; counted anyway).
    keys: HashMap<String, usize>,
    next: u64,
}

#[derive(Debug)]
struct Held {
    ids: Vec<i64>,
    /// `None` once the batch's keys are released (the deleting phase).
    keys: Option<Vec<String>>,
}

impl InFlight {
    /// Adds a producing batch of rows `(id, key)`; returns its number.
    pub fn add<'a>(&mut self, rows: impl IntoIterator<Item = (i64, Option<&'a str>)>) -> u64 {
        let no = self.next;
        self.next += 1;
        let mut ids = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for (id, key) in rows {
            ids.push(id);
            if let Some(k) = key
                && !keys.iter().any(|held| held == k)
            {
                keys.push(k.to_string());
            }
        }
        for k in &keys {
            *self.keys.entry(k.clone()).or_default() += 1;
        }
        self.batches.insert(
            no,
            Held {
                ids,
                keys: Some(keys),
            },
        );
        no
    }

    /// Batch `no` recorded its outcome: its keys are free, its ids stay held until
    /// [`finish`](Self::finish).
    pub fn release_keys(&mut self, no: u64) {
        let Some(keys) = self.batches.get_mut(&no).and_then(|b| b.keys.take()) else {
            return;
        };
        for k in keys {
            if let Some(n) = self.keys.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.keys.remove(&k);
                }
            }
        }
    }

    /// Batch `no` is done (deleted, or given up on): nothing of it is held any more.
    pub fn finish(&mut self, no: u64) {
        self.release_keys(no);
        self.batches.remove(&no);
    }

    /// Batches still producing (their keys held).
    pub fn producing(&self) -> usize {
        self.batches.values().filter(|b| b.keys.is_some()).count()
    }

    /// Batches in flight, producing or deleting.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether nothing is in flight.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether a producing batch holds `key`.
    #[cfg(test)]
    pub fn holds_key(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// The held row ids, comma-separated (PostgreSQL's `string_to_array`).
    pub fn ids_csv(&self) -> String {
        let mut out = String::new();
        for id in self.batches.values().flat_map(|b| &b.ids) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&id.to_string());
        }
        out
    }

    /// The held row ids as a JSON array (SQLite's `json_each`).
    pub fn ids_json(&self) -> String {
        format!("[{}]", self.ids_csv())
    }

    /// The held keys as a JSON array of strings (any key text, commas included).
    pub fn keys_json(&self) -> String {
        let keys: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into())
    }
}

/// When the relay claims its next batch (pure). A claim is made when there is reason to
/// think rows are waiting: a commit notification arrived, or the last claim filled its
/// batch or its window (rows may wait beyond it), or it was made beside a producing batch
/// (rows of that batch's keys were left for later); after a short claim that saw the end
/// of the rows, the relay waits for a notification or its poll interval. With nothing producing the claim is made at once;
/// beside one producing batch speculatively (it overlaps that batch's acknowledgements),
/// up to `depth` producing batches and `max_batches` in flight in all. A speculative claim
/// that found little (under a quarter of a batch: most waiting keys were held) is not
/// repeated for the next 1, 2, 4 .. 16 finished batches, unless a notification arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pipeline {
    depth: usize,
    max_batches: usize,
    /// Finished batches to wait before the next speculative claim.
    skip: u32,
    /// The skip after the next futile speculative claim.
    next_skip: u32,
    /// Whether rows are likely waiting (see the type's docs).
    more: bool,
}

impl Pipeline {
    /// At most `depth` producing batches (at least 1) and `max_batches` in flight.
    pub fn new(depth: usize, max_batches: usize) -> Self {
        let depth = depth.max(1);
        Pipeline {
            depth,
            max_batches: max_batches.max(depth),
            skip: 0,
            next_skip: 1,
            more: true,
        }
    }

    /// Whether to claim now, with `flight` in flight; `woken`: a commit notification
    /// arrived since the last claim.
    pub fn may_claim(&self, flight: &InFlight, woken: bool) -> bool {
        let producing = flight.producing();
        if producing >= self.depth || flight.len() >= self.max_batches {
            return false;
        }
        if woken {
            return true;
        }
        self.more && (producing == 0 || self.skip == 0)
    }

    /// A claim made while `speculative` (something was producing) got `rows` rows of a
    /// batch of `batch`; `window_full`: it did not see the end of the rows.
    pub fn claimed(&mut self, speculative: bool, rows: usize, batch: usize, window_full: bool) {
        if !speculative {
            self.more = rows >= batch || window_full;
            return;
        }
        self.more = true;
        if rows < batch.div_ceil(4) {
            self.skip = self.next_skip;
            self.next_skip = (self.next_skip * 2).min(16);
        } else {
            self.skip = 0;
            self.next_skip = 1;
        }
    }

    /// A producing batch recorded its outcome.
    pub fn batch_done(&mut self) {
        self.skip = self.skip.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(flight: &mut InFlight, rows: &[(i64, Option<&str>)]) -> u64 {
        flight.add(rows.iter().copied())
    }

    #[test]
    fn a_producing_batch_holds_its_keys_and_ids() {
        let mut f = InFlight::default();
        let a = batch(
            &mut f,
            &[(1, Some("k1")), (2, Some("k2")), (3, Some("k1")), (4, None)],
        );
        assert_eq!(f.producing(), 1);
        assert!(f.holds_key("k1") && f.holds_key("k2") && !f.holds_key("k3"));
        assert_eq!(f.ids_csv(), "1,2,3,4");
        assert_eq!(f.ids_json(), "[1,2,3,4]");
        let mut keys: Vec<String> = serde_json::from_str(&f.keys_json()).unwrap();
        keys.sort();
        assert_eq!(keys, ["k1", "k2"]);
        f.release_keys(a);
        assert_eq!(f.producing(), 0);
        assert_eq!(f.len(), 1, "deleting: the ids stay held");
        assert!(!f.holds_key("k1"));
        assert_eq!(f.keys_json(), "[]");
        assert_eq!(f.ids_csv(), "1,2,3,4");
        f.finish(a);
        assert!(f.is_empty());
        assert_eq!(f.ids_csv(), "");
        assert_eq!(f.ids_json(), "[]");
    }

    #[test]
    fn keys_are_released_per_batch() {
        let mut f = InFlight::default();
        let a = batch(&mut f, &[(1, Some("a")), (2, Some("shared"))]);
        let b = batch(&mut f, &[(3, Some("b")), (4, Some("shared"))]);
        f.release_keys(a);
        assert!(!f.holds_key("a") && f.holds_key("b"));
        assert!(f.holds_key("shared"), "still held by the other batch");
        f.release_keys(a); // twice is harmless
        assert!(f.holds_key("shared"));
        f.finish(b); // finishing releases the keys too
        assert!(!f.holds_key("shared") && !f.holds_key("b"));
        assert_eq!(f.ids_csv(), "1,2");
    }

    #[test]
    fn keys_with_commas_and_quotes_stay_one_json_string() {
        let mut f = InFlight::default();
        batch(&mut f, &[(1, Some("a,b")), (2, Some("say \"hi\""))]);
        let mut keys: Vec<String> = serde_json::from_str(&f.keys_json()).unwrap();
        keys.sort();
        assert_eq!(keys, ["a,b", "say \"hi\""]);
    }

    #[test]
    fn the_pipeline_claims_at_once_when_idle_and_speculates_up_to_its_depth() {
        let p = Pipeline::new(2, 4);
        let mut f = InFlight::default();
        assert!(p.may_claim(&f, false));
        let a = batch(&mut f, &[(1, Some("a"))]);
        assert!(
            p.may_claim(&f, false),
            "one producing: claim the next beside it"
        );
        let b = batch(&mut f, &[(2, Some("b"))]);
        assert!(!p.may_claim(&f, true), "two producing: wait");
        f.release_keys(a);
        assert!(p.may_claim(&f, false));
        let c = batch(&mut f, &[(3, Some("c"))]);
        f.release_keys(b);
        let _d = batch(&mut f, &[(4, Some("d"))]);
        f.release_keys(c);
        assert_eq!((f.producing(), f.len()), (1, 4));
        assert!(!p.may_claim(&f, true), "four in flight: wait for deletes");
        f.finish(a);
        assert!(p.may_claim(&f, false));
    }

    #[test]
    fn a_futile_speculative_claim_backs_off_until_batches_finish_or_a_commit_arrives() {
        let mut p = Pipeline::new(2, 4);
        let mut f = InFlight::default();
        batch(&mut f, &[(1, Some("hot"))]);
        p.claimed(true, 0, 8, false);
        assert!(!p.may_claim(&f, false), "skip one finished batch");
        assert!(p.may_claim(&f, true), "a commit notification claims anyway");
        p.batch_done();
        assert!(p.may_claim(&f, false));
        p.claimed(true, 0, 8, false);
        p.batch_done();
        assert!(!p.may_claim(&f, false), "then two");
        p.batch_done();
        assert!(p.may_claim(&f, false));
        for _ in 0..10 {
            p.claimed(true, 0, 8, false);
        }
        assert_eq!(p.skip, 16, "at most 16");
        p.claimed(true, 3, 8, false);
        assert!(p.may_claim(&f, false), "a fruitful speculation resets");
        assert_eq!(p.next_skip, 1);
        p.claimed(true, 1, 8, false);
        assert!(
            !p.may_claim(&f, false),
            "under a quarter of a batch is futile too"
        );
    }

    #[test]
    fn a_short_claim_with_nothing_producing_waits_for_a_notification() {
        let mut p = Pipeline::new(2, 4);
        let mut f = InFlight::default();
        p.claimed(false, 3, 8, false);
        assert!(!p.may_claim(&f, false), "the table had nothing more");
        assert!(p.may_claim(&f, true), "a commit arrived");
        batch(&mut f, &[(1, Some("a"))]);
        assert!(
            !p.may_claim(&f, false),
            "no speculation behind a short batch"
        );
        p.claimed(false, 8, 8, false);
        assert!(
            p.may_claim(&f, false),
            "a full batch: more is likely waiting"
        );
        p.claimed(false, 3, 8, true);
        assert!(
            p.may_claim(&f, false),
            "a full window: more may wait beyond it"
        );
    }

    #[test]
    fn a_short_speculative_claim_claims_again_once_its_keys_are_free() {
        let mut p = Pipeline::new(2, 4);
        let mut f = InFlight::default();
        let a = batch(&mut f, &[(1, Some("hot"))]);
        p.claimed(true, 0, 8, false);
        p.batch_done();
        f.release_keys(a);
        assert!(
            p.may_claim(&f, false),
            "rows of the held keys may be waiting"
        );
    }
}
