//! The remote-write sink: pushes every stored numeric value to a
//! Prometheus remote-write 1.0 endpoint (Prometheus, Mimir, Thanos,
//! VictoriaMetrics, …).
//!
//! Each endpoint tails the store with a [`Follower`]: it reads what the
//! store committed, sends it in batches ([`endpoint`]: the request, the
//! answers) and keeps its position in `<data_dir>/_sinks/remote-write-<id>.pos`,
//! saved only once the endpoint took a batch. Nothing waits in memory: a
//! backend outage, a proxy restart or a kill -9 only delays delivery (up to
//! the store's retention). A newly configured endpoint starts with what is
//! stored from then on. The counters and the lag appear on `/metrics`.

pub mod endpoint;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::tail::follow::MAX_RETRY_AFTER;
pub use endpoint::{Endpoint, Point};

use crate::config::RemoteWriteConfig;
use crate::descriptors::Descriptors;
use crate::exposition::{self, Kind};
use crate::http_client::{Client, ClientError};
use crate::store::Store;
use crate::tail::TailError;
use crate::tail::follow::{Follower, Settings};
use crate::tail::progress::Progress;

/// Counters of one endpoint, since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Values accepted by the endpoint.
    pub sent: AtomicU64,
    /// Values dropped because the endpoint refused them (4xx other than 429).
    pub dropped_rejected: AtomicU64,
    /// Request attempts that were retried.
    pub retries: AtomicU64,
}

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteWriteError {
    /// The URL cannot be used.
    #[error("remote write {0}")]
    Client(#[from] ClientError),
    /// Its position file cannot be read or made.
    #[error(transparent)]
    Tail(#[from] TailError),
}

/// What `/metrics` shows of one endpoint.
#[derive(Debug)]
pub struct RemoteWrite {
    /// The endpoint without path or query, for logs and labels.
    origin: String,
    stats: Stats,
    progress: Arc<Progress>,
    /// Fed from the cluster's stream rather than this proxy's store, so
    /// the store's lag says nothing of it.
    clustered: std::sync::atomic::AtomicBool,
}

/// The name of the endpoint's position file: stable for a URL.
fn file_name(config: &RemoteWriteConfig) -> String {
    format!("remote-write-{:08x}", crc32fast::hash(config.url.to_string().as_bytes()))
}

impl RemoteWrite {
    /// The endpoint of `config` following `store`, naming series from
    /// `descriptors`: run the follower (`follower.run(stop)`) to deliver.
    pub fn open(
        store: &Store,
        config: RemoteWriteConfig,
        descriptors: Arc<Descriptors>,
    ) -> Result<(Arc<Self>, Follower<Endpoint>), RemoteWriteError> {
        let name = format!("remote write {}", config.url);
        let (shared, backend, settings, file) = Self::backend(store, config, descriptors)?;
        let progress = shared.progress.clone();
        let follower = Follower::open(store, &name, &file, backend, settings, progress)?;
        tracing::info!(endpoint = %shared.origin, "remote write started");
        Ok((shared, follower))
    }

    /// The endpoint of `config` as a backend, without a follower: its
    /// counters, the backend, its settings, and the name of its position
    /// (`remote-write-<id>`, stable for a URL).
    pub fn backend(
        store: &Store,
        config: RemoteWriteConfig,
        descriptors: Arc<Descriptors>,
    ) -> Result<(Arc<Self>, Endpoint, Settings, String), RemoteWriteError> {
        let origin = match (config.url.scheme_str(), config.url.authority()) {
            (Some(scheme), Some(a)) => format!("{scheme}://{a}"),
            _ => config.url.to_string(),
        };
        let client = Client::new(&config.url, config.tls.as_ref())?;
        let settings = Settings {
            batch_size: config.batch_size,
            batch_wait: config.batch_wait,
            min_backoff: config.min_backoff,
            max_backoff: config.max_backoff,
        };
        let progress = Arc::new(Progress::new(store.commits().clone()));
        let shared = Arc::new(Self {
            origin,
            stats: Stats::default(),
            progress,
            clustered: Default::default(),
        });
        let file = file_name(&config);
        let names = Default::default();
        let backend = Endpoint { shared: shared.clone(), config, client, descriptors, names };
        Ok((shared, backend, settings, file))
    }

    /// This endpoint's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How far behind the store this endpoint is.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Marks the endpoint as fed from the cluster's stream: `/metrics`
    /// shows no store lag for it.
    pub fn set_clustered(&self) {
        self.clustered.store(true, Ordering::Relaxed);
    }
}

type Getter = fn(&RemoteWrite) -> f64;

/// The counters and lag of every endpoint, as exposition families.
pub fn render_families(endpoints: &[Arc<RemoteWrite>], out: &mut exposition::Exposition) {
    if endpoints.is_empty() {
        return;
    }
    let now_ms = crate::now_ms();
    let families: [(&str, &str, Kind, Getter); 2] = [
        (
            "wasmtap_proxy_remote_write_sent_total",
            "Values accepted by the remote-write endpoint.",
            Kind::Counter,
            |e| e.stats.sent.load(Ordering::Relaxed) as f64,
        ),
        (
            "wasmtap_proxy_remote_write_retries_total",
            "Remote-write request attempts retried.",
            Kind::Counter,
            |e| e.stats.retries.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, help, kind, get) in families {
        exposition::family(out, name, help, kind);
        for e in endpoints {
            let labels = [("endpoint".to_owned(), e.origin.clone())];
            exposition::sample(out, name, &labels, get(e), None);
        }
    }
    let name = "wasmtap_proxy_remote_write_dropped_total";
    let help = "Values dropped, by reason (rejected: refused for good by the endpoint, 4xx other than 429).";
    exposition::family(out, name, help, Kind::Counter);
    for e in endpoints {
        let labels = [
            ("endpoint".to_owned(), e.origin.clone()),
            ("reason".to_owned(), "rejected".to_owned()),
        ];
        let dropped = e.stats.dropped_rejected.load(Ordering::Relaxed) as f64;
        exposition::sample(out, name, &labels, dropped, None);
    }
    let endpoints: Vec<&Arc<RemoteWrite>> =
        endpoints.iter().filter(|e| !e.clustered.load(Ordering::Relaxed)).collect();
    let endpoints = endpoints.as_slice();
    if endpoints.is_empty() {
        return;
    }
    let sink = |e: &RemoteWrite| {
        [("sink".to_owned(), "remote_write".to_owned()), ("endpoint".to_owned(), e.origin.clone())]
    };
    let name = "wasmtap_proxy_sink_lag_values";
    let help = "Numeric values stored and not yet delivered by the sink.";
    exposition::family(out, name, help, Kind::Gauge);
    for e in endpoints {
        exposition::sample(out, name, &sink(e), e.progress.lag_values() as f64, None);
    }
    let name = "wasmtap_proxy_sink_lag_seconds";
    let help = "Age of the oldest stored value the sink has not delivered yet.";
    exposition::family(out, name, help, Kind::Gauge);
    for e in endpoints {
        exposition::sample(out, name, &sink(e), e.progress.lag_seconds(now_ms), None);
    }
    let name = "wasmtap_proxy_sink_skipped_total";
    let help = "What the sink's reader of the store passed over: damaged bytes, unreadable records, segments deleted by retention first.";
    exposition::family(out, name, help, Kind::Counter);
    for e in endpoints {
        for (what, n) in e.progress.skips() {
            let mut labels = sink(e).to_vec();
            labels.push(("what".to_owned(), what.to_owned()));
            exposition::sample(out, name, &labels, n as f64, None);
        }
    }
}
