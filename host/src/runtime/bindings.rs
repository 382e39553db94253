//! Host bindings of the `wasmtap:collector` worlds: the current one
//! (`wit/collector.wit`, 0.2.1, which 0.2.0 collectors also load through)
//! and the previous one (`wit/v0.1.0/`), which collectors built before
//! 0.2.0 target.
//!
//! These are the only `bindgen!`s in the agent. The exports are called as
//! async functions (so a call can be dropped at its deadline); the host's
//! own imports are quick and synchronous, implemented in [`super::state`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "collector",
    imports: {
        "wasmtap:collector/filesystem.usage": async,
        "wasmtap:collector/files.read": async,
        "wasmtap:collector/files.read-dir": async,
    },
    exports: { default: async },
});

/// The 0.1.0 world: the same calls, fields without a precision, and no
/// `filesystem` import. [`super::compat`] converts its values.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "collector",
        exports: { default: async },
    });
}
