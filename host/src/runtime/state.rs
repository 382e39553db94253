//! What each collector's `Store` holds, and the host side of the
//! `wasmtap:collector/host` import (the `filesystem` and `files` imports
//! are answered by [`super::usage`] and [`super::files`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::limiter::Limiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_1::wasmtap::collector as v0_1;
use super::bindings::wasmtap::collector::files::{self, FileError};
use super::bindings::wasmtap::collector::filesystem::{self, FsUsage};
use super::bindings::wasmtap::collector::host::{Host, Level};
use super::files::FileGrants;
use super::kv::KvState;
use super::logs::{self, CollectorLog};
use super::usage::UsageGrants;

/// Per-collector store data.
pub struct CollectorState {
    /// The collector's name, for log lines.
    pub name: String,
    /// WASI context: clocks, random, the granted read-only dirs and env.
    pub wasi: WasiCtx,
    /// WASI resource handles.
    pub table: ResourceTable,
    /// One memory budget for all memories and tables, and peak memory.
    pub limits: Limiter,
    /// The persisted key-value state, shared with the owning collector so it
    /// outlives restarts of the instance.
    pub kv: Arc<Mutex<KvState>>,
    /// Where its log lines go, rate-limited.
    pub log: CollectorLog,
    /// When the call in progress must end; the epoch callback traps after it.
    pub deadline: Instant,
    /// Where it may ask how full a filesystem is.
    pub usage: UsageGrants,
    /// Where it may read whole files and list directories.
    pub files: FileGrants,
}

impl std::fmt::Debug for CollectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorState").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CollectorState {
    /// State for collector `name`.
    pub fn new(
        name: String,
        wasi: WasiCtx,
        limits: Limiter,
        kv: Arc<Mutex<KvState>>,
        log: CollectorLog,
        usage: UsageGrants,
        files: FileGrants,
    ) -> Self {
        Self {
            name,
            wasi,
            table: ResourceTable::new(),
            limits,
            kv,
            log,
            deadline: Instant::now(),
            usage,
            files,
        }
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

impl Host for CollectorState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => logs::Level::Trace,
            Level::Debug => logs::Level::Debug,
            Level::Info => logs::Level::Info,
            Level::Warn => logs::Level::Warn,
            Level::Error => logs::Level::Error,
        };
        self.log.line(level, &message);
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

impl filesystem::Host for CollectorState {
    async fn usage(&mut self, path: String) -> Result<FsUsage, String> {
        self.usage.usage(path).await
    }
}

impl files::Host for CollectorState {
    async fn read(&mut self, path: String) -> Result<Vec<u8>, FileError> {
        self.files.read(path).await
    }

    async fn read_dir(&mut self, path: String) -> Result<Vec<String>, FileError> {
        self.files.read_dir(path).await
    }
}

/// 0.1.0 collectors get the same host, with the same level names.
impl v0_1::host::Host for CollectorState {
    fn log(&mut self, level: v0_1::host::Level, message: String) {
        use v0_1::host::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        Host::log(self, level, message);
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        Host::state_get(self, key)
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        Host::state_set(self, key, value)
    }

    fn state_remove(&mut self, key: String) {
        Host::state_remove(self, key);
    }
}

impl v0_1::types::Host for CollectorState {}
