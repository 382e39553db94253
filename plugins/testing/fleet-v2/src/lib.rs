//! Test collector `fleet`, version 2.0.0: loads and describes itself like
//! version 1 (`testing/fleet-v1`), then traps in every collect: the broken
//! release a canary must catch.

use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct Fleet;

impl Guest for Fleet {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("version", "", "The major version of this collector");
        s.into_descriptor("fleet", "2.0.0", 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        panic!("version 2 of the fleet test collector is broken on purpose");
    }
}

wasmtap_collector::export!(Fleet);
