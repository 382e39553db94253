//! Wires the agent together: the collector supervisor and the uplink.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::health::Registry;
use crate::runtime::Runtime;
use crate::supervisor::{Policy, Supervisor};
use crate::uplink::Uplink;

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

/// Runs the agent until `shutdown` flips to `true`.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| AgentError::DataDir { path: config.data_dir.clone(), source })?;
    let rt = Arc::new(
        Runtime::new(&config.data_dir).map_err(|e| AgentError::Runtime(format!("{e:#}")))?,
    );
    if !config.plugins_dir.is_dir() {
        return Err(AgentError::PluginsDir {
            path: config.plugins_dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let (tx, rx) = mpsc::channel(1024);
    let health = Registry::default();
    let policy = Policy {
        quarantine_after: config.quarantine_after,
        trusted_keys: config.trusted_keys.clone(),
    };
    let supervisor = Supervisor::new(rt, config.plugins_dir.clone(), policy, health, tx);
    tracing::info!(agent = %config.name, project = %config.access_key.project(), plugins = %config.plugins_dir.display(), "agent starting");
    let collectors = tokio::spawn(supervisor.run(shutdown.clone()));
    Uplink::new(config, rx).run(shutdown).await;
    let _ = collectors.await;
    Ok(())
}
