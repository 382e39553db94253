//! # wasmtap-collector
//!
//! Write wasmtap metric collectors in Rust. A collector is a WebAssembly
//! component (target `wasm32-wasip2`) that implements [`Guest`]: it declares
//! its fields once in `describe`, and returns samples from `collect`.
//!
//! ## Module map
//! - [`bindings`]: the generated bindings of the `wasmtap:collector` WIT world.
//! - [`schema`]: declare fields and get typed handles ([`Gauge`], [`Counter`], [`TextField`]).
//! - [`sample`]: build samples with those handles ([`SampleBuilder`]).
//! - [`log`]: write to the agent's log.
//! - [`filesystem`]: how full a filesystem is (statvfs, inside the grants).
//! - [`state`]: persisted key-value state, counter rates, rates of named series.
//! - [`config`]: reading the manifest's `[config]` values passed to `init`.
//! - [`procfs`]: reading `/proc` and `/sys` files and directories in one host call
//!   each (the `files` import), and parsing them with errors, not panics.
//!
//! ## Example
//! ```ignore
//! use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema};
//!
//! struct Uptime;
//!
//! fn schema() -> (Schema, Gauge) {
//!     let mut s = Schema::new();
//!     let up = s.gauge("uptime", "seconds", "Time since boot");
//!     (s, up)
//! }
//!
//! impl Guest for Uptime {
//!     fn describe() -> Descriptor {
//!         schema().0.into_descriptor("uptime", env!("CARGO_PKG_VERSION"), 10_000)
//!     }
//!     fn init(_config: Vec<(String, String)>) -> Result<(), String> { Ok(()) }
//!     fn collect() -> Result<Vec<Sample>, String> {
//!         let (_, up) = schema();
//!         let text = std::fs::read_to_string("/proc/uptime").map_err(|e| e.to_string())?;
//!         let secs = text.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
//!         Ok(vec![SampleBuilder::new().gauge(up, secs).build()])
//!     }
//! }
//!
//! wasmtap_collector::export!(Uptime);
//! ```

pub mod bindings {
    //! Generated from `wit/collector.wit`.
    wit_bindgen::generate!({
        path: "../../wit",
        world: "collector",
        pub_export_macro: true,
        default_bindings_module: "wasmtap_collector::bindings",
    });
}

pub mod config;
pub mod filesystem;
pub mod log;
pub mod procfs;
pub mod sample;
pub mod schema;
pub mod state;

pub use bindings::Guest;
pub use bindings::export;
pub use bindings::wasmtap::collector::types::{Descriptor, Field, FieldKind, Sample};
pub use sample::SampleBuilder;
pub use schema::{Counter, Gauge, Numeric, Schema, TextField};
