//! Host bindings of the `wasmtap:collector` world (`wit/collector.wit`).
//!
//! This is the only `bindgen!` in the agent. The exports are called as
//! async functions (so a call can be dropped at its deadline); the host's
//! own imports are quick and synchronous, implemented in [`super::state`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "collector",
    exports: { default: async },
});
