//! Test collector `recursion`: well behaved in `describe` and `init`, then
//! recurses without bound in `collect`. The frames are small and live in
//! wasm locals, so it is the engine's wasm call stack (the host's
//! `max_wasm_stack`) that overflows and traps, before the shadow stack in
//! linear memory runs out.

use std::sync::atomic::{AtomicU64, Ordering};

use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct Recursion;

/// The depth at which the recursion would stop: never reached, but the
/// compiler cannot know that, so it cannot remove the recursion.
static BOTTOM: AtomicU64 = AtomicU64::new(u64::MAX);

/// Recurses until the stack overflows. The result is used after the call in
/// a way that is not a simple accumulation, so it is no tail call and
/// cannot be turned into a loop.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    if depth == BOTTOM.load(Ordering::Relaxed) {
        return depth;
    }
    dive(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

impl Guest for Recursion {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Never reported: collect never returns");
        s.into_descriptor("recursion", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let depth = dive(0);
        Err(format!("returned from depth {depth}"))
    }
}

wasmtap_collector::export!(Recursion);
