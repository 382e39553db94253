//! A follower's queue: the records it read and has not fully delivered,
//! each with its items, and the batches taken from them. A record's items
//! may span batches; each project's records are taken in order, so a
//! batch's end is one position per project (a record start plus the items
//! of it already delivered, when a batch ends inside a record).

use std::collections::{BTreeMap, HashSet, VecDeque};

use wasmtap_protocol::access_key::ProjectId;

use super::saved::At;
use super::{Entry, Position};

/// A record read and not yet fully delivered.
#[derive(Debug)]
struct Pending<I> {
    project: ProjectId,
    start: Position,
    end: Position,
    received_ms: u64,
    items: Vec<I>,
    /// Items delivered already.
    done: usize,
}

/// A batch taken from the queue.
#[derive(Debug)]
pub(super) struct Taken<I> {
    /// What to send.
    pub(super) items: Vec<I>,
    /// Each project's position once the batch is delivered.
    pub(super) end: BTreeMap<ProjectId, At>,
    /// Queue index and items done then, per record touched.
    records: Vec<(usize, usize)>,
}

/// The records read and not yet delivered, oldest first.
#[derive(Debug)]
pub(super) struct Queue<I> {
    records: VecDeque<Pending<I>>,
}

impl<I> Default for Queue<I> {
    fn default() -> Self {
        Self { records: VecDeque::new() }
    }
}

impl<I: Clone> Queue<I> {
    /// Adds the record of `e` with its `items`, `done` of them delivered already.
    pub(super) fn push(&mut self, e: &Entry, items: Vec<I>, done: usize) {
        let (project, start, end) = (e.project.clone(), e.start, e.end);
        let received_ms = e.record.received_ms;
        self.records.push_back(Pending { project, start, end, received_ms, items, done });
    }

    /// Whether no record waits.
    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Items not yet taken.
    pub(super) fn untaken(&self) -> usize {
        self.records.iter().map(|p| p.items.len() - p.done).sum()
    }

    /// Arrival time of the oldest record not fully delivered.
    pub(super) fn oldest_ms(&self) -> Option<u64> {
        self.records.front().map(|p| p.received_ms)
    }

    /// Takes up to `max` items, each project's in order; with `bound`, only
    /// items before it (`bound` names every project a batch may touch).
    pub(super) fn take(&self, max: usize, bound: Option<&BTreeMap<ProjectId, At>>) -> Taken<I> {
        let mut taken = Taken { items: Vec::new(), end: BTreeMap::new(), records: Vec::new() };
        let mut blocked: HashSet<&ProjectId> = HashSet::new();
        for (i, p) in self.records.iter().enumerate() {
            if taken.items.len() >= max {
                break;
            }
            if blocked.contains(&p.project) {
                continue;
            }
            let limit = match bound.map(|b| b.get(&p.project)) {
                None => p.items.len(),
                Some(None) => 0,
                Some(Some(at)) if p.end <= at.pos => p.items.len(),
                Some(Some(at)) if p.start == at.pos => usize::try_from(at.skip).unwrap_or(0),
                Some(Some(_)) => 0,
            };
            let room = max - taken.items.len();
            let to = limit.min(p.done.saturating_add(room)).max(p.done);
            taken.items.extend_from_slice(&p.items[p.done..to]);
            taken.records.push((i, to));
            if to == p.items.len() {
                taken.end.insert(p.project.clone(), At { pos: p.end, skip: 0 });
            } else {
                if to > 0 {
                    taken.end.insert(p.project.clone(), At { pos: p.start, skip: to as u64 });
                }
                blocked.insert(&p.project);
            }
        }
        taken
    }

    /// Marks `taken` (from this queue, nothing popped since) delivered.
    pub(super) fn done(&mut self, taken: &Taken<I>) {
        for &(i, to) in &taken.records {
            if let Some(p) = self.records.get_mut(i) {
                p.done = to;
            }
        }
        while self.records.front().is_some_and(|p| p.done == p.items.len()) {
            self.records.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::StoredBatch;

    fn entry(project: &str, offset: u64) -> Entry {
        let record = StoredBatch {
            agent: "a".into(),
            session: 1,
            received_ms: offset,
            batch: wasmtap_protocol::message::Batch { seq: offset, samples: Vec::new() },
        };
        Entry {
            project: ProjectId::new(project).expect("valid"),
            start: Position { segment: 1, offset },
            end: Position { segment: 1, offset: offset + 10 },
            record: Arc::new(record),
        }
    }

    fn at(offset: u64, skip: u64) -> At {
        At { pos: Position { segment: 1, offset }, skip }
    }

    #[test]
    fn batches_split_records_and_end_at_a_position_per_project() {
        let mut q = Queue::default();
        q.push(&entry("a", 0), vec![1, 2, 3], 0);
        q.push(&entry("b", 0), vec![4], 0);
        q.push(&entry("a", 10), vec![5, 6], 0);
        q.push(&entry("a", 20), vec![], 0);
        let t = q.take(2, None);
        assert_eq!(t.items, [1, 2]);
        assert_eq!(t.end.values().copied().collect::<Vec<_>>(), [at(0, 2)]);
        q.done(&t);
        assert_eq!((q.untaken(), q.oldest_ms()), (4, Some(0)));
        let t = q.take(10, None);
        assert_eq!(t.items, [3, 4, 5, 6]);
        assert_eq!(t.end.values().copied().collect::<Vec<_>>(), [at(30, 0), at(10, 0)]);
        q.done(&t);
        assert!(q.is_empty());
    }

    #[test]
    fn a_bound_takes_exactly_the_items_before_it() {
        let mut q = Queue::default();
        q.push(&entry("a", 0), vec![1, 2, 3], 1);
        q.push(&entry("a", 10), vec![4, 5, 6], 0);
        q.push(&entry("b", 0), vec![7], 0);
        let a = ProjectId::new("a").expect("valid");
        let bound = BTreeMap::from([(a, at(10, 2))]);
        let t = q.take(usize::MAX, Some(&bound));
        assert_eq!(t.items, [2, 3, 4, 5], "b is not in the bound: none of it");
        q.done(&t);
        assert_eq!(q.untaken(), 2);
    }
}
