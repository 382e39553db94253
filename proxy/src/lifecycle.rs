//! The proxy from start to exit: [`run`], or [`bind`] then
//! [`Bound::serve`] for a caller that wants the bound addresses first.
//!
//! Start: load (or create) the proxy's identity key, open the identity
//! bindings and the store, bind the listeners, start the sinks (each reads
//! the store from its own position, [`crate::tail`]). When `shutdown`
//! flips: stop accepting; let each session acknowledge what reached the
//! disk and close; close the store; then give the sinks up to
//! [`SHUTDOWN_FLUSH`] to deliver everything stored. What they could not
//! deliver stays in the store and goes out at the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::keyfile::{self, KeyFileError, Origin};

use crate::bindings::{Bindings, BindingsError};
use crate::cluster::{self, Cluster, ClusterError};
use crate::config::{Config, HttpConfig};
use crate::descriptors::Descriptors;
use crate::display::Print;
use crate::fleet::Fleet;
use crate::gate::Gate;
use crate::http::{self, HttpState};
use crate::latest::Latest;
use crate::remote_write::{RemoteWrite, RemoteWriteError};
use crate::server::{self, Hub};
use crate::sessions::Sessions;
use crate::store::{Store, StoreError};
use crate::tail::{Tail, TailError, live};

/// How long the sinks get, at shutdown, to deliver what is stored.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// What the proxy does besides serving agents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Print every stored sample on stdout (`run --print`).
    pub print: bool,
}

