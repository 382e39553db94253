//! # wasmtap-host
//!
//! The wasmtap agent. It loads metric collectors (WebAssembly components)
//! from a plugins directory, runs each in a sandbox of its own on its
//! interval, checks what they return against the fields they declared, and
//! ships the samples over one encrypted session to a wasmtap proxy.
//!
//! ## Module map
//! - [`config`]: the agent's TOML config, validated.
//! - [`manifest`]: per-collector manifests: interval, deadline, memory, grants.
//! - [`runtime`]: the wasmtime engine, sandboxes, and the collector instances.
//! - [`schema`]: declared-field enforcement on every sample.
//! - [`scheduler`]: one task per collector, calls on the blocking pool, restarts and quarantine.
//! - [`health`]: per-collector state and counters.
//! - [`signing`]: ed25519 signatures of collectors, an optional load policy.
//! - [`supervisor`]: loads the plugins dir in parallel and follows it (hot loading).
//! - [`control`]: control requests from the proxy (`info`, `run NAME`, `logs`, ...).
//! - [`fleet`]: collectors pushed by the proxy: received, checked, installed.
//! - [`selfwatch`]: the built-in `agent` collector: the agent's own health.
//! - [`stats`]: the agent's counters.
//! - [`logring`]: recent log lines kept for the `logs` request.
//! - [`spool`]: batches on disk until a proxy acknowledges them.
//! - [`uplink`]: batches into the spool, one session to a proxy, failover, acknowledgements.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`agent`]: wires it all together ([`agent::run`]).
//! - [`clock`]: the one place the agent reads the wall clock.
//!
//! ## Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = wasmtap_host::config::Config::load("agent.toml".as_ref())?;
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! wasmtap_host::agent::run(config, Default::default(), shutdown).await?;
//! # Ok(()) }
//! ```

// One audited exception: loading precompiled code from the compile cache
// (`runtime::cache`). Everything else is safe code.
#![deny(unsafe_code)]

pub mod agent;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod control;
pub mod fleet;
pub mod health;
pub mod logring;
pub mod manifest;
pub mod runtime;
pub mod scheduler;
pub mod schema;
pub mod selfwatch;
pub mod signing;
pub mod spool;
pub mod stats;
pub mod supervisor;
pub mod uplink;
