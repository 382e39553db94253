//! The collector runtime: one wasmtime [`Engine`] shared by all collectors,
//! an epoch ticker that enforces call deadlines, and the policy of what a
//! collector may import.
//!
//! - [`bindings`]: the generated host bindings of the WIT world.
//! - [`state`]: per-collector store data and the host imports.
//! - [`collector`]: one loaded, sandboxed collector instance.
//! - [`cache`]: compiled collectors on disk, checksummed and keyed by engine.
//! - [`kv`]: a collector's persisted key-value state.
//! - [`logs`]: the `log` import and stdout/stderr, as rate-limited log lines.

pub mod bindings;
pub mod cache;
pub mod collector;
pub mod kv;
pub mod limiter;
pub mod logs;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

pub use collector::{CallError, Collector, LoadError};
use state::CollectorState;

/// How often the engine's epoch advances; call deadlines are multiples of it.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Wasm stack a collector may use (deep recursion traps instead of crashing the host).
pub const MAX_WASM_STACK: usize = 512 << 10;

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
    ticker: Arc<AtomicBool>,
    state_dir: Option<PathBuf>,
    cache: Option<cache::CompileCache>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker thread. Collector state
    /// is kept under `data_dir/state`.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let mut rt = Self::without_storage()?;
        rt.state_dir = Some(data_dir.join("state"));
        rt.cache = match cache::CompileCache::open(&data_dir.join("cache"), &rt.engine) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "compile cache unavailable; collectors compile at every start");
                None
            }
        };
        Ok(rt)
    }

    /// A runtime that keeps nothing on disk: no compile cache, and collector
    /// state only in memory (`wasmtap plugin check` and `run`).
    pub fn without_storage() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Collector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;

        let ticker = Arc::new(AtomicBool::new(true));
        let (running, weak_engine) = (ticker.clone(), engine.weak());
        std::thread::Builder::new().name("wasmtap-epoch".into()).spawn(move || {
            while running.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak_engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(Self { engine, linker, ticker, state_dir: None, cache: None })
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
        let compile = || Component::new(&self.engine, wasm);
        let result = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, wasm, compile),
            None => compile().map(|c| (c, cache::Origin::Compiled)),
        };
        let (component, from) = result.map_err(|e| LoadError::Compile {
            path: origin.to_owned(),
            reason: format!("{e:#}"),
        })?;
        check_imports(&self.engine, &component)
            .map_err(|name| LoadError::ForbiddenImport { path: origin.to_owned(), import: name })?;
        Ok((component, from))
    }

    /// Where collector `name` keeps its persisted state.
    pub fn state_path(&self, name: &str) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(format!("{name}.state")))
    }

    pub(crate) fn linker(&self) -> &Linker<CollectorState> {
        &self.linker
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

/// Whether a collector may import the interface `name` (see [`ALLOWED_IMPORTS`]).
pub fn import_allowed(name: &str) -> bool {
    ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p))
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

/// Deadline ticks for a call timeout (at least one tick).
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    u64::try_from(timeout.as_micros().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
}
