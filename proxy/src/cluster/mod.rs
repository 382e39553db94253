//! Proxies over a NATS JetStream cluster (`[cluster]` in `proxy.toml`).
//!
//! A batch is published to the stream (subject per project and agent,
//! message id `project/agent/seq`) and acknowledged to the agent only once
//! JetStream confirms the replicated write; a confirmation that says
//! *duplicate* (the batch came before, through this proxy or another) is
//! acknowledged without storing it again. Each proxy's embedded store is
//! then fed from the stream by a durable consumer of its own ([`feed`]),
//! so every proxy holds the cluster's batches, each once, and resumes
//! where it stopped after a restart or an outage.
//!
//! While JetStream cannot confirm (NATS down, no quorum), batches fail
//! with [`StoreError::Unconfirmed`]: the session ends unacknowledged and
//! the agent keeps them in its spool and sends them again.
//!
//! - [`subject`]: subjects and message ids.
//! - [`catalog`]: the fleet catalog, shared by the proxies.
//! - [`feed`]: the durable consumer feeding the local store.
//! - [`control`]: the agents list and control requests across proxies.
//! - [`payload`]: a batch as a message: the store's record, compressed.
//! - [`own`]: batches this proxy published, stored from memory.
//! - [`lease`]: work one proxy of the cluster does at a time.
//! - [`remote`]: remote write fed once for the cluster, from the stream.

pub mod catalog;
pub mod control;
pub mod feed;
pub mod lease;
pub mod own;
pub mod payload;
pub mod remote;
pub mod subject;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use tokio::sync::oneshot;
use wasmtap_protocol::access_key::ProjectId;

use crate::config::{ClusterConfig, NatsAuth};
use crate::exposition::{self, Exposition, Kind};
use crate::store::{Appended, Receipt, StoreError, StoredBatch};

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A credentials file could not be read.
    #[error("[cluster] credentials_file {path}: {source}")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The client refused the settings.
    #[error("[cluster]: cannot connect to NATS: {0}")]
    Connect(String),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Batches JetStream confirmed as new.
    pub confirmed: AtomicU64,
    /// Batches JetStream confirmed as already stored.
    pub duplicates: AtomicU64,
    /// Batches JetStream did not confirm.
    pub unconfirmed: AtomicU64,
    /// Whether JetStream answers: set by the last publish, and by the
    /// feed when it reaches the stream or loses it.
    pub confirming: AtomicBool,
    /// Batches the feed put into the local store (new ones only).
    pub fed: AtomicU64,
}

impl ClusterStats {
    /// Writes the cluster's families to `/metrics`.
    pub fn render(&self, out: &mut Exposition) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let name = "wasmtap_proxy_cluster_confirming";
        let help = "1 while JetStream confirms batches, 0 while it does not (nothing is acknowledged to agents then).";
        exposition::family(out, name, help, Kind::Gauge);
        let confirming = f64::from(u8::from(self.confirming.load(Ordering::Relaxed)));
        exposition::sample(out, name, &[], confirming, None);
        let name = "wasmtap_proxy_cluster_batches_total";
        let help = "Batches published to JetStream, by its answer (stored, duplicate: stored before; unconfirmed: no answer, the agent sends it again).";
        exposition::family(out, name, help, Kind::Counter);
        for (result, n) in [
            ("stored", &self.confirmed),
            ("duplicate", &self.duplicates),
            ("unconfirmed", &self.unconfirmed),
        ] {
            let labels = [("result".to_owned(), result.to_owned())];
            exposition::sample(out, name, &labels, get(n), None);
        }
        let name = "wasmtap_proxy_cluster_fed_batches_total";
        let help = "Batches of the cluster's stream copied into this proxy's store.";
        exposition::family(out, name, help, Kind::Counter);
        exposition::sample(out, name, &[], get(&self.fed), None);
    }
}

/// Where a session's batches stand in the order they go to the stream
/// (see [`Cluster::submit`]); one per session.
#[derive(Debug, Default)]
pub struct Order(Option<oneshot::Receiver<()>>);

/// The proxy's link to the cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    config: Arc<ClusterConfig>,
    js: jetstream::Context,
    stats: Arc<ClusterStats>,
    /// With a local store: the batches this proxy published, which the
    /// feed takes from memory.
    own: Option<Arc<own::Own>>,
}

