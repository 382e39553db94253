//! One collector: its compiled component, its validated schema and manifest,
//! and a sandboxed instance in a `Store` of its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::Component;
use wasmtime::{Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::bindings;
use super::kv::KvState;
use super::limiter::Limiter;
use super::logs::{CollectorLog, Level};
use super::state::CollectorState;
use super::{Runtime, deadline_ticks};
use crate::manifest::Manifest;
use crate::schema::{Enforced, OutputError, OutputLimits, Schema, SchemaError};

/// Why a collector could not be loaded. Nothing of it runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The `.wasm` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a valid component.
    #[error("{path} is not a valid component: {reason}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// The compiler's message.
        reason: String,
    },
    /// The component imports an interface collectors may not use.
    #[error("{path} imports `{import}`, which collectors may not use (no network access)")]
    ForbiddenImport {
        /// The file.
        path: PathBuf,
        /// The refused import.
        import: String,
    },
    /// A granted path could not be opened.
    #[error("cannot grant {path}: {reason}")]
    Grant {
        /// The granted host path.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// Instantiation failed (missing import, start trap, over a limit).
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// `describe` trapped.
    #[error("describe failed: {0}")]
    Describe(String),
    /// `describe` returned an invalid schema.
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
    /// `init` returned an error or trapped.
    #[error("init failed: {0}")]
    Init(String),
}

/// Why one call failed. The collector's other calls, and other collectors, go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The call ran past its deadline.
    #[error("timed out")]
    Timeout,
    /// The guest trapped (panic, out of bounds, stack overflow, memory limit).
    #[error("trapped: {0}")]
    Trap(String),
    /// The collector reported an error of its own.
    #[error("collector error: {0}")]
    Collector(String),
    /// The output broke the caps.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Re-instantiating after an earlier failure failed.
    #[error("restart failed: {0}")]
    Restart(String),
}

struct Instance {
    store: Store<CollectorState>,
    bindings: bindings::Collector,
}

/// A loaded collector.
pub struct Collector {
    path: PathBuf,
    schema: Schema,
    manifest: Manifest,
    component: Component,
    instance: Option<Instance>,
    limits: OutputLimits,
    kv: Arc<Mutex<KvState>>,
    log: CollectorLog,
    origin: super::cache::Origin,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("path", &self.path)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn describe_error(e: &wasmtime::Error) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout,
        _ => CallError::Trap(format!("{e:#}")),
    }
}

impl Collector {
    /// Reads, compiles, instantiates, describes and initialises the collector at `path`.
    pub fn load(rt: &Runtime, path: &Path, manifest: Manifest) -> Result<Self, LoadError> {
        let wasm = std::fs::read(path)
            .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        Self::from_bytes(rt, path, &wasm, manifest)
    }

    /// Like [`Collector::load`], from bytes already read (and checked) from `path`.
    pub fn from_bytes(
        rt: &Runtime,
        path: &Path,
        wasm: &[u8],
        manifest: Manifest,
    ) -> Result<Self, LoadError> {
        let (component, origin) = rt.compile(wasm, path)?;
        let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let kv = Arc::new(Mutex::new(KvState::default()));
        let log = CollectorLog::new(&label);
        let mut instance = instantiate(rt, &component, &manifest, &label, kv.clone(), log.clone())?;
        instance.store.set_epoch_deadline(deadline_ticks(manifest.timeout));
        let descriptor = instance
            .bindings
            .call_describe(&mut instance.store)
            .map_err(|e| LoadError::Describe(describe_error(&e).to_string()))?;
        let schema = Schema::from_descriptor(descriptor)?;
        instance.store.data_mut().name = schema.name.clone();
        log.rename(&schema.name);
        if let Some(path) = rt.state_path(&schema.name) {
            *lock(&kv) = KvState::load(path);
        }
        init(&mut instance, &manifest)?;
        persist(&kv, &schema.name);
        Ok(Self {
            path: path.to_owned(),
            schema,
            manifest,
            component,
            instance: Some(instance),
            limits: OutputLimits::default(),
            kv,
            log,
            origin,
        })
    }

