//! Test collector `fleet`, version 1.0.0: reports its version as a gauge
//! (`version` = 1) every collect. Version 2 (`testing/fleet-v2`) is the
//! same collector broken: the fleet tests publish one after the other.

use wasmtap_collector::bindings::wasmtap::collector::types::Number;
use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct Fleet;

impl Guest for Fleet {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("version", "", "The major version of this collector");
        s.into_descriptor("fleet", "1.0.0", 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        Ok(vec![Sample {
            labels: vec![],
            numbers: vec![Number { field: 0, value: 1.0 }],
            texts: vec![],
        }])
    }
}

wasmtap_collector::export!(Fleet);
