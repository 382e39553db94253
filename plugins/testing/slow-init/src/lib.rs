//! Test collector `slow-init`: `init` busy-loops for [`INIT_SECONDS`]
//! seconds, far past a normal call deadline; `describe` and `collect` are
//! well behaved (`collect` reports `value` = 1).

use std::time::{Duration, Instant};

use wasmtap_collector::{Descriptor, Guest, Sample, SampleBuilder, Schema};

struct SlowInit;

/// How long `init` spins.
pub const INIT_SECONDS: u64 = 2;

impl Guest for SlowInit {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Always 1");
        s.into_descriptor("slow-init", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < Duration::from_secs(INIT_SECONDS) {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let mut s = Schema::new();
        let value = s.gauge("value", "", "");
        Ok(vec![SampleBuilder::new().gauge(value, 1.0).build()])
    }
}

wasmtap_collector::export!(SlowInit);
