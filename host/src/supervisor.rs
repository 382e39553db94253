//! Keeps the running collectors in step with the plugins directory and the
//! managed collectors directory (collectors pushed by the proxy; a local
//! collector of the same name wins, and a managed one's manifest must
//! stay within `[plugins] allow_*`).
//!
//! At start-up every `*.wasm` is loaded in parallel. Afterwards the
//! directories are watched: adding, replacing or deleting a `.wasm` or its
//! manifest takes effect after a short debounce, without a restart. A
//! replacement is loaded and validated (compiled, instantiated, described,
//! initialised) before the old version is stopped; if it fails, the old
//! version keeps running and the reason is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use wasmtap_protocol::message::Sample;

use crate::fleet::Bounds;
use crate::health::{Registry, State};
use crate::manifest::Manifest;
use crate::runtime::{Collector, Prepared, Runtime};
use crate::scheduler::{self, Schedule};
use crate::schema::Schema;
use crate::signing::{self, PublicKey};

/// What the supervisor enforces.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Consecutive failures before a collector is quarantined.
    pub quarantine_after: u32,
    /// When not empty, only collectors signed by one of these keys load.
    pub trusted_keys: Vec<PublicKey>,
    /// The managed collectors directory, if pushed collectors are taken.
    pub managed_dir: Option<PathBuf>,
    /// What a managed collector's manifest may grant at most.
    pub bounds: Bounds,
}

/// Quiet time after the last change before the directory is rescanned.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A collector file and its manifest, read together.
#[derive(Debug)]
struct Candidate {
    wasm: PathBuf,
    fingerprint: [u8; 32],
    /// Pushed by the proxy: its grants are bounded.
    managed: bool,
}

struct Running {
    name: String,
    /// Pushed by the proxy (a local collector of the same name wins).
    managed: bool,
    /// What it declared at load.
    schema: Arc<Schema>,
    fingerprint: [u8; 32],
    collector: Arc<Mutex<Collector>>,
    schedule: Schedule,
    /// The scheduling task while the collector is enabled.
    task: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

/// Operator commands (control requests) for the supervisor.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Rescan the directory, retry collectors that failed to load, and
    /// restart quarantined ones; answers with the running collectors.
    Reload(oneshot::Sender<Vec<String>>),
    /// Schedule a disabled or quarantined collector again.
    Enable(String, oneshot::Sender<Result<(), String>>),
    /// Stop calling a collector until it is enabled or reloaded.
    Disable(String, oneshot::Sender<Result<(), String>>),
    /// Call a collector now and answer with its samples (they are not shipped).
    Run(String, oneshot::Sender<Result<Vec<Sample>, String>>),
    /// What every loaded collector declared (its fields, units and help).
    Describe(oneshot::Sender<Vec<Arc<Schema>>>),
    /// Files whose last load failed, and managed collectors a local one stands in for.
    Failures(oneshot::Sender<Troubles>),
    /// Bring the running set in step with the directories now (without
    /// retrying what failed); answers when done.
    Rescan(oneshot::Sender<()>),
}

/// Collector files that do not run, and why.
#[derive(Debug, Default)]
pub struct Troubles {
    /// Files whose last load failed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Managed collectors a local collector of the same name stands in
    /// for, with the local one's file.
    pub shadowed: Vec<(PathBuf, String)>,
}

/// Owns the collector tasks.
pub struct Supervisor {
    rt: Arc<Runtime>,
    dir: PathBuf,
    managed_dir: Option<PathBuf>,
    bounds: Arc<Bounds>,
    quarantine_after: u32,
    trusted_keys: Arc<[PublicKey]>,
    health: Registry,
    out: mpsc::Sender<Vec<Sample>>,
    running: BTreeMap<PathBuf, Running>,
    /// Files whose last load failed, by fingerprint (not retried until
    /// they change), with the reason.
    failed: BTreeMap<PathBuf, ([u8; 32], String)>,
    /// Managed collectors a local one of the same collector name stands
    /// in for, with that name: retried once no local one has it.
    shadowed: BTreeMap<PathBuf, String>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn fingerprint(wasm: &Path) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(std::fs::read(wasm)?);
    match std::fs::read(wasm.with_extension("toml")) {
        Ok(m) => {
            h.update(b"manifest");
            h.update(m);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::read(crate::signing::signature_path(wasm)) {
        Ok(sig) => {
            h.update(b"signature");
            h.update(sig);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(h.finalize().into())
}

fn scan(dir: &Path, managed: bool) -> std::io::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "wasm") && path.is_file() {
            match fingerprint(&path) {
                Ok(fingerprint) => out.push(Candidate { wasm: path, fingerprint, managed }),
                // Vanished between listing and reading: the next event rescans.
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "skipping unreadable file")
                }
            }
        }
    }
    out.sort_by(|a, b| a.wasm.cmp(&b.wasm));
    Ok(out)
}

