//! Test collector `panic`: well behaved in `describe` and `init`, then
//! panics in `collect` (a trap, for the host).

use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct Panic;

impl Guest for Panic {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Never reported: collect panics");
        s.into_descriptor("panic", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        panic!("the panic test collector panics in collect, on purpose");
    }
}

wasmtap_collector::export!(Panic);
