//! How far behind the store a durable sink is, for `/metrics`: numeric
//! values stored and not yet delivered, the age of the oldest of them, and
//! what its reader had to pass over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Skipped;
use crate::store::Commits;

#[derive(Debug, Default)]
struct Owed {
    /// Values owed when the store had committed `base` values.
    owed: i64,
    base: u64,
    /// The start-up count of the backlog no longer applies (the sink caught up first).
    counted: bool,
    /// Arrival time (ms) of the oldest record not fully delivered.
    oldest_ms: Option<u64>,
}

/// One sink's lag and skips; see the module docs.
#[derive(Debug)]
pub struct Progress {
    commits: Arc<Commits>,
    owed: Mutex<Owed>,
    corrupt_bytes: AtomicU64,
    unreadable_records: AtomicU64,
    expired_segments: AtomicU64,
}

impl Progress {
    /// Progress measured against `commits`, owing nothing yet.
    pub fn new(commits: Arc<Commits>) -> Self {
        let base = commits.values();
        Self {
            commits,
            owed: Mutex::new(Owed { base, ..Owed::default() }),
            corrupt_bytes: AtomicU64::new(0),
            unreadable_records: AtomicU64::new(0),
            expired_segments: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The start-up backlog: `values` owed when the store had committed `base`.
    pub(super) fn backlog(&self, values: u64, base: u64) {
        let mut o = self.lock();
        if !o.counted {
            o.counted = true;
            o.owed += i64::try_from(values).unwrap_or(i64::MAX) - (base as i64 - o.base as i64);
        }
    }

    /// `n` values were delivered (or refused for good).
    pub(super) fn delivered(&self, n: usize) {
        self.lock().owed -= i64::try_from(n).unwrap_or(i64::MAX);
    }

    /// Everything the store had committed when it held `committed` values is delivered.
    pub(super) fn caught_up(&self, committed: u64) {
        let mut o = self.lock();
        (o.owed, o.base, o.counted, o.oldest_ms) = (0, committed, true, None);
    }

    /// The arrival time of the oldest record not fully delivered.
    pub(super) fn oldest(&self, received_ms: Option<u64>) {
        self.lock().oldest_ms = received_ms;
    }

    /// The reader's skip counters, since start.
    pub(super) fn skipped(&self, s: &Skipped) {
        self.corrupt_bytes.store(s.corrupt_bytes, Ordering::Relaxed);
        self.unreadable_records.store(s.unreadable_records, Ordering::Relaxed);
        self.expired_segments.store(s.expired_segments, Ordering::Relaxed);
    }

    /// Numeric values stored and not yet delivered.
    pub fn lag_values(&self) -> u64 {
        let now = self.commits.values();
        let o = self.lock();
        let owed = o.owed.saturating_add(now.saturating_sub(o.base) as i64);
        u64::try_from(owed).unwrap_or(0)
    }

    /// Seconds since the oldest record not yet delivered arrived (0 when none).
    pub fn lag_seconds(&self, now_ms: u64) -> f64 {
        self.lock().oldest_ms.map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0)
    }

    /// What the reader passed over: damaged bytes, unreadable records, expired segments.
    pub fn skips(&self) -> [(&'static str, u64); 3] {
        [
            ("corrupt_bytes", self.corrupt_bytes.load(Ordering::Relaxed)),
            ("unreadable_records", self.unreadable_records.load(Ordering::Relaxed)),
            ("expired_segments", self.expired_segments.load(Ordering::Relaxed)),
        ]
    }
}
