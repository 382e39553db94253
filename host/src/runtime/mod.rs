//! The collector runtime: one wasmtime [`Engine`] shared by all collectors,
//! an epoch ticker that runs while calls are in flight, and the policy of
//! what a collector may import.
//!
//! Guest calls are async (wasmtime's async support with WASI's async
//! linker): each runs as a future under a wall-clock deadline, so a call
//! blocked anywhere, in wasm or in a host call, is dropped on time.
//!
//! - [`bindings`]: the generated host bindings of the WIT worlds (0.2.1 and 0.1.0).
//! - [`world`]: which world version a component targets, calls in the current types.
//! - [`state`]: per-collector store data and the host imports.
//! - [`usage`]: the `filesystem` import (statvfs inside the grants).
//! - [`files`]: the `files` import (whole files and listings inside the grants).
//! - `inflight`: paths with a query still running on a blocking thread.
//! - [`collector`]: one loaded collector: load, describe, init, collect.
//! - [`instance`]: its sandboxed instance and calls under a deadline.
//! - [`limiter`]: one memory budget across all memories and tables.
//! - [`ticker`]: the epoch ticker.
//! - [`cache`]: compiled collectors on disk, checksummed, filled by `wasmtap-compile`.
//! - [`kv`]: a collector's persisted key-value state.
//! - [`logs`]: the `log` import and stdout/stderr, as rate-limited log lines.

pub mod bindings;
pub mod cache;
pub mod collector;
pub mod files;
mod inflight;
mod instance;
pub mod kv;
pub mod limiter;
pub mod logs;
pub mod state;
pub mod ticker;
pub mod usage;
pub mod world;

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

pub use collector::{CallError, Collector, LoadError, Prepared};
use state::CollectorState;
use ticker::Ticker;

/// How often the engine's epoch advances while a call is in flight: how
/// long guest code runs between yields to the executor, and how late past
/// its deadline a guest spinning in wasm is trapped at most.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Wasm stack a collector may use (deep recursion traps instead of crashing the host).
pub const MAX_WASM_STACK: usize = 512 << 10;

/// An engine with the agent's settings. `wasmtap-compile` builds its engine
/// here too: wasmtime refuses code compiled with other settings.
pub(crate) fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.wasm_component_model(true);
    Ok(Engine::new(&config)?)
}

/// Interfaces a collector may import. Anything else (notably `wasi:sockets`
/// and `wasi:http`) is refused at load: collectors never reach the network.
const ALLOWED_IMPORTS: &[&str] = &[
    "wasmtap:collector/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
];

/// The engine, linker and epoch ticker shared by every collector.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CollectorState>,
    ticker: Ticker,
    state_dir: Option<PathBuf>,
    cache: Option<cache::CompileCache>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and starts the (idle) epoch ticker thread. Collector state
    /// is kept under `data_dir/state`.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let mut rt = Self::without_storage()?;
        rt.state_dir = Some(data_dir.join("state"));
        let cache_dir = data_dir.join("cache");
        rt.cache = Some(cache::CompileCache::open(&cache_dir).map_err(|e| {
            anyhow::anyhow!("cannot open the compile cache {}: {e}", cache_dir.display())
        })?);
        Ok(rt)
    }

    /// A runtime that keeps nothing on disk: no compile cache, and collector
    /// state only in memory (`wasmtap plugin check` and `run`).
    pub fn without_storage() -> anyhow::Result<Self> {
        let engine = new_engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Collector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::v0_1::Collector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let ticker = Ticker::start(&engine)?;
        Ok(Self { engine, linker, ticker, state_dir: None, cache: None })
    }

    /// Compiles collectors missing from the cache in a child process
    /// running `exe`, `wasmtap-compile` (see
    /// [`cache::CompileCache::compile_in_child`]). An agent built without
    /// the `compiler` feature can load collectors only this way.
    pub fn compile_in_child(&mut self, exe: PathBuf) {
        if let Some(cache) = &mut self.cache {
            cache.compile_in_child(exe);
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component (or loads it from the compile cache) and checks
    /// what it imports.
    pub fn compile(
        &self,
        wasm: &[u8],
        origin: &Path,
    ) -> Result<(Component, cache::Origin), LoadError> {
        let compile = || self.compile_here(wasm);
        let result = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, wasm, compile),
            None => compile().map(|c| (c, cache::Origin::Compiled)),
        };
        let (component, from) = result.map_err(|e| match e {
            cache::CompileFailure::Invalid(reason) => {
                LoadError::Compile { path: origin.to_owned(), reason }
            }
            cache::CompileFailure::Compiler(reason) => {
                LoadError::Compiler { path: origin.to_owned(), reason }
            }
        })?;
        check_imports(&self.engine, &component)
            .map_err(|name| LoadError::ForbiddenImport { path: origin.to_owned(), import: name })?;
        check_world(&self.engine, &component)
            .map_err(|version| LoadError::UnsupportedWorld { path: origin.to_owned(), version })?;
        Ok((component, from))
    }

    #[cfg(feature = "compiler")]
    fn compile_here(&self, wasm: &[u8]) -> Result<Component, cache::CompileFailure> {
        Component::new(&self.engine, wasm)
            .map_err(|e| cache::CompileFailure::Invalid(format!("{e:#}")))
    }

    #[cfg(not(feature = "compiler"))]
    fn compile_here(&self, _wasm: &[u8]) -> Result<Component, cache::CompileFailure> {
        Err(cache::CompileFailure::Compiler(
            "not in the compile cache, and this build compiles only with `wasmtap-compile`".into(),
        ))
    }

    /// Where collector `name` keeps its persisted state.
    pub fn state_path(&self, name: &str) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(format!("{name}.state")))
    }

    pub(crate) fn linker(&self) -> &Linker<CollectorState> {
        &self.linker
    }

    /// The epoch ticker.
    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }
}

/// Whether a collector may import the interface `name` (see [`ALLOWED_IMPORTS`]).
pub fn import_allowed(name: &str) -> bool {
    ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p))
}

/// A world version of `wasmtap:collector` this agent does not know, if the
/// component imports one.
fn check_world(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        match world::version_of(name) {
            Some(v) if !world::SUPPORTED.contains(&v) => return Err(v.to_owned()),
            _ => {}
        }
    }
    Ok(())
}

/// The first import outside [`ALLOWED_IMPORTS`], if any.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !import_allowed(name) {
            return Err(name.to_owned());
        }
    }
    Ok(())
}
