//! Host bindings of the `wasmtap:collector` world (`wit/collector.wit`).
//!
//! This is the only `bindgen!` in the agent. The host's implementation of the
//! world's imports lives in [`super::state`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "collector",
});
