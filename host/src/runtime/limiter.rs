//! The store limiter: wasmtime's [`StoreLimits`] plus a record of the
//! largest linear memory the collector reached, for `wasmtap plugin run`
//! and the agent's health reports.

use wasmtime::{ResourceLimiter, StoreLimits};

/// Enforces the limits and remembers peak memory.
#[derive(Debug)]
pub struct Limiter {
    inner: StoreLimits,
    peak_memory: usize,
}

impl Limiter {
    /// Wraps `limits`.
    pub fn new(inner: StoreLimits) -> Self {
        Self { inner, peak_memory: 0 }
    }

    /// The largest linear memory granted so far, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
