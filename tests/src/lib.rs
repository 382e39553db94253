//! # wasmtap-tests
//!
//! End-to-end test harness: starts real `wasmtap-proxy` and `wasmtap`
//! processes on `127.0.0.1` with real collectors compiled by
//! `cargo xtask plugins`, and reads back what the proxy stored.
//!
//! ## Module map
//! - [`paths`]: where the binaries and compiled collectors are.
//! - [`proxy`]: a running proxy process with its config and store.
//! - [`agent`]: a running agent process with its own plugins dir.
//! - [`ctl`]: control requests to an agent through a proxy (its own counters).
//! - [`df`]: what `df` says of a filesystem, to compare usage with.
//! - [`component`]: collector components assembled from hand-written WAT.
//! - [`relay`]: a recording TCP relay for black-box wire checks.
//! - [`outage`]: a TCP forwarder that can be taken down and brought back (backend outages).
//! - [`tmpfs`]: a small tmpfs for a disk that fills up.
//! - [`ticks`]: what the `ticker` collector's counts say about delivery, and gaps in it.
//! - [`http`]: a tiny independent HTTP client for the proxy's listener and Prometheus.
//! - [`prometheus`]: a real Prometheus server with its remote-write receiver on.
//! - [`pki`]: a throwaway certificate authority and server certificate for TLS tests.
//! - [`spool`]: an agent's spooled batches, read from its files.
//! - [`wait`]: polling helpers with deadlines.

pub mod agent;
pub mod component;
pub mod ctl;
pub mod df;
pub mod http;
pub mod nats;
pub mod outage;
pub mod paths;
pub mod pki;
pub mod prometheus;
pub mod proxy;
pub mod relay;
pub mod spool;
pub mod ticks;
pub mod tmpfs;
pub mod wait;

pub use agent::Agent;
pub use nats::NatsCluster;
pub use paths::plugin;
pub use prometheus::Prometheus;
pub use proxy::Proxy;

use wasmtap_protocol::access_key::{AccessKey, ProjectId};

/// A fresh access key for `project`, as text.
pub fn new_key(project: &str) -> anyhow::Result<String> {
    let id = ProjectId::new(project)?;
    Ok(AccessKey::generate(id, &mut rand::rng()).to_key_string().to_string())
}
