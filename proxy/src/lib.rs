//! # wasmtap-proxy
//!
//! The wasmtap collection server. Agents connect over TCP (default port
//! 6600) and authenticate with their project's access key through the
//! handshake of [`wasmtap_protocol`]; the proxy decrypts their batches,
//! appends them to an embedded, crash-safe store and acknowledges them.
//!
//! ## Module map
//! - [`config`]: `proxy.toml`, validated: listen address, data dir, projects and keys.
//! - [`server`]: the listener and one task per agent session.
//! - [`store`]: append-only, checksummed log files per project.
//! - [`display`]: stored samples as human lines or JSON objects.
//!
//! ## Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let config = Arc::new(wasmtap_proxy::config::Config::load("proxy.toml".as_ref())?);
//! let store = Arc::new(wasmtap_proxy::store::Store::open(&config.data_dir)?);
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! wasmtap_proxy::server::run(listener, config, store, None, shutdown).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod config;
pub mod display;
pub mod server;
pub mod store;

/// Milliseconds since the Unix epoch; the proxy's one wall-clock read.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