    /// The collector's validated schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The largest linear memory the current instance has reached, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.instance.as_ref().map_or(0, |i| i.store.data().limits.peak_memory())
    }

    /// Whether its compiled code came from the compile cache.
    pub fn from_cache(&self) -> bool {
        self.origin == super::cache::Origin::Cache
    }

    /// The `.wasm` it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one `collect`, stamping samples with `now_ms`.
    ///
    /// After a trap or timeout the instance is discarded (its state can't be
    /// trusted) and the next call starts a fresh one.
    pub fn collect(&mut self, rt: &Runtime, now_ms: u64) -> Result<Enforced, CallError> {
        let instance = match self.instance.as_mut() {
            Some(i) => i,
            None => {
                let mut fresh = instantiate(
                    rt,
                    &self.component,
                    &self.manifest,
                    &self.schema.name,
                    self.kv.clone(),
                    self.log.clone(),
                )
                .map_err(|e| CallError::Restart(e.to_string()))?;
                init(&mut fresh, &self.manifest).map_err(|e| CallError::Restart(e.to_string()))?;
                self.instance.insert(fresh)
            }
        };
        instance.store.set_epoch_deadline(deadline_ticks(self.manifest.timeout));
        let result = instance.bindings.call_collect(&mut instance.store);
        persist(&self.kv, &self.schema.name);
        let raw = match result {
            Ok(Ok(raw)) => raw,
            Ok(Err(message)) => return Err(CallError::Collector(message)),
            Err(e) => {
                self.instance = None;
                return Err(describe_error(&e));
            }
        };
        Ok(self.schema.enforce(raw, now_ms, &self.limits)?)
    }
}

fn lock(kv: &Mutex<KvState>) -> std::sync::MutexGuard<'_, KvState> {
    kv.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the collector's state if it changed; a failure is logged, not fatal.
fn persist(kv: &Mutex<KvState>, name: &str) {
    if let Err(e) = lock(kv).persist() {
        tracing::warn!(collector = %name, error = %e, "cannot persist collector state");
    }
}

fn instantiate(
    rt: &Runtime,
    component: &Component,
    manifest: &Manifest,
    name: &str,
    kv: Arc<Mutex<KvState>>,
    log: CollectorLog,
) -> Result<Instance, LoadError> {
    let mut wasi = WasiCtx::builder();
    for dir in &manifest.read {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadOnly)
            .map_err(|e| LoadError::Grant { path: dir.clone(), reason: format!("{e:#}") })?;
    }
    for key in &manifest.env {
        if let Ok(value) = std::env::var(key) {
            wasi.env(key, value);
        }
    }
    wasi.stdout(log.pipe(Level::Info));
    wasi.stderr(log.pipe(Level::Warn));
    let memory = usize::try_from(manifest.memory).unwrap_or(usize::MAX);
    let limits = StoreLimitsBuilder::new()
        .memory_size(memory)
        .memories(4)
        .tables(16)
        .table_elements(100_000)
        .instances(32)
        .trap_on_grow_failure(true)
        .build();
    let state = CollectorState::new(name.to_owned(), wasi.build(), Limiter::new(limits), kv, log);
    let mut store = Store::new(rt.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(deadline_ticks(manifest.timeout));
    let bindings = bindings::Collector::instantiate(&mut store, component, rt.linker())
        .map_err(|e| LoadError::Instantiate(describe_error(&e).to_string()))?;
    Ok(Instance { store, bindings })
}

fn init(instance: &mut Instance, manifest: &Manifest) -> Result<(), LoadError> {
    instance.store.set_epoch_deadline(deadline_ticks(manifest.timeout));
    match instance.bindings.call_init(&mut instance.store, &manifest.config) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(LoadError::Init(message)),
        Err(e) => Err(LoadError::Init(describe_error(&e).to_string())),
    }
}
