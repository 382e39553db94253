//! Wires the agent together: the collector supervisor, the self-observation
//! collector, the batcher and spool, the uplink and the control handler.
//!
//! Shutdown runs in order: collectors stop, the batcher writes what they
//! produced to the spool, the uplink sends what it can within a short
//! deadline and closes the session with a reason. What is left stays in the
//! spool for the next run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, watch};

use crate::config::Config;
use crate::control::Control;
use crate::fleet::{Fleet, Managed};
use crate::health::Registry;
use crate::logring::LogRing;
use crate::runtime::Runtime;
use crate::spool::{Spool, SpoolError};
use crate::stats::AgentStats;
use crate::supervisor::{Policy, Supervisor};
use crate::uplink::batcher::Batcher;
use crate::uplink::identity::Identities;
use crate::uplink::{Shared, Uplink};

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
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The agent's identity key or its pin of the proxy's could not be read.
    #[error(transparent)]
    Identity(#[from] crate::uplink::identity::IdentityError),
    /// The managed collectors directory cannot be opened.
    #[error("managed collectors: {0}")]
    Managed(#[from] crate::fleet::FleetError),
}

/// Where pushed collectors are kept, under the data dir.
pub const MANAGED_DIR: &str = "collectors";

/// Runs the agent until `shutdown` flips to `true`; `logs` is the ring the
/// `logs` control request reads.
pub async fn run(
    config: Config,
    logs: LogRing,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| AgentError::DataDir { path: config.data_dir.clone(), source })?;
    let mut rt =
        Runtime::new(&config.data_dir).map_err(|e| AgentError::Runtime(format!("{e:#}")))?;
    if let Some(exe) = &config.compile_with {
        rt.compile_in_child(exe.clone());
    }
    let rt = Arc::new(rt);
    if !config.plugins_dir.is_dir() {
        return Err(AgentError::PluginsDir {
            path: config.plugins_dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let identities = Arc::new(Identities::load(&config.data_dir, config.proxy_identity)?);
    let spool =
        Spool::open(&config.data_dir.join("spool"), config.spool_cap, crate::clock::now_ms())?;
    let spool = Arc::new(Mutex::new(spool));
    let config = Arc::new(config);
    let stats = Arc::new(AgentStats::new());
    let health = Registry::default();
    let (samples_tx, samples_rx) = mpsc::channel(1024);
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let managed = match config.managed {
        true => Some(Managed::open(&config.data_dir.join(MANAGED_DIR), config.max_managed_size)?),
        false => None,
    };
    let policy = Policy {
        quarantine_after: config.quarantine_after,
        trusted_keys: config.trusted_keys.clone(),
        managed_dir: managed.as_ref().map(|m| m.dir().to_owned()),
        bounds: config.bounds.clone(),
    };
    let supervisor =
        Supervisor::new(rt, config.plugins_dir.clone(), policy, health.clone(), samples_tx.clone());
    let fleet = Arc::new(Fleet::new(
        managed,
        config.bounds.clone(),
        config.trusted_keys.clone().into(),
        health.clone(),
        commands_tx.clone(),
    ));
    tracing::info!(agent = %config.name, project = %config.access_key.project(), identity = %identities.agent.identity(), plugins = %config.plugins_dir.display(), "agent starting");
    let control = Arc::new(Control {
        started: Instant::now(),
        config: config.clone(),
        health: health.clone(),
        supervisor: commands_tx,
        logs,
        stats: stats.clone(),
        spool: spool.clone(),
        fleet: fleet.clone(),
    });
    let written = Arc::new(Notify::new());
    let collectors = tokio::spawn(supervisor.run(commands_rx, shutdown.clone()));
    let selfwatch = tokio::spawn(crate::selfwatch::run(
        health,
        fleet,
        stats.clone(),
        spool.clone(),
        samples_tx,
        shutdown,
    ));
    let batcher = Batcher {
        input: samples_rx,
        spool: spool.clone(),
        written: written.clone(),
        stats: stats.clone(),
        interval: config.batch_interval,
    };
    let (done_tx, done_rx) = watch::channel(false);
    let batching = tokio::spawn(async move {
        batcher.run().await;
        let _ = done_tx.send(true);
    });
    Uplink::new(config, Shared { spool, written, stats, control }, identities).run(done_rx).await;
    let _ = tokio::join!(collectors, selfwatch, batching);
    tracing::info!("agent stopped");
    Ok(())
}
