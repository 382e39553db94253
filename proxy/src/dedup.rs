//! Which batch sequence numbers an agent has had stored: the memory behind
//! exactly-once storage of at-least-once deliveries.
//!
//! Sequence numbers are kept as merged ranges, so an agent that sends in
//! order costs one range however long it runs; each failover or restart
//! leaves at most a gap. Past [`MAX_RANGES`] ranges the oldest are folded
//! into a floor below which every number counts as seen.

use std::collections::BTreeMap;

/// Ranges kept per agent before the oldest fold into the floor.
pub const MAX_RANGES: usize = 4_096;

/// A set of sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqSet {
    /// start → end, inclusive, disjoint and not adjacent.
    ranges: BTreeMap<u64, u64>,
    /// Every number up to here counts as seen.
    floor: Option<u64>,
}

impl SeqSet {
    /// Whether `seq` was inserted (or is below the floor).
    pub fn contains(&self, seq: u64) -> bool {
        if self.floor.is_some_and(|f| seq <= f) {
            return true;
        }
        self.ranges.range(..=seq).next_back().is_some_and(|(_, end)| seq <= *end)
    }

    /// Adds `seq`; returns false if it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        let below = self.ranges.range(..seq).next_back().map(|(s, e)| (*s, *e));
        let above = seq.checked_add(1).and_then(|n| self.ranges.get(&n).map(|e| (n, *e)));
        match (below.filter(|(_, e)| e.checked_add(1) == Some(seq)), above) {
            (Some((start, _)), Some((next, end))) => {
                self.ranges.remove(&next);
                self.ranges.insert(start, end);
            }
            (Some((start, _)), None) => {
                self.ranges.insert(start, seq);
            }
            (None, Some((next, end))) => {
                self.ranges.remove(&next);
                self.ranges.insert(seq, end);
            }
            (None, None) => {
                self.ranges.insert(seq, seq);
            }
        }
        while self.ranges.len() > MAX_RANGES {
            if let Some((_, end)) = self.ranges.pop_first() {
                self.floor = Some(self.floor.map_or(end, |f| f.max(end)));
            }
        }
        true
    }

    /// Ranges held (for tests and stats).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// The floor and the ranges (start and end, inclusive), for saving.
    pub fn parts(&self) -> (Option<u64>, impl Iterator<Item = (u64, u64)> + '_) {
        (self.floor, self.ranges.iter().map(|(s, e)| (*s, *e)))
    }

    /// A set from saved parts; `None` if the ranges overlap, touch, are
    /// out of order or too many.
    pub fn from_parts(
        floor: Option<u64>,
        ranges: impl Iterator<Item = (u64, u64)>,
    ) -> Option<Self> {
        let mut out = Self { ranges: BTreeMap::new(), floor };
        let mut prev_end: Option<u64> = None;
        for (start, end) in ranges {
            let after_prev = prev_end.is_none_or(|p| p.checked_add(1).is_some_and(|n| start > n));
            if end < start || !after_prev || out.ranges.len() >= MAX_RANGES {
                return None;
            }
            out.ranges.insert(start, end);
            prev_end = Some(end);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_numbers_are_one_range() {
        let mut s = SeqSet::default();
        for seq in 100..1_100 {
            assert!(s.insert(seq));
        }
        assert_eq!(s.ranges(), 1);
        assert!(!s.insert(500));
        assert!(!s.contains(99) && !s.contains(1_100));
    }

    #[test]
    fn gaps_fill_and_merge() {
        let mut s = SeqSet::default();
        for seq in [1, 3, 5, 2, 4] {
            assert!(s.insert(seq));
        }
        assert_eq!(s.ranges(), 1);
        assert!(s.insert(u64::MAX) && s.insert(0));
        assert!(s.contains(u64::MAX) && s.contains(0));
    }

    #[test]
    fn the_oldest_ranges_fold_into_a_floor() {
        let mut s = SeqSet::default();
        for i in 0..(MAX_RANGES as u64 + 10) {
            s.insert(i * 10);
        }
        assert_eq!(s.ranges(), MAX_RANGES);
        assert!(s.contains(5), "below the floor counts as seen");
        assert!(!s.contains(MAX_RANGES as u64 * 10 + 5));
    }

    proptest! {
        #[test]
        fn saved_parts_rebuild_the_same_set(seqs in prop::collection::vec(0u64..500, 0..300)) {
            let mut s = SeqSet::default();
            for seq in seqs {
                s.insert(seq);
            }
            let (floor, ranges) = s.parts();
            prop_assert_eq!(SeqSet::from_parts(floor, ranges), Some(s));
        }

        #[test]
        fn agrees_with_a_plain_set(seqs in prop::collection::vec(0u64..200, 0..400)) {
            let mut s = SeqSet::default();
            let mut plain = std::collections::BTreeSet::new();
            for seq in seqs {
                prop_assert_eq!(s.insert(seq), plain.insert(seq));
            }
            for seq in 0..200 {
                prop_assert_eq!(s.contains(seq), plain.contains(&seq));
            }
        }
    }
}
