//! Test collector `sleeper`: well behaved in `describe` and `init`, then
//! sleeps 30 s in every `collect` (`std::thread::sleep`, which waits in
//! the host's WASI poll, not in wasm). Its manifest allows 100 ms.

use std::time::Duration;

use wasmtap_collector::bindings::wasmtap::collector::types::Number;
use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

/// How long `collect` sleeps.
pub const SLEEP: Duration = Duration::from_secs(30);

struct Sleeper;

impl Guest for Sleeper {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("slept_ms", "ms", "How long collect slept (only if it was not cut off)");
        s.into_descriptor("sleeper", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        std::thread::sleep(SLEEP);
        Ok(vec![Sample {
            labels: vec![],
            numbers: vec![Number { field: 0, value: SLEEP.as_secs_f64() * 1e3 }],
            texts: vec![],
        }])
    }
}

wasmtap_collector::export!(Sleeper);
