//! One sandboxed instance of a collector, and guest calls that can always
//! be cut off.
//!
//! An instance gets its own `Store`: a WASI context with read-only access to
//! the manifest's granted paths and only its granted environment variables,
//! stdout and stderr into the agent's log, one memory budget for all its
//! memories and tables ([`Limiter`]), and a cap on the data the host copies
//! out of it in one call ([`OutputLimits::copy_budget`]).
//!
//! Every call into the guest runs as a future under a wall-clock deadline
//! (the manifest's `timeout`), so a guest blocked in a host call (sleeping,
//! polling a pollable that never resolves, reading a slow file) is dropped
//! at its deadline like one spinning in wasm. While the call runs, the
//! epoch ticker makes the guest yield to the executor every tick, and traps
//! it once the deadline has passed. A call that was cut off leaves the
//! instance unusable: callers discard it and start a fresh one.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, StoreContextMut, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::Runtime;
use super::collector::{CallError, LoadError};
use super::files::FileGrants;
use super::kv::KvState;
use super::limiter::Limiter;
use super::logs::{CollectorLog, Level};
use super::state::CollectorState;
use super::usage::UsageGrants;
use super::world::{Exports, Pre};
use crate::manifest::Manifest;
use crate::schema::OutputLimits;

/// A live instance: its store and its exports.
pub(super) struct Instance {
    pub(super) store: Store<CollectorState>,
    pub(super) exports: Exports,
}

impl Instance {
    /// Sets the deadline of the next call to `timeout` from now.
    pub(super) fn arm(&mut self, timeout: Duration) {
        arm(&mut self.store, timeout);
    }
}

fn arm(store: &mut Store<CollectorState>, timeout: Duration) {
    let now = Instant::now();
    // A timeout too large for the clock ends the call at once rather than panicking.
    store.data_mut().deadline = now.checked_add(timeout).unwrap_or(now);
    store.set_epoch_deadline(1);
}

/// At each epoch tick during a call: trap once past the deadline, else yield
/// to the executor so that the call's timer, and other tasks, can run.
fn on_epoch(ctx: StoreContextMut<'_, CollectorState>) -> wasmtime::Result<UpdateDeadline> {
    Ok(if Instant::now() >= ctx.data().deadline {
        UpdateDeadline::Interrupt
    } else {
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
    })
}

/// A guest failure as the scheduler counts it.
pub(super) fn classify(e: &wasmtime::Error) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout,
        _ => CallError::Trap(format!("{e:#}")),
    }
}

/// Runs `call` (a guest call on an armed store) to completion or until
/// `timeout` has passed, whichever comes first. A call past its deadline
/// is dropped, wherever it is blocked, and reported as [`CallError::Timeout`].
pub(super) async fn within<R>(
    rt: &Runtime,
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<R>>,
) -> Result<R, CallError> {
    let _ticking = rt.ticker().call();
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(|e| classify(&e)),
        Err(_elapsed) => Err(CallError::Timeout),
    }
}

/// Whether every read grant lies in `/proc` or `/sys`, whose files the
/// kernel generates from memory on read. Such a collector's file operations
/// then run on the calling thread instead of hopping to a blocking thread
/// and back for each one (the hops were most of a collector's CPU cost).
/// Grants anywhere else (a disk, a network filesystem) keep the blocking
/// threads, so a slow device never holds up the agent's own tasks.
pub(crate) fn reads_only_kernel_state(grants: &[std::path::PathBuf]) -> bool {
    grants.iter().all(|g| {
        let mut parts = g.components();
        parts.next() == Some(std::path::Component::RootDir)
            && matches!(parts.next(), Some(std::path::Component::Normal(top)) if top == "proc" || top == "sys")
            && parts.all(|p| matches!(p, std::path::Component::Normal(_)))
    })
}

/// Everything a fresh instance is made from.
pub(super) struct Recipe<'a> {
    pub(super) pre: &'a Pre,
    pub(super) manifest: &'a Manifest,
    pub(super) name: &'a str,
    pub(super) kv: &'a Arc<Mutex<KvState>>,
    pub(super) log: &'a CollectorLog,
    pub(super) limits: &'a OutputLimits,
}

/// A fresh, sandboxed instance; its start-up code runs under the manifest's
/// timeout, or [`super::collector::SETUP_DEADLINE`] when that is longer.
pub(super) async fn instantiate(rt: &Runtime, r: Recipe<'_>) -> Result<Instance, LoadError> {
    let mut wasi = WasiCtx::builder();
    let kernel_state_only = reads_only_kernel_state(&r.manifest.read);
    wasi.allow_blocking_current_thread(kernel_state_only);
    for dir in &r.manifest.read {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadOnly)
            .map_err(|e| LoadError::Grant { path: dir.clone(), reason: format!("{e:#}") })?;
    }
    for key in &r.manifest.env {
        if let Ok(value) = std::env::var(key) {
            wasi.env(key, value);
        }
    }
    wasi.stdout(r.log.pipe(Level::Info));
    wasi.stderr(r.log.pipe(Level::Warn));
    let cap = usize::try_from(r.manifest.memory).unwrap_or(usize::MAX);
    let usage = UsageGrants::new(r.manifest.read.iter().chain(&r.manifest.usage).cloned());
    let files = FileGrants::open(&r.manifest.read, kernel_state_only, cap)
        .map_err(|(path, e)| LoadError::Grant { path, reason: e.to_string() })?;
    let state = CollectorState::new(
        r.name.to_owned(),
        wasi.build(),
        Limiter::new(cap),
        r.kv.clone(),
        r.log.clone(),
        usage,
        files,
    );
    let mut store = Store::new(rt.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.set_hostcall_fuel(r.limits.copy_budget());
    store.epoch_deadline_callback(on_epoch);
    let deadline = r.manifest.timeout.max(super::collector::SETUP_DEADLINE);
    arm(&mut store, deadline);
    let exports = within(rt, deadline, r.pre.instantiate(&mut store))
        .await
        .map_err(|e| LoadError::Instantiate(e.to_string()))?;
    Ok(Instance { store, exports })
}

/// Calls `init` with the manifest's configuration.
pub(super) async fn init(
    rt: &Runtime,
    instance: &mut Instance,
    manifest: &Manifest,
) -> Result<(), LoadError> {
    instance.arm(manifest.timeout);
    let call = instance.exports.init(&mut instance.store, &manifest.config);
    match within(rt, manifest.timeout, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(LoadError::Init(message)),
        Err(e) => Err(LoadError::Init(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::reads_only_kernel_state;

    fn grants(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn only_grants_inside_proc_and_sys_run_file_operations_inline() {
        assert!(reads_only_kernel_state(&grants(&["/proc", "/sys/block"])));
        assert!(reads_only_kernel_state(&grants(&[])), "no grants, no file operations");
        for outside in [
            &["/proc", "/var/log"][..],
            &["/"],
            &["/processes"],
            &["/sys/../etc"],
            &["proc"],
            &["/mnt/proc"],
        ] {
            assert!(!reads_only_kernel_state(&grants(outside)), "{outside:?}");
        }
    }
}
