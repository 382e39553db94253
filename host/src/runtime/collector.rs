//! One collector: its compiled component, its validated schema and manifest,
//! and a sandboxed instance in a `Store` of its own.
//!
//! Loading has a blocking part ([`Collector::prepare`]: read, compile or take
//! from the compile cache, check imports) and an async part
//! ([`Collector::start`]: instantiate, `describe`, `init`, each under the
//! manifest's timeout). Calls are futures: see [`super::instance`] for how
//! their deadline is enforced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Runtime;
use super::instance::{self, Instance, Recipe, within};
use super::kv::KvState;
use super::logs::CollectorLog;
use super::world::Pre;
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
    /// The compiler (`wasmtap-compile`) is missing, failed or wrote nothing
    /// usable: the component may be fine.
    #[error("cannot compile {path}: {reason}")]
    Compiler {
        /// The file.
        path: PathBuf,
        /// What went wrong.
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
    /// The component targets a version of the collector world this agent
    /// does not know.
    #[error(
        "{path} targets wasmtap:collector@{version}; this agent loads versions {}",
        super::world::supported_list()
    )]
    UnsupportedWorld {
        /// The file.
        path: PathBuf,
        /// The version it imports.
        version: String,
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

/// A collector compiled and checked, ready to be started.
pub struct Prepared {
    path: PathBuf,
    manifest: Manifest,
    pre: Pre,
    origin: super::cache::Origin,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("path", &self.path).finish_non_exhaustive()
    }
}

/// A loaded collector.
pub struct Collector {
    path: PathBuf,
    schema: Schema,
    manifest: Manifest,
    pre: Pre,
    /// The live instance; `None` after a failed call, until the next call starts a fresh one.
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

/// A collector instantiated and described, with what its instance shares.
struct Described {
    instance: Instance,
    schema: Schema,
    kv: Arc<Mutex<KvState>>,
    log: CollectorLog,
    limits: OutputLimits,
}

/// The least time instantiation and `describe` get: they set a collector
/// up (the runtime lays out its memory image, tens of MiB for Python and
/// JavaScript collectors, and the first call faults it in), which a
/// collect timeout of a few hundred milliseconds does not allow for on a
/// busy machine. `init` and `collect` keep the manifest's timeout.
pub const SETUP_DEADLINE: Duration = Duration::from_secs(5);

/// Instantiates the collector of `path` and calls `describe`, under the
/// manifest's timeout, or [`SETUP_DEADLINE`] when that is longer.
async fn described(
    rt: &Runtime,
    pre: &Pre,
    manifest: &Manifest,
    path: &Path,
) -> Result<Described, LoadError> {
    let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let kv = Arc::new(Mutex::new(KvState::default()));
    let log = CollectorLog::new(&label);
    let limits = OutputLimits::default();
    let recipe = Recipe { pre, manifest, name: &label, kv: &kv, log: &log, limits: &limits };
    let mut instance = instance::instantiate(rt, recipe).await?;
    let deadline = manifest.timeout.max(SETUP_DEADLINE);
    instance.arm(deadline);
    let descriptor = within(rt, deadline, instance.exports.describe(&mut instance.store))
        .await
        .map_err(|e| LoadError::Describe(e.to_string()))?;
    let schema = Schema::from_descriptor(descriptor)?;
    Ok(Described { instance, schema, kv, log, limits })
}

impl Collector {
    /// Reads, prepares and starts the collector at `path`. Compiling blocks
    /// the calling thread: the agent uses [`Collector::prepare`] on a
    /// blocking thread and [`Collector::start`] instead.
    pub async fn load(rt: &Runtime, path: &Path, manifest: Manifest) -> Result<Self, LoadError> {
        let wasm = std::fs::read(path)
            .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        Self::start(rt, Self::prepare(rt, path, &wasm, manifest)?).await
    }

    /// Compiles (or takes from the compile cache) the bytes read from `path`
    /// and checks what they import. Blocking: run it off the async threads.
    pub fn prepare(
        rt: &Runtime,
        path: &Path,
        wasm: &[u8],
        manifest: Manifest,
    ) -> Result<Prepared, LoadError> {
        let (component, origin) = rt.compile(wasm, path)?;
        let pre = Pre::new(rt.engine(), rt.linker(), &component)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        Ok(Prepared { path: path.to_owned(), manifest, pre, origin })
    }

