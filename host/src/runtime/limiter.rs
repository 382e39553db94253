//! The store limiter: one memory budget for the whole collector instance.
//!
//! A component may hold several core instances, each with its own linear
//! memories and tables. The manifest's `memory` cap covers all of them
//! together: every memory's bytes plus every table's elements (at
//! [`TABLE_ELEMENT_BYTES`] each) count against one total, and the counts of
//! instances, memories and tables are capped too. Growing past the budget
//! traps the call (the instance is then discarded). The limiter also
//! remembers the largest total reached, for `wasmtap plugin run` and health
//! reports.

use wasmtime::ResourceLimiter;

/// What one table element costs against the budget (a pointer).
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();
/// Core instances per collector (a component's modules, shims and adapters).
pub const MAX_INSTANCES: usize = 32;
/// Linear memories per collector, all of them within the one budget.
pub const MAX_MEMORIES: usize = 4;
/// Tables per collector.
pub const MAX_TABLES: usize = 16;

/// Why a memory or table may not grow.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory cap of {cap} bytes exceeded: the collector's memories and tables would use {wanted} bytes"
)]
pub struct OverBudget {
    /// The cap.
    pub cap: usize,
    /// The total the growth asked for.
    pub wanted: usize,
}

/// Enforces one byte budget across every memory and table of a store.
#[derive(Debug)]
pub struct Limiter {
    cap: usize,
    used: usize,
    peak: usize,
    /// Bytes granted by the last `*_growing` call, taken back if the growth fails.
    pending: usize,
}

impl Limiter {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self { cap, used: 0, peak: 0, pending: 0 }
    }

    /// Bytes in use by all memories and tables.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The largest total granted so far, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak
    }

    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        let wanted = self.used.saturating_add(extra);
        if wanted > self.cap {
            return Err(OverBudget { cap: self.cap, wanted }.into());
        }
        self.used = wanted;
        self.pending = extra;
        self.peak = self.peak.max(wanted);
        Ok(true)
    }

    fn failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.pending));
        Err(error)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.failed(error)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memories_share_one_budget() {
        let mut l = Limiter::new(16 * MIB);
        // Two memories created, then each grown to 6 MiB: 12 MiB in all.
        assert!(l.memory_growing(0, 64 << 10, None).expect("first"));
        assert!(l.memory_growing(0, 64 << 10, None).expect("second"));
        assert!(l.memory_growing(64 << 10, 6 * MIB, None).expect("grow first"));
        assert!(l.memory_growing(64 << 10, 6 * MIB, None).expect("grow second"));
        assert_eq!(l.used(), 12 * MIB);
        // Either memory growing by 6 MiB more would pass a per-memory cap, not this one.
        let err = l.memory_growing(6 * MIB, 12 * MIB, None).expect_err("over the total");
        assert!(err.to_string().contains("18874368 bytes"), "{err}");
        assert_eq!(l.used(), 12 * MIB, "a refused growth uses nothing");
        assert_eq!(l.peak_memory(), 12 * MIB);
    }

    #[test]
    fn tables_count_against_the_same_budget() {
        let mut l = Limiter::new(MIB);
        assert!(l.memory_growing(0, MIB / 2, None).expect("memory"));
        let half = MIB / 2 / TABLE_ELEMENT_BYTES;
        assert!(l.table_growing(0, half, None).expect("table fits exactly"));
        assert!(l.table_growing(half, half + 1, None).is_err(), "one element over");
        assert!(l.memory_growing(MIB / 2, MIB / 2 + 1, None).is_err(), "memory over");
    }

    #[test]
    fn a_failed_growth_is_given_back() {
        let mut l = Limiter::new(MIB);
        assert!(l.memory_growing(0, MIB, None).expect("all of it"));
        assert!(l.memory_grow_failed(wasmtime::format_err!("mmap failed")).is_err());
        assert_eq!(l.used(), 0);
        assert!(l.memory_growing(0, MIB, None).expect("room again"));
    }

    #[test]
    fn counts_are_capped() {
        let l = Limiter::new(MIB);
        assert_eq!((l.instances(), l.memories(), l.tables()), (32, 4, 16));
    }
}
