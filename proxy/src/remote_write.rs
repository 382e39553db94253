//! The remote-write sink: pushes every stored numeric value to a
//! Prometheus remote-write 1.0 endpoint (Prometheus, Mimir, Thanos,
//! VictoriaMetrics, …).
//!
//! [`RemoteWrite::accept`] copies values into a bounded queue (a full queue
//! drops new values, counted and logged); [`RemoteWrite::run`] is the worker
//! that takes batches off it and sends them. 5xx, 429 and network errors are
//! retried with exponential backoff and jitter until they succeed (meanwhile
//! the queue fills and then drops); a longer `Retry-After` on the response
//! is honoured (up to [`MAX_RETRY_AFTER`]). Any other 4xx drops the
//! batch, counted and logged. The counters appear on `/metrics`.

mod wire;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use tokio::sync::{Notify, watch};
use wasmtap_protocol::message::Value;

pub use wire::Point;

use crate::config::RemoteWriteConfig;
use crate::exposition::{self, Kind};
use crate::http_client::{Client, ClientError};
use crate::series;
use crate::sink::Sink;
use crate::store::StoredBatch;

/// Drops are logged at most this often per endpoint (with running totals).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Longest `Retry-After` obeyed; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How much of an error response body is logged.
const LOGGED_BODY: usize = 256;

/// Counters of one endpoint, since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Values accepted by the endpoint.
    pub sent: AtomicU64,
    /// Values dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Values dropped because the endpoint refused them (4xx other than 429).
    pub dropped_rejected: AtomicU64,
    /// Values still queued when the proxy stopped.
    pub dropped_shutdown: AtomicU64,
    /// Request attempts that were retried.
    pub retries: AtomicU64,
}

#[derive(Debug)]
struct Queue {
    points: VecDeque<Point>,
    last_drop_log: Option<Instant>,
}

/// One remote-write endpoint: its queue, worker state and counters.
#[derive(Debug)]
pub struct RemoteWrite {
    config: RemoteWriteConfig,
    /// The endpoint without path or query, for logs and labels.
    origin: String,
    queue: Mutex<Queue>,
    wake: Notify,
    stats: Stats,
}

enum Outcome {
    Sent,
    Rejected(StatusCode, String),
    /// Try again, after the server's `Retry-After` if it sent one.
    Retry(String, Option<Duration>),
}

fn sorted_labels(
    project: &str,
    agent: &str,
    s: &wasmtap_protocol::message::Sample,
) -> Arc<[(String, String)]> {
    let mut labels = series::labels(project, agent, s);
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    labels.into()
}

impl RemoteWrite {
    /// An endpoint with an empty queue; start [`RemoteWrite::run`] to send.
    pub fn new(config: RemoteWriteConfig) -> Arc<Self> {
        let origin = match (config.url.scheme_str(), config.url.authority()) {
            (Some(scheme), Some(a)) => format!("{scheme}://{a}"),
            _ => config.url.to_string(),
        };
        Arc::new(Self {
            queue: Mutex::new(Queue {
                points: VecDeque::with_capacity(config.batch_size),
                last_drop_log: None,
            }),
            config,
            origin,
            wake: Notify::new(),
            stats: Stats::default(),
        })
    }

