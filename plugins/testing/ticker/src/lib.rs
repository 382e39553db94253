//! Test collector `ticker`: one sample per collect whose counter `n` goes
//! up by exactly one each call, kept in the persisted state so it carries
//! on after a restart. Delivery tests check that every `n` reached the
//! store, once.

use wasmtap_collector::bindings::wasmtap::collector::types::Number;
use wasmtap_collector::{Descriptor, Guest, Sample, Schema, state};

struct Ticker;

impl Guest for Ticker {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.counter("n", "", "Calls so far, across restarts");
        s.into_descriptor("ticker", env!("CARGO_PKG_VERSION"), 100)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let n = state::get_numbers("n").and_then(|v| v.first().copied()).unwrap_or(0.0) + 1.0;
        state::set_numbers("n", &[n])?;
        Ok(vec![Sample {
            labels: vec![],
            numbers: vec![Number { field: 0, value: n }],
            texts: vec![],
        }])
    }
}

wasmtap_collector::export!(Ticker);
