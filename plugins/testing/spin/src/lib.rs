//! Test collector `spin`: well behaved in `describe` and `init`, then loops
//! forever in `collect`. The host's call deadline must interrupt it.

use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct Spin;

impl Guest for Spin {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Never reported: collect never returns");
        s.into_descriptor("spin", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

wasmtap_collector::export!(Spin);