    /// This endpoint's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends batches until `shutdown` flips, then makes one attempt to send
    /// what is still queued.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut client = match Client::new(&self.config.url, self.config.tls.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(endpoint = %self.origin, error = %e, "remote write disabled");
                return;
            }
        };
        tracing::info!(endpoint = %self.origin, "remote write started");
        loop {
            let stopping = self.wait_for_batch(&mut shutdown).await;
            loop {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                if stopping {
                    if !matches!(self.attempt(&mut client, &batch).await, Outcome::Sent) {
                        self.count(&self.stats.dropped_shutdown, batch.len());
                    }
                    continue;
                }
                self.send(&mut client, &batch, &mut shutdown).await;
                if self.lock().points.len() < self.config.batch_size {
                    break;
                }
            }
            if stopping {
                let lost = self.stats.dropped_shutdown.load(Ordering::Relaxed);
                if lost > 0 {
                    tracing::warn!(endpoint = %self.origin, values = lost, "remote write stopped with unsent values");
                }
                return;
            }
        }
    }

    /// Waits until a batch is due: `batch_size` values are queued, or the
    /// oldest has waited `batch_wait`. Returns whether the proxy is stopping.
    async fn wait_for_batch(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        while self.lock().points.is_empty() {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return true,
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.batch_wait;
        while self.lock().points.len() < self.config.batch_size {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => return true,
            }
        }
        *shutdown.borrow()
    }

    fn take_batch(&self) -> Vec<Point> {
        let mut q = self.lock();
        let n = q.points.len().min(self.config.batch_size);
        q.points.drain(..n).collect()
    }

    fn count(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Sends `batch`, retrying retryable failures until success or shutdown.
    async fn send(
        &self,
        client: &mut Client,
        batch: &[Point],
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut backoff = self.config.min_backoff;
        let mut failures = 0u32;
        loop {
            match self.attempt(client, batch).await {
                Outcome::Sent => {
                    if failures > 0 {
                        tracing::info!(endpoint = %self.origin, failures, "remote write recovered");
                    }
                    return;
                }
                Outcome::Rejected(status, body) => {
                    self.count(&self.stats.dropped_rejected, batch.len());
                    tracing::warn!(endpoint = %self.origin, %status, response = %body, values = batch.len(), "remote write refused a batch; dropped");
                    return;
                }
                Outcome::Retry(why, asked) => {
                    failures += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    // The server's wait, but never less than the backoff
                    // (a `Retry-After: 0` must not make a tight loop).
                    let delay = asked.map_or_else(
                        || jitter(backoff),
                        |d| d.max(jitter(backoff)).min(MAX_RETRY_AFTER),
                    );
                    if failures == 1 || backoff == self.config.max_backoff {
                        tracing::warn!(endpoint = %self.origin, error = %why, failures, retry_in = ?delay, "remote write failed; retrying");
                    } else {
                        tracing::debug!(endpoint = %self.origin, error = %why, failures, retry_in = ?delay, "remote write failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {
                            self.count(&self.stats.dropped_shutdown, batch.len());
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn attempt(&self, client: &mut Client, batch: &[Point]) -> Outcome {
        let request = match self.request(batch) {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match client.send(request, self.config.timeout).await {
            Ok(r) if r.status.is_success() => {
                self.count(&self.stats.sent, batch.len());
                Outcome::Sent
            }
            Ok(r) => {
                let mut body = String::from_utf8_lossy(&r.body).into_owned();
                if let Some((cut, _)) = body.char_indices().nth(LOGGED_BODY) {
                    body.truncate(cut);
                }
                if r.status.is_server_error() || r.status == StatusCode::TOO_MANY_REQUESTS {
                    Outcome::Retry(format!("{}: {body}", r.status), r.retry_after)
                } else {
                    Outcome::Rejected(r.status, body)
                }
            }
            Err(e @ (ClientError::Url(_) | ClientError::Body(_))) => {
                Outcome::Rejected(StatusCode::BAD_REQUEST, e.to_string())
            }
            Err(e) => Outcome::Retry(e.to_string(), None),
        }
    }

    fn request(&self, batch: &[Point]) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let path = self.config.url.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(USER_AGENT, concat!("wasmtap-proxy/", env!("CARGO_PKG_VERSION")))
            .header("X-Prometheus-Remote-Write-Version", HeaderValue::from_static("0.1.0"));
        for (name, value) in &self.config.headers {
            builder = builder.header(name, value.0.clone());
        }
        builder.body(Full::new(Bytes::from(wire::body(batch))))
    }

    fn endpoint_label(&self) -> [(String, String); 1] {
        [("endpoint".to_owned(), self.origin.clone())]
    }
}

type Getter = fn(&RemoteWrite) -> u64;

/// The remote-write counters of every endpoint, as exposition families.
pub fn render_families(endpoints: &[Arc<RemoteWrite>], out: &mut String) {
    if endpoints.is_empty() {
        return;
    }
    let families: [(&str, &str, Kind, Getter); 3] = [
        (
            "wasmtap_proxy_remote_write_sent_total",
            "Values accepted by the remote-write endpoint.",
            Kind::Counter,
            |e| e.stats.sent.load(Ordering::Relaxed),
        ),
        (
            "wasmtap_proxy_remote_write_retries_total",
            "Remote-write request attempts retried.",
            Kind::Counter,
            |e| e.stats.retries.load(Ordering::Relaxed),
        ),
        (
            "wasmtap_proxy_remote_write_queued",
            "Values waiting in the remote-write queue.",
            Kind::Gauge,
            |e| e.lock().points.len() as u64,
        ),
    ];
    for (name, help, kind, get) in families {
        exposition::family(out, name, help, kind);
        for e in endpoints {
            exposition::sample(out, name, &e.endpoint_label(), get(e) as f64, None);
        }
    }
    let name = "wasmtap_proxy_remote_write_dropped_total";
    exposition::family(out, name, "Values dropped, by reason.", Kind::Counter);
    for e in endpoints {
        for (reason, n) in [
            ("queue_full", &e.stats.dropped_queue_full),
            ("rejected", &e.stats.dropped_rejected),
            ("shutdown", &e.stats.dropped_shutdown),
        ] {
            let [endpoint] = e.endpoint_label();
            let labels = [endpoint, ("reason".to_owned(), reason.to_owned())];
            exposition::sample(out, name, &labels, n.load(Ordering::Relaxed) as f64, None);
        }
    }
}

/// A delay between `backoff / 2` and `backoff`, uniformly.
fn jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let extra = rand::random_range(0..=half.as_micros().min(u128::from(u64::MAX)) as u64);
    half + Duration::from_micros(extra)
}

impl Sink for RemoteWrite {
    fn accept(&self, project: &str, record: &StoredBatch) {
        let mut dropped = 0usize;
        let mut q = self.lock();
        for sample in &record.batch.samples {
            let labels = sorted_labels(project, &record.agent, sample);
            let time_ms = i64::try_from(sample.time_ms).unwrap_or(i64::MAX);
            for (field, value) in &sample.values {
                let value = match value {
                    Value::Gauge(v) | Value::Counter(v) => *v,
                    Value::Text(_) => continue,
                };
                if q.points.len() >= self.config.queue_capacity {
                    dropped += 1;
                    continue;
                }
                let name = series::metric_name(&sample.collector, field).into();
                q.points.push_back(Point { name, labels: labels.clone(), value, time_ms });
            }
        }
        if dropped > 0 {
            let total = self.stats.dropped_queue_full.fetch_add(dropped as u64, Ordering::Relaxed)
                + dropped as u64;
            let now = Instant::now();
            if q.last_drop_log.is_none_or(|t| now.duration_since(t) >= DROP_LOG_INTERVAL) {
                q.last_drop_log = Some(now);
                tracing::warn!(endpoint = %self.origin, capacity = self.config.queue_capacity, dropped_total = total, "remote-write queue full: values dropped");
            }
        }
        drop(q);
        self.wake.notify_one();
    }
}