impl Cluster {
    /// Connects to NATS (in the background: the proxy starts whether or
    /// not NATS is up, and reconnects for as long as it runs).
    pub async fn connect(config: ClusterConfig) -> Result<Self, ClusterError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("wasmtap-proxy {}", config.name))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection");
            });
        options = match &config.auth {
            NatsAuth::None => options,
            NatsAuth::CredentialsFile(p) => options
                .credentials_file(p)
                .await
                .map_err(|source| ClusterError::Credentials { path: p.clone(), source })?,
            NatsAuth::NkeySeedFile(p) => {
                let seed = std::fs::read_to_string(p)
                    .map_err(|source| ClusterError::Credentials { path: p.clone(), source })?;
                options.nkey(seed.trim().to_owned())
            }
            NatsAuth::UserPassword(u, p) => options.user_and_password(u.clone(), p.to_string()),
            NatsAuth::Token(t) => options.token(t.to_string()),
        };
        if config.tls.required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &config.tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &config.tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let urls: Vec<async_nats::ServerAddr> = config
            .nats
            .iter()
            .map(|u| u.parse().map_err(|e| ClusterError::Connect(format!("{u}: {e}"))))
            .collect::<Result<_, _>>()?;
        let client =
            options.connect(urls).await.map_err(|e| ClusterError::Connect(e.to_string()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.confirm_timeout)
            .ack_timeout(config.confirm_timeout)
            .build(client);
        Ok(Self { config: Arc::new(config), js, stats: Arc::default(), own: None })
    }

    /// Hands the batches this proxy publishes to `store` from memory as
    /// soon as JetStream confirms them, for the feed to take (see [`own`]).
    #[must_use]
    pub fn with_store(mut self, store: Arc<crate::store::Store>) -> Self {
        self.own = Some(own::Own::new(store));
        self
    }

    /// The batches this proxy published and its feed has not read yet.
    pub fn own(&self) -> Option<&Arc<own::Own>> {
        self.own.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The NATS client.
    pub fn client(&self) -> async_nats::Client {
        self.js.client()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ClusterStats> {
        &self.stats
    }

    /// The stream's settings as `[cluster]` asks for them.
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![subject::all_batches(&self.config.stream)],
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: self.config.max_age.unwrap_or_default(),
            max_bytes: self.config.max_bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            ..Default::default()
        }
    }

    /// The stream, created when missing (and its settings brought to
    /// `[cluster]`'s when it exists).
    pub async fn stream(&self) -> Result<stream::Stream, String> {
        let config = self.stream_config();
        self.js.create_or_update_stream(config).await.map_err(|e| e.to_string())?;
        self.js.get_stream(&self.config.stream).await.map_err(|e| e.to_string())
    }

    /// Publishes `record` of `project` and answers once JetStream confirmed it.
    ///
    /// `order` keeps one session's batches in the stream in the order they
    /// came (remote-write backends refuse a series' samples out of order):
    /// the batch is handed to the connection only once the session's
    /// previous one was, while confirmations are awaited side by side.
    pub fn submit(
        &self,
        project: &ProjectId,
        record: Arc<StoredBatch>,
        order: &mut Order,
    ) -> Receipt {
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let project = project.clone();
        let (sent, after) = oneshot::channel();
        let before = order.0.replace(after);
        tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let registered = this.own.as_ref().and_then(own::Own::register);
            let (origin, registered) = registered.unzip();
            let result = this.publish(&project, &record, origin, sent).await;
            if let Some(registered) = registered {
                match result {
                    Ok(Appended::Stored) => registered.stored(&project, record),
                    _ => registered.not_stored(),
                }
            }
            let stats = &this.stats;
            match &result {
                Ok(Appended::Stored) => stats.confirmed.fetch_add(1, Ordering::Relaxed),
                Ok(Appended::Duplicate) => stats.duplicates.fetch_add(1, Ordering::Relaxed),
                Err(_) => stats.unconfirmed.fetch_add(1, Ordering::Relaxed),
            };
            let was = stats.confirming.swap(result.is_ok(), Ordering::Relaxed);
            match (&result, was) {
                (Err(e), true) => {
                    tracing::error!(error = %e, "JetStream does not confirm batches: nothing is acknowledged until it does; agents keep their spools")
                }
                (Ok(_), false) => tracing::info!("JetStream confirms batches again"),
                _ => {}
            }
            let _ = tx.send(result);
        });
        rx
    }

    async fn publish(
        &self,
        project: &ProjectId,
        record: &StoredBatch,
        origin: Option<String>,
        sent: oneshot::Sender<()>,
    ) -> Result<Appended, StoreError> {
        let unconfirmed = |e: &dyn std::fmt::Display| StoreError::Unconfirmed(e.to_string());
        let (mut headers, payload) = payload::encode(record).map_err(|e| unconfirmed(&e))?;
        if let Some(origin) = origin {
            headers.insert(own::ORIGIN, origin.as_str());
        }
        let subject = subject::batch(&self.config.stream, project, &record.agent);
        let id = subject::message_id(project, &record.agent, record.batch.seq);
        let publish = PublishMessage::build().headers(headers).payload(payload).message_id(id);
        let confirm = self.js.send_publish(subject, publish).await.map_err(|e| unconfirmed(&e));
        // The next batch of the session may go (whether this one went or not).
        drop(sent);
        let confirm = confirm?;
        let ack = confirm.await.map_err(|e| unconfirmed(&e))?;
        Ok(if ack.duplicate { Appended::Duplicate } else { Appended::Stored })
    }
}
