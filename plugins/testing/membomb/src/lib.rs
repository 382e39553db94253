//! Test collector `membomb`: well behaved in `describe` and `init`, then
//! allocates (and writes) 1 MiB blocks in `collect` until the linear memory
//! hits the manifest's cap, which traps (or the allocator aborts).

use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct MemBomb;

impl Guest for MemBomb {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Never reported: collect never returns");
        s.into_descriptor("membomb", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Non-zero bytes, so every page is really written.
            hoard.push(vec![0xa5; 1 << 20]);
            std::hint::black_box(&mut hoard);
        }
    }
}

wasmtap_collector::export!(MemBomb);
