//! Test collector `noop`: one gauge, always 1, and no other work: no file
//! reads, no state, no allocation beyond the returned sample. Six of them
//! in `cargo xtask footprint` show what the agent spends per call apart
//! from a collector's own work (instantiation is once, at load; each tick
//! is one call into the instance, its epoch deadline, the sample's checks
//! and its encoding).
//!
//! An agent refuses two collectors of one name, so the name comes from the
//! first granted environment variable whose name starts with `NOOP_NAME`
//! (`noop` without one): each copy's manifest grants a different variable.

use wasmtap_collector::{Descriptor, Guest, Sample, SampleBuilder, Schema};

struct Noop;

fn schema() -> (Schema, wasmtap_collector::Gauge) {
    let mut s = Schema::new();
    let up = s.gauge("up", "", "Always 1");
    (s, up)
}

impl Guest for Noop {
    fn describe() -> Descriptor {
        let name = std::env::vars()
            .find(|(k, _)| k.starts_with("NOOP_NAME"))
            .map_or_else(|| "noop".to_owned(), |(_, v)| v);
        schema().0.into_descriptor(&name, env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, up) = schema();
        Ok(vec![SampleBuilder::new().gauge(up, 1.0).build()])
    }
}

wasmtap_collector::export!(Noop);
