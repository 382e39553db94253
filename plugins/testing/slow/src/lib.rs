//! Test collector `slow`: sleeps `[config] millis` (default 1500) in every
//! collect, then reports how long it slept. Control-request tests use it
//! for a request that takes a while (`run slow`) while data keeps flowing.

use std::cell::Cell;
use std::time::{Duration, Instant};

use wasmtap_collector::bindings::wasmtap::collector::types::Number;
use wasmtap_collector::{Descriptor, Guest, Sample, Schema, config};

thread_local! {
    static MILLIS: Cell<u64> = const { Cell::new(1_500) };
}

struct Slow;

impl Guest for Slow {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("slept_ms", "ms", "How long the last collect slept");
        s.into_descriptor("slow", env!("CARGO_PKG_VERSION"), 60_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["millis"])?;
        let millis = config::number(&config, "millis", 1_500, 0..=60_000)?;
        MILLIS.with(|m| m.set(millis));
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(MILLIS.with(Cell::get)));
        let slept = started.elapsed().as_secs_f64() * 1e3;
        Ok(vec![Sample {
            labels: vec![],
            numbers: vec![Number { field: 0, value: slept }],
            texts: vec![],
        }])
    }
}

wasmtap_collector::export!(Slow);