impl Supervisor {
    /// A supervisor for the collectors in `dir`.
    pub fn new(
        rt: Arc<Runtime>,
        dir: PathBuf,
        policy: Policy,
        health: Registry,
        out: mpsc::Sender<Vec<Sample>>,
    ) -> Self {
        Self {
            rt,
            dir,
            managed_dir: policy.managed_dir,
            bounds: Arc::new(policy.bounds),
            quarantine_after: policy.quarantine_after,
            trusted_keys: policy.trusted_keys.into(),
            health,
            out,
            running: BTreeMap::new(),
            failed: BTreeMap::new(),
            shadowed: BTreeMap::new(),
        }
    }

    /// Names of the collectors running now.
    pub fn running(&self) -> Vec<String> {
        self.running.values().map(|r| r.name.clone()).collect()
    }

    /// Loads, replaces and stops collectors so that the running set matches the directory.
    pub async fn reconcile(&mut self) {
        let mut candidates = match scan(&self.dir, false) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot list the plugins dir");
                return;
            }
        };
        if let Some(managed_dir) = &self.managed_dir {
            match scan(managed_dir, true) {
                // After the local ones: loads start in this order, so a
                // local collector is running when a managed one of its
                // name comes to start (see `start`).
                Ok(managed) => candidates.extend(managed),
                Err(e) => {
                    tracing::error!(dir = %managed_dir.display(), error = %e, "cannot list the managed collectors dir");
                }
            }
        }
        let present: Vec<PathBuf> = candidates.iter().map(|c| c.wasm.clone()).collect();
        for gone in
            self.running.keys().filter(|p| !present.contains(p)).cloned().collect::<Vec<_>>()
        {
            if let Some(r) = self.running.remove(&gone) {
                tracing::info!(collector = %r.name, path = %gone.display(), "collector removed");
                self.stop(r).await;
            }
        }
        self.failed.retain(|p, _| present.contains(p));
        // A managed collector stood aside for a local one of its name: once
        // no collector of that name runs, it is loaded again.
        let running_names: Vec<&str> = self.running.values().map(|r| r.name.as_str()).collect();
        let freed: Vec<PathBuf> = self
            .shadowed
            .iter()
            .filter(|(p, name)| !present.contains(p) || !running_names.contains(&name.as_str()))
            .map(|(p, _)| p.clone())
            .collect();
        for p in freed {
            self.shadowed.remove(&p);
            self.failed.remove(&p);
        }

        let todo: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| self.running.get(&c.wasm).is_none_or(|r| r.fingerprint != c.fingerprint))
            .filter(|c| self.failed.get(&c.wasm).is_none_or(|(f, _)| *f != c.fingerprint))
            .collect();
        let mut loads = Vec::new();
        for c in todo {
            let (rt, trusted) = (self.rt.clone(), self.trusted_keys.clone());
            let bounds = c.managed.then(|| self.bounds.clone());
            let wasm = c.wasm.clone();
            loads.push((c, tokio::spawn(load(rt, wasm, trusted, bounds))));
        }
        for (c, task) in loads {
            let loaded = task.await.unwrap_or_else(|e| Err(format!("loader failed: {e}")));
            match loaded {
                Ok(collector) => {
                    self.failed.remove(&c.wasm);
                    if let Some(old) = self.running.remove(&c.wasm) {
                        tracing::info!(collector = %old.name, path = %c.wasm.display(), "collector replaced");
                        self.stop(old).await;
                    }
                    self.start(c, collector).await;
                }
                Err(e) => {
                    if let Some(old) = self.running.get(&c.wasm) {
                        tracing::error!(collector = %old.name, error = %e, "broken upgrade refused; the previous version keeps running");
                    } else {
                        tracing::error!(error = %e, "collector not loaded");
                    }
                    self.failed.insert(c.wasm, (c.fingerprint, e));
                }
            }
        }
    }

    async fn start(&mut self, c: Candidate, collector: Collector) {
        let name = collector.schema().name.clone();
        let other = self.running.iter().find(|(_, r)| r.name == name);
        if let Some((path, other)) = other.map(|(p, r)| (p.clone(), r.managed)) {
            if other && !c.managed {
                // A local collector wins over a managed one of the same name.
                if let Some(r) = self.running.remove(&path) {
                    tracing::info!(collector = %name, managed = %path.display(), local = %c.wasm.display(), "a local collector of this name runs instead of the managed one");
                    let why = format!("{} runs instead", c.wasm.display());
                    self.failed.insert(path.clone(), (r.fingerprint, why));
                    self.shadowed.insert(path, name.clone());
                    self.stop(r).await;
                }
            } else if c.managed && !other {
                tracing::info!(collector = %name, managed = %c.wasm.display(), local = %path.display(), "a local collector of this name runs instead of the managed one");
                let why = format!("{} runs instead", path.display());
                self.failed.insert(c.wasm.clone(), (c.fingerprint, why));
                self.shadowed.insert(c.wasm, name);
                return;
            } else {
                tracing::error!(collector = %name, path = %c.wasm.display(), running = %path.display(), "another file already provides a collector of this name; not started");
                let why = format!("another file already provides a collector named `{name}`");
                self.failed.insert(c.wasm, (c.fingerprint, why));
                return;
            }
        }
        let schedule = Schedule {
            interval: collector.manifest().interval.unwrap_or(collector.schema().default_interval),
            quarantine_after: self.quarantine_after,
        };
        let enabled = collector.manifest().enabled;
        let version = collector.schema().version.clone();
        self.health.update(&name, |h| {
            h.version = version;
            h.managed = c.managed;
        });
        let mut r = Running {
            name,
            managed: c.managed,
            schema: Arc::new(collector.schema().clone()),
            fingerprint: c.fingerprint,
            collector: Arc::new(Mutex::new(collector)),
            schedule,
            task: None,
        };
        if enabled {
            self.schedule(&mut r);
        } else {
            tracing::info!(collector = %r.name, "collector disabled by its manifest");
            self.health.update(&r.name, |h| h.state = State::Disabled);
        }
        self.running.insert(c.wasm, r);
    }

    fn schedule(&self, r: &mut Running) {
        let (stop, stopped) = watch::channel(false);
        let task = scheduler::spawn(
            r.name.clone(),
            self.rt.clone(),
            r.collector.clone(),
            r.schedule,
            self.health.clone(),
            self.out.clone(),
            stopped,
        );
        r.task = Some((stop, task));
    }

    async fn stop(&self, r: Running) {
        if let Some((stop, task)) = r.task {
            let _ = stop.send(true);
            let _ = task.await;
        }
        self.health.remove(&r.name);
    }

    fn find(&mut self, name: &str) -> Result<&mut Running, String> {
        self.running
            .values_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("no collector named `{name}` is loaded"))
    }

    /// Carries out an operator command.
    pub async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Reload(reply) => {
                self.failed.clear();
                self.reconcile().await;
                let stale: Vec<PathBuf> = self
                    .running
                    .iter()
                    .filter(|(_, r)| r.task.as_ref().is_some_and(|(_, t)| t.is_finished()))
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in stale {
                    if let Some(mut r) = self.running.remove(&path) {
                        tracing::info!(collector = %r.name, "restarting a quarantined collector on reload");
                        self.schedule(&mut r);
                        self.running.insert(path, r);
                    }
                }
                let _ = reply.send(self.running());
            }
            Command::Enable(name, reply) => {
                let path =
                    self.running.iter().find(|(_, r)| r.name == name).map(|(p, _)| p.clone());
                let result = match path.and_then(|p| self.running.remove(&p).map(|r| (p, r))) {
                    None => Err(format!("no collector named `{name}` is loaded")),
                    Some((path, mut r)) => {
                        if r.task.as_ref().is_none_or(|(_, t)| t.is_finished()) {
                            self.schedule(&mut r);
                            tracing::info!(collector = %name, "collector enabled by an operator");
                        }
                        self.running.insert(path, r);
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            Command::Failures(reply) => {
                let (shadowed, failed) = self
                    .failed
                    .iter()
                    .map(|(p, (_, why))| (p.clone(), why.clone()))
                    .partition(|(p, _)| self.shadowed.contains_key(p));
                let _ = reply.send(Troubles { failed, shadowed });
            }
            Command::Rescan(reply) => {
                self.reconcile().await;
                let _ = reply.send(());
            }
            Command::Describe(reply) => {
                let _ = reply.send(self.running.values().map(|r| r.schema.clone()).collect());
            }
            Command::Disable(name, reply) => {
                let result = match self.find(&name) {
                    Ok(r) => {
                        let task = r.task.take();
                        if let Some((stop, task)) = task {
                            let _ = stop.send(true);
                            let _ = task.await;
                        }
                        self.health.update(&name, |h| h.state = State::Disabled);
                        tracing::info!(collector = %name, "collector disabled by an operator");
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Run(name, reply) => {
                let collector = self.find(&name).map(|r| r.collector.clone());
                let rt = self.rt.clone();
                // Run off the supervisor's loop: a slow collector delays only this answer.
                tokio::spawn(async move {
                    let result = match collector {
                        Ok(c) => {
                            let mut c = c.lock().await;
                            let result = c.collect(&rt, crate::clock::now_ms()).await;
                            c.save_state().await;
                            result.map(|out| out.samples).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                });
            }
        }
    }

    /// Loads everything, then follows the directory until `shutdown` flips;
    /// then stops every collector.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.reconcile().await;
        let (tx, mut changes) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| is_change(&e)) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            if let Some(managed) = &self.managed_dir {
                w.watch(managed, notify::RecursiveMode::NonRecursive)?;
            }
            Ok(w)
        });
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the plugins dir; hot loading is off");
                None
            }
        };
        loop {
            tokio::select! {
                Some(()) = changes.recv() => {
                    // Debounce: wait until the directory is quiet.
                    loop {
                        tokio::select! {
                            Some(()) = changes.recv() => {}
                            _ = tokio::time::sleep(DEBOUNCE) => break,
                        }
                    }
                    self.reconcile().await;
                }
                Some(cmd) = commands.recv() => self.command(cmd).await,
                _ = shutdown.changed() => break,
            }
        }
        for (_, r) in std::mem::take(&mut self.running) {
            self.stop(r).await;
        }
    }
}

