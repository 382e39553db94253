//! What each collector's `Store` holds, and the host side of the
//! `wasmtap:collector/host` import.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wasmtap::collector::host::{Host, Level};
use super::kv::KvState;

/// Log lines a collector may write per second before lines are dropped.
pub const LOG_LINES_PER_SECOND: u32 = 20;
/// Longest log line kept, in bytes; longer lines are cut.
pub const MAX_LOG_LINE: usize = 1024;

/// Per-collector store data.
pub struct CollectorState {
    /// The collector's name, for log lines.
    pub name: String,
    /// WASI context: clocks, random, the granted read-only dirs and env.
    pub wasi: WasiCtx,
    /// WASI resource handles.
    pub table: ResourceTable,
    /// Memory, table and instance caps.
    pub limits: StoreLimits,
    /// The persisted key-value state, shared with the owning collector so it
    /// outlives restarts of the instance.
    pub kv: Arc<Mutex<KvState>>,
    log: LogBudget,
}

impl std::fmt::Debug for CollectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorState").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CollectorState {
    /// State for collector `name`.
    pub fn new(name: String, wasi: WasiCtx, limits: StoreLimits, kv: Arc<Mutex<KvState>>) -> Self {
        Self { name, wasi, table: ResourceTable::new(), limits, kv, log: LogBudget::new() }
    }

    fn kv(&self) -> MutexGuard<'_, KvState> {
        self.kv.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl WasiView for CollectorState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A one-second window of allowed log lines.
#[derive(Debug)]
struct LogBudget {
    window: Instant,
    used: u32,
    dropped: u64,
}

impl LogBudget {
    fn new() -> Self {
        Self { window: Instant::now(), used: 0, dropped: 0 }
    }

    /// Whether a line may be written now; returns lines dropped since the last allowed one.
    fn take(&mut self) -> Option<u64> {
        if self.window.elapsed().as_secs() >= 1 {
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used >= LOG_LINES_PER_SECOND {
            self.dropped += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.dropped))
    }
}

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_LOG_LINE {
        return message;
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Host for CollectorState {
    fn log(&mut self, level: Level, message: String) {
        let Some(dropped) = self.log.take() else {
            return;
        };
        let collector = self.name.as_str();
        let msg = truncate(&message);
        if dropped > 0 {
            tracing::warn!(collector, dropped, "collector log lines dropped by the rate limit");
        }
        match level {
            Level::Trace => tracing::trace!(collector, "{msg}"),
            Level::Debug => tracing::debug!(collector, "{msg}"),
            Level::Info => tracing::info!(collector, "{msg}"),
            Level::Warn => tracing::warn!(collector, "{msg}"),
            Level::Error => tracing::error!(collector, "{msg}"),
        }
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.kv().get(&key)
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.kv().set(key, value)
    }

    fn state_remove(&mut self, key: String) {
        self.kv().remove(&key);
    }
}

impl super::bindings::wasmtap::collector::types::Host for CollectorState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_limits_lines_per_second() {
        let mut b = LogBudget::new();
        for _ in 0..LOG_LINES_PER_SECOND {
            assert_eq!(b.take(), Some(0));
        }
        assert_eq!(b.take(), None);
        assert_eq!(b.take(), None);
        b.window -= std::time::Duration::from_secs(1);
        assert_eq!(b.take(), Some(2));
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_LOG_LINE);
        let t = truncate(&s);
        assert!(t.len() <= MAX_LOG_LINE);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
