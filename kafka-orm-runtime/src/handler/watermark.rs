//! The commit watermark of one partition (pure): which offset may be committed while
//! messages finish out of order.
//!
//! Every received offset is admitted as pending; finishing removes it. The commit point is
//! the lowest pending offset (nothing at or after it may be committed: it is unfinished),
//! or one past the highest received when nothing is pending. It only moves forward, so a
//! commit never passes an unfinished message and never goes back.

use std::collections::BTreeSet;

/// Pending offsets of one partition and the commit point stored so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watermark {
    pending: BTreeSet<i64>,
    highest: i64,
    stored: i64,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            pending: BTreeSet::new(),
            highest: -1,
            stored: -1,
        }
    }
}

impl Watermark {
    /// A received offset, not finished yet.
    pub fn admit(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.highest = self.highest.max(offset);
    }

    /// Offsets received and not finished.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `offset` is the lowest unfinished one: everything before it is finished.
    pub fn is_head(&self, offset: i64) -> bool {
        self.pending.first() == Some(&offset)
    }

    /// Marks `offset` finished; returns the new commit point if it moved past the stored
    /// one (the caller stores it, then confirms with [`Self::stored`]).
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        self.pending.remove(&offset);
        let point = self.commit_point();
        (point > self.stored).then_some(point)
    }

    /// The next offset to commit: the lowest unfinished, or one past the highest received.
    pub fn commit_point(&self) -> i64 {
        self.pending.first().copied().unwrap_or(self.highest + 1)
    }

    /// Records that `point` was stored for commit.
    pub fn stored(&mut self, point: i64) {
        self.stored = self.stored.max(point);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(offsets: impl IntoIterator<Item = i64>) -> Watermark {
        let mut w = Watermark::default();
        offsets.into_iter().for_each(|o| w.admit(o));
        w
    }

    fn finish_and_store(w: &mut Watermark, offset: i64) -> Option<i64> {
        let point = w.finish(offset);
        if let Some(p) = point {
            w.stored(p);
        }
        point
    }

    #[test]
    fn in_order_completion_moves_the_point_one_by_one() {
        let mut w = admitted(10..13);
        assert_eq!(finish_and_store(&mut w, 10), Some(11));
        assert_eq!(finish_and_store(&mut w, 11), Some(12));
        assert_eq!(finish_and_store(&mut w, 12), Some(13));
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn later_offsets_finishing_first_never_pass_an_unfinished_one() {
        let mut w = admitted([5, 6, 7, 8]);
        assert_eq!(
            finish_and_store(&mut w, 8),
            Some(5),
            "5 is unfinished: no further"
        );
        assert_eq!(finish_and_store(&mut w, 6), None, "still 5, already stored");
        assert_eq!(w.commit_point(), 5);
        assert_eq!(
            finish_and_store(&mut w, 5),
            Some(7),
            "jumps to the next unfinished"
        );
        assert_eq!(
            finish_and_store(&mut w, 7),
            Some(9),
            "then past everything received"
        );
    }

    #[test]
    fn the_head_is_the_lowest_unfinished() {
        let mut w = admitted([3, 4, 9]);
        assert!(w.is_head(3) && !w.is_head(4));
        w.finish(4);
        assert!(w.is_head(3));
        w.finish(3);
        assert!(w.is_head(9));
    }

    #[test]
    fn the_point_never_goes_back() {
        let mut w = admitted([1, 2]);
        finish_and_store(&mut w, 1);
        finish_and_store(&mut w, 2);
        assert_eq!(w.commit_point(), 3);
        // A stale redelivery of an old offset (e.g. after a seek) is admitted...
        w.admit(1);
        assert_eq!(w.commit_point(), 1);
        // ...but finishing it stores nothing below what was stored.
        assert_eq!(w.finish(1), None);
        assert_eq!(w.commit_point(), 3);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        // Compacted topics and transaction markers leave holes.
        let mut w = admitted([100, 104, 110]);
        assert_eq!(finish_and_store(&mut w, 100), Some(104));
        assert_eq!(finish_and_store(&mut w, 110), None);
        assert_eq!(finish_and_store(&mut w, 104), Some(111));
    }

    #[test]
    fn unconfirmed_stores_are_offered_again() {
        let mut w = admitted([0, 1]);
        assert_eq!(
            w.finish(0),
            Some(1),
            "offered, but the caller failed to store it"
        );
        assert_eq!(w.finish(1), Some(2), "offered again, further");
    }
}