    /// Instantiates, describes and initialises a prepared collector.
    pub async fn start(rt: &Runtime, prepared: Prepared) -> Result<Self, LoadError> {
        let Prepared { path, manifest, pre, origin } = prepared;
        let Described { mut instance, schema, kv, log, limits } =
            described(rt, &pre, &manifest, &path).await?;
        instance.store.data_mut().name = schema.name.clone();
        log.rename(&schema.name);
        if let Some(path) = rt.state_path(&schema.name) {
            *lock(&kv) = KvState::load(path);
        }
        instance::init(rt, &mut instance, &manifest).await?;
        persist(&kv, &schema.name).await;
        Ok(Self { path, schema, manifest, pre, instance: Some(instance), limits, kv, log, origin })
    }

    /// Instantiates a prepared collector without any grant and returns what
    /// it declares, without calling `init`: how a component is checked
    /// where it will not run (the proxy, before publishing it).
    pub async fn inspect(rt: &Runtime, prepared: Prepared) -> Result<Schema, LoadError> {
        let Prepared { path, manifest, pre, .. } = prepared;
        let manifest =
            Manifest { read: Vec::new(), usage: Vec::new(), env: Vec::new(), ..manifest };
        Ok(described(rt, &pre, &manifest, &path).await?.schema)
    }

    /// The collector's validated schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The most memory (all memories and tables together) the current
    /// instance has reached, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.instance.as_ref().map_or(0, |i| i.store.data().limits.peak_memory())
    }

    /// The version of the `wasmtap:collector` world it targets.
    pub fn world_version(&self) -> &'static str {
        self.pre.version()
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
    /// The instance is taken out for the call and put back only when the
    /// guest returned: after a trap or a timeout, or if this future is
    /// dropped before it completes, the instance is discarded (its state
    /// can't be trusted) and the next call starts a fresh one. What the
    /// call set in the persisted state is written by
    /// [`Collector::save_state`].
    pub async fn collect(&mut self, rt: &Runtime, now_ms: u64) -> Result<Enforced, CallError> {
        let mut instance = match self.instance.take() {
            Some(i) => i,
            None => {
                // From the fields, not `&self`: a collector is `Send` but not `Sync`.
                let recipe = Recipe {
                    pre: &self.pre,
                    manifest: &self.manifest,
                    name: &self.schema.name,
                    kv: &self.kv,
                    log: &self.log,
                    limits: &self.limits,
                };
                restart(rt, recipe).await?
            }
        };
        instance.arm(self.manifest.timeout);
        let call = instance.exports.collect(&mut instance.store);
        let result = within(rt, self.manifest.timeout, call).await;
        if result.is_ok() {
            self.instance = Some(instance);
        }
        match result? {
            Ok(raw) => Ok(self.schema.enforce(raw, now_ms, &self.limits)?),
            Err(message) => Err(CallError::Collector(message)),
        }
    }

    /// Writes the state the collector set during its calls, if it changed.
    ///
    /// [`Collector::collect`] leaves it unwritten: the caller saves it once
    /// the call's samples are handed on, so that an agent stopped in
    /// between never keeps a state that counts samples it did not deliver
    /// (a counter would skip them after a restart).
    pub async fn save_state(&mut self) {
        persist(&self.kv, &self.schema.name).await;
    }
}

/// A fresh instance in place of one that failed: instantiated and initialised.
async fn restart(rt: &Runtime, recipe: Recipe<'_>) -> Result<Instance, CallError> {
    let manifest = recipe.manifest;
    let mut fresh =
        instance::instantiate(rt, recipe).await.map_err(|e| CallError::Restart(e.to_string()))?;
    instance::init(rt, &mut fresh, manifest)
        .await
        .map_err(|e| CallError::Restart(e.to_string()))?;
    Ok(fresh)
}

fn lock(kv: &Mutex<KvState>) -> std::sync::MutexGuard<'_, KvState> {
    kv.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the collector's state if it changed, on a blocking thread (it
/// syncs to disk); a failure is logged, not fatal.
async fn persist(kv: &Arc<Mutex<KvState>>, name: &str) {
    if !lock(kv).needs_persist() {
        return;
    }
    let (kv, name) = (kv.clone(), name.to_owned());
    let written = tokio::task::spawn_blocking(move || {
        if let Err(e) = lock(&kv).persist() {
            tracing::warn!(collector = %name, error = %e, "cannot persist collector state");
        }
    });
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "collector state writer failed");
    }
}
