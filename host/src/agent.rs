//! Wires the agent together: load collectors, schedule them, run the uplink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::health::{Registry, State};
use crate::manifest::Manifest;
use crate::runtime::{Collector, Runtime};
use crate::scheduler::Schedule;
use crate::{scheduler, uplink::Uplink};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The wasm engine could not be created.
    #[error("cannot start the collector runtime: {0}")]
    Runtime(String),
    /// The plugins directory could not be listed.
    #[error("cannot list plugins dir {path}: {source}")]
    PluginsDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Every `*.wasm` in `dir`, sorted by name.
pub fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|source| AgentError::PluginsDir { path: dir.to_owned(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every collector in `dir` in parallel. Broken ones are logged and skipped.
pub async fn load_all(rt: &Arc<Runtime>, dir: &Path) -> Result<Vec<Collector>, AgentError> {
    let mut tasks = Vec::new();
    for wasm in plugin_files(dir)? {
        let rt = rt.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let manifest =
                Manifest::load(&wasm.with_extension("toml")).map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            let c = Collector::load(&rt, &wasm, manifest)
                .map_err(|e| format!("{}: {e}", wasm.display()))?;
            tracing::info!(
                collector = %c.schema().name,
                version = %c.schema().version,
                fields = c.schema().fields.len(),
                load_ms = started.elapsed().as_millis() as u64,
                "collector loaded"
            );
            Ok::<_, String>(c)
        }));
    }
    let mut loaded = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => loaded.push(c),
            Ok(Err(e)) => tracing::error!(error = %e, "collector not loaded"),
            Err(e) => tracing::error!(error = %e, "collector loader failed"),
        }
    }
    Ok(loaded)
}

/// Runs the agent until `shutdown` flips to `true`.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| AgentError::DataDir { path: config.data_dir.clone(), source })?;
    let rt = Arc::new(
        Runtime::new(&config.data_dir).map_err(|e| AgentError::Runtime(format!("{e:#}")))?,
    );
    let collectors = load_all(&rt, &config.plugins_dir).await?;
    if collectors.is_empty() {
        tracing::warn!(dir = %config.plugins_dir.display(), "no collectors loaded");
    }
    let (tx, rx) = mpsc::channel(1024);
    let health = Registry::default();
    let mut tasks = Vec::new();
    for c in collectors {
        if !c.manifest().enabled {
            tracing::info!(collector = %c.schema().name, "collector disabled by its manifest");
            health.update(&c.schema().name, |h| h.state = State::Disabled);
            continue;
        }
        let schedule = Schedule {
            interval: c.manifest().interval.unwrap_or(c.schema().default_interval),
            quarantine_after: config.quarantine_after,
        };
        tasks.push(scheduler::spawn(
            rt.clone(),
            c,
            schedule,
            health.clone(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    tracing::info!(agent = %config.name, project = %config.access_key.project(), collectors = tasks.len(), "agent running");
    Uplink::new(config, rx).run(shutdown).await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
