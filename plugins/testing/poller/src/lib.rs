//! Test collector `poller`: well behaved in `describe` and `init`, then in
//! every `collect` calls WASI `poll` on a single pollable that never
//! resolves (a monotonic-clock deadline at the end of time), so the call
//! waits in the host forever unless the host cuts it off.
//!
//! The two WASI functions are imported directly by their canonical-ABI
//! names (the ones wasi-libc itself imports); the component linker binds
//! them to `wasi:clocks/monotonic-clock` and `wasi:io/poll`.

use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

#[cfg(target_arch = "wasm32")]
mod wasi {
    #[link(wasm_import_module = "wasi:clocks/monotonic-clock@0.2.0")]
    unsafe extern "C" {
        /// `subscribe-instant: func(when: instant) -> pollable`: an owned handle.
        #[link_name = "subscribe-instant"]
        pub fn subscribe_instant(when: u64) -> u32;
    }

    #[link(wasm_import_module = "wasi:io/poll@0.2.0")]
    unsafe extern "C" {
        /// `poll: func(in: list<borrow<pollable>>) -> list<u32>`: the list as
        /// (pointer, length), the result written as (pointer, length) at `ret`.
        #[link_name = "poll"]
        pub fn poll(handles: *const u32, len: usize, ret: *mut [usize; 2]);
    }
}

/// Waits on a pollable that resolves at the largest instant there is.
#[cfg(target_arch = "wasm32")]
fn wait_forever() -> usize {
    // SAFETY: `subscribe-instant` takes a plain integer and returns a handle
    // we own. `poll` reads one handle from `handles`, which lives across the
    // call, and writes two words to `ret`, which is valid and aligned.
    unsafe {
        let handles = [wasi::subscribe_instant(u64::MAX)];
        let mut ret = [0usize; 2];
        wasi::poll(handles.as_ptr(), handles.len(), &mut ret);
        ret[1]
    }
}

/// Off wasm (the collectors' native unit-test build) there is no WASI to wait in.
#[cfg(not(target_arch = "wasm32"))]
fn wait_forever() -> usize {
    0
}

struct Poller;

impl Guest for Poller {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("ready", "", "Pollables reported ready (only if poll ever returned)");
        s.into_descriptor("poller", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let ready = wait_forever();
        Err(format!("poll returned {ready} ready pollables; it never should"))
    }
}

wasmtap_collector::export!(Poller);
