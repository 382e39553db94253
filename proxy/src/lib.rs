//! # wasmtap-proxy
//!
//! The wasmtap collection server. Agents connect over TCP (default port
//! 6600) and authenticate with their project's access key through the
//! handshake of [`wasmtap_protocol`]; the proxy decrypts their batches,
//! appends them to an embedded, crash-safe store and acknowledges them;
//! its sinks (`/metrics`, remote write) read them back from the store.
//!
//! ## Module map
//! - [`lifecycle`]: [`run`]: start, serve, graceful shutdown.
//! - [`config`]: `proxy.toml`, validated: listen address, data dir, projects and keys.
//! - [`server`]: the listener, the handshake under deadlines, admission of authenticated agents.
//! - `link`: one established session, a driver around the sans-IO `ProxyConn`.
//! - [`bindings`]: which identity owns which agent name, per project.
//! - [`inflight`]: a session's batches waiting for the store, acknowledged in order.
//! - [`gate`]: admission before authentication: caps and rates per source network, eviction of the oldest.
//! - [`sessions`]: connected agents and control requests routed to them.
//! - [`store`]: append-only, checksummed log files per project, deduplicated,
//!   compressed once closed, with retention.
//! - [`dedup`]: the batch sequence numbers each agent has had stored.
//! - [`query`]: the filters of `wasmtap-proxy query`, and reading them from the store.
//! - [`display`]: stored samples as human lines or JSON objects.
//! - [`tail`]: sinks read the store back, each from its own position.
//! - [`sink`]: the [`sink::Sink`] hook of in-memory consumers fed from the tail.
//! - [`series`]: Prometheus metric and label names for a sample's values.
//! - [`descriptors`]: the collectors' fields (unit, help) as agents describe them.
//! - [`latest`]: the sink holding the latest value of every series, for `/metrics`.
//! - [`exposition`]: the Prometheus text exposition format.
//! - [`remote_write`]: the sink pushing to Prometheus remote-write endpoints.
//! - [`http`]: the `[http]` listener: `/metrics`, `/healthz`, and [`admin`].
//! - [`admin`]: the bearer-token admin API under `/api/`.
//! - [`read_api`]: `GET /api/query`, stored values streamed as JSON lines.
//! - [`http_client`]: a small HTTP/1.1 client (remote write, `ctl`).
//! - [`tls`]: the trusted certificate authorities of `https://` remote write.
//! - [`ctl`]: the admin API client behind `wasmtap-proxy ctl` and `wasmtap-proxy collectors`.
//! - [`cluster`]: proxies over a NATS JetStream cluster: batches confirmed by JetStream, stores fed from its stream.
//! - [`fleet`]: collectors published once and delivered to every agent of a project, with canaries.
//!
//! ## Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = wasmtap_proxy::config::Config::load("proxy.toml".as_ref())?;
//! let (stop, shutdown) = tokio::sync::watch::channel(false);
//! // `stop.send(true)` shuts the proxy down gracefully.
//! # drop(stop);
//! wasmtap_proxy::run(config, shutdown).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod bindings;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod dedup;
pub mod descriptors;
pub mod display;
pub mod exposition;
pub mod fleet;
pub mod gate;
pub mod http;
pub mod http_client;
pub mod inflight;
pub mod latest;
pub mod lifecycle;
mod link;
pub mod query;
pub mod read_api;
pub mod remote_write;
pub mod series;
pub mod server;
pub mod sessions;
pub mod sink;
pub mod store;
pub mod tail;
pub mod tls;

pub use lifecycle::{Bound, Options, RunError, bind, run};

/// Milliseconds since the Unix epoch; the proxy's one wall-clock read.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