/// Why the proxy could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// The identity key could not be read or created.
    #[error("the proxy's identity key: {0}")]
    Identity(#[from] KeyFileError),
    /// The identity bindings could not be opened.
    #[error("opening the identity bindings: {0}")]
    Bindings(#[from] BindingsError),
    /// A listener could not be bound.
    #[error("binding {what} {addr}: {source}")]
    Bind {
        /// `listen` or `[http] listen`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A remote-write endpoint could not start.
    #[error(transparent)]
    RemoteWrite(#[from] RemoteWriteError),
    /// A sink could not read the store.
    #[error(transparent)]
    Tail(#[from] TailError),
    /// The cluster could not be joined.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// A proxy with its store open and its listeners bound.
#[derive(Debug)]
pub struct Bound {
    config: Arc<Config>,
    options: Options,
    identity: StaticKey,
    bindings: Arc<Bindings>,
    store: Arc<Store>,
    listener: TcpListener,
    http: Option<(TcpListener, HttpConfig)>,
}

async fn listen(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).await.map_err(|source| RunError::Bind { what, addr, source })
}

/// Opens the store and binds the listeners of `config`.
pub async fn bind(config: Config, options: Options) -> Result<Bound, RunError> {
    if config.projects.is_empty() {
        tracing::warn!("no [[projects]] configured: every agent will be refused");
    }
    let (identity, origin) = keyfile::load_or_create(&config.identity_file, &mut rand::rng())?;
    match origin {
        Origin::Created => {
            tracing::info!(identity = %identity.identity(), file = %config.identity_file.display(), "created this proxy's identity key")
        }
        Origin::Loaded => tracing::info!(identity = %identity.identity(), "proxy identity"),
    }
    let bindings = Arc::new(Bindings::open(&config.data_dir)?);
    let store = Arc::new(Store::open_with(&config.data_dir, config.store)?);
    let listener = listen("listen", config.listen).await?;
    let http = match &config.http {
        Some(h) => Some((listen("[http] listen", h.listen).await?, h.clone())),
        None => None,
    };
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, projects = config.projects.len(), "proxy listening");
    Ok(Bound { config: Arc::new(config), options, identity, bindings, store, listener, http })
}

/// Serves `config` until `shutdown` flips; see the module docs.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
    bind(config, Options::default()).await?.serve(shutdown).await
}

impl Bound {
    /// The address agents connect to.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the `[http]` listener, if there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` flips, then shuts down gracefully.
    pub async fn serve(self, shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
        let Bound { config, options, identity, bindings, store, listener, http } = self;
        let started_ms = crate::now_ms();
        let (stop_sinks, sinks_stop) = watch::channel(false);
        let mut sinks: Vec<JoinHandle<()>> = Vec::new();
        let mut remote = Vec::new();
        let descriptors = Arc::new(Descriptors::open(&config.data_dir));
        let sessions = Arc::new(Sessions::default());
        let cluster = match &config.cluster {
            Some(c) => {
                let mut cluster = Cluster::connect(c.clone()).await?;
                if c.store {
                    cluster = cluster.with_store(store.clone());
                }
                // The stream exists before the first batch, when JetStream
                // answers in time; otherwise the feed makes it as soon as it
                // can, and batches wait in agents' spools until then.
                match tokio::time::timeout(c.confirm_timeout, cluster.stream()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot make the cluster's stream yet")
                    }
                    Err(_) => tracing::warn!(
                        "JetStream does not answer yet; the stream is made once it does"
                    ),
                }
                tracing::info!(nats = ?c.nats, stream = %c.stream, name = %c.name, "batches go to the cluster's stream");
                let control =
                    cluster::control::serve(cluster.clone(), sessions.clone(), shutdown.clone());
                tokio::spawn(control);
                if c.store {
                    let feed =
                        cluster::feed::run(cluster.clone(), store.clone(), sinks_stop.clone());
                    sinks.push(tokio::spawn(feed));
                }
                Some(cluster)
            }
            None => None,
        };
        for endpoint in &config.remote_write {
            let endpoint = endpoint.clone();
            match &cluster {
                // One proxy of the cluster feeds each endpoint, from the stream.
                Some(cluster) => {
                    let (rw, backend, settings, key) =
                        RemoteWrite::backend(&store, endpoint, descriptors.clone())?;
                    rw.set_clustered();
                    let (c, k, stop) = (cluster.clone(), key.clone(), shutdown.clone());
                    tokio::spawn(cluster::remote::mark_start(c, k, started_ms, stop));
                    let backend = Arc::new(tokio::sync::Mutex::new(backend));
                    let c = cluster.clone();
                    let (lease_key, stop) = (key.clone(), sinks_stop.clone());
                    let work = move || {
                        let (c, backend, key) = (c.clone(), backend.clone(), key.clone());
                        async move {
                            let mut backend = backend.lock().await;
                            cluster::remote::deliver(&c, &key, &mut backend, settings).await;
                        }
                    };
                    sinks.push(tokio::spawn(cluster::lease::hold(
                        cluster.clone(),
                        lease_key,
                        stop,
                        work,
                    )));
                    remote.push(rw);
                }
                None => {
                    let (rw, follower) = RemoteWrite::open(&store, endpoint, descriptors.clone())?;
                    sinks.push(tokio::spawn(follower.run(sinks_stop.clone())));
                    remote.push(rw);
                }
            }
        }
        let commits = store.commits().clone();
        let gate = Gate::new(config.limits);
        let projects = config.projects.names().iter().map(|p| p.as_str().to_owned()).collect();
        let mut fleet = Fleet::new(&config.data_dir, projects, config.fleet.max_size);
        if let Some(cluster) = &cluster {
            let shared = crate::cluster::catalog::Shared::new(cluster.clone());
            let me = cluster.config().name.clone();
            let runtime = tokio::runtime::Handle::current();
            fleet = fleet.shared(crate::fleet::sharing::Sharing::new(shared, me, runtime));
        }
        let fleet = Arc::new(fleet);
        tokio::spawn(fleet.clone().run(sessions.clone(), shutdown.clone()));
        if let Some((http_listener, http_cfg)) = http {
            let latest = Arc::new(Latest::new(
                http_cfg.max_series,
                http_cfg.series_ttl,
                descriptors.clone(),
            ));
            // The table is rebuilt from what arrived within its TTL (none
            // is kept with max_series = 0).
            if http_cfg.max_series > 0 {
                let ttl_ms = u64::try_from(http_cfg.series_ttl.as_millis()).unwrap_or(u64::MAX);
                let tail = Tail::since(&store, crate::now_ms().saturating_sub(ttl_ms))?;
                let feed = live::run(tail, latest.clone(), commits.clone(), sinks_stop.clone());
                sinks.push(tokio::spawn(feed));
            }
            if http_cfg.token.is_none() {
                tracing::warn!("[http] has no token: the admin API under /api/ is off");
            }
            tracing::info!(listen = ?http_listener.local_addr().ok(), "http listening");
            let state = Arc::new(HttpState {
                token: http_cfg.token.clone(),
                sessions: sessions.clone(),
                bindings: bindings.clone(),
                latest,
                remote_write: remote,
                store: store.clone(),
                gate: gate.clone(),
                fleet,
                cluster: cluster.clone(),
            });
            let http_shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = http::serve(http_listener, state, http_shutdown).await {
                    tracing::error!(error = %e, "http listener failed");
                }
            });
        }
        if options.print {
            let tail = Tail::at_end(&store)?;
            sinks.push(tokio::spawn(live::run(tail, Arc::new(Print), commits, sinks_stop)));
        }
        let hub = Arc::new(Hub::new(
            config,
            identity,
            bindings,
            store.clone(),
            cluster,
            sessions,
            descriptors,
        ));
        let served = server::run(listener, hub, gate, shutdown).await;
        tracing::info!("shutting down: sessions closed, delivering what is stored");
        store.close();
        let _ = stop_sinks.send(true);
        let flush = async {
            for sink in sinks {
                let _ = sink.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_FLUSH, flush).await.is_err() {
            tracing::warn!(
                "sinks did not deliver everything within {SHUTDOWN_FLUSH:?}; the rest stays in the store and is sent at the next start"
            );
        }
        Ok(served?)
    }
}