/// Whether a directory event may change what is loaded. Reads are not:
/// the rescan itself opens and lists both directories, and taking those
/// opens for changes made an agent rescan five times a second for ever.
fn is_change(event: &notify::Event) -> bool {
    !event.kind.is_access()
}

/// Loads one collector: the blocking part (manifest, signature, compile) on
/// a blocking thread, then instantiation, `describe` and `init` under their
/// deadlines.
async fn load(
    rt: Arc<Runtime>,
    wasm: PathBuf,
    trusted: Arc<[PublicKey]>,
    bounds: Option<Arc<Bounds>>,
) -> Result<Collector, String> {
    let started = std::time::Instant::now();
    let (blocking_rt, path) = (rt.clone(), wasm.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(&blocking_rt, &path, &trusted, bounds.as_deref())
    })
    .await
    .unwrap_or_else(|e| Err(format!("loader failed: {e}")))?;
    let c =
        Collector::start(&rt, prepared).await.map_err(|e| format!("{}: {e}", wasm.display()))?;
    tracing::info!(
        collector = %c.schema().name,
        version = %c.schema().version,
        fields = c.schema().fields.len(),
        from_cache = c.from_cache(),
        load_ms = started.elapsed().as_millis() as u64,
        "collector loaded"
    );
    Ok(c)
}

fn prepare(
    rt: &Runtime,
    wasm: &Path,
    trusted: &[PublicKey],
    bounds: Option<&Bounds>,
) -> Result<Prepared, String> {
    let manifest = Manifest::load(&wasm.with_extension("toml")).map_err(|e| e.to_string())?;
    if let Some(bounds) = bounds {
        bounds.check(&manifest).map_err(|e| format!("{}: {e}", wasm.display()))?;
    }
    let bytes = std::fs::read(wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let signer =
        signing::check(wasm, &bytes, trusted).map_err(|e| format!("{}: {e}", wasm.display()))?;
    if let Some(key) = signer {
        tracing::info!(path = %wasm.display(), signer = %key, "signature verified");
    }
    Collector::prepare(rt, wasm, &bytes, manifest).map_err(|e| format!("{}: {e}", wasm.display()))
}

#[cfg(test)]
mod watch_tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind};

    use super::is_change;

    #[test]
    fn reading_the_directories_is_no_change() {
        let event = |kind| notify::Event::new(kind);
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!is_change(&event(kind)), "{kind:?}");
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(is_change(&event(kind)), "{kind:?}");
        }
    }
}
