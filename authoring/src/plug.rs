//! What a built component imports, and plugging the `deny-sockets` component
//! into a collector that imports `wasi:sockets` it never needs.
//!
//! componentize-py's runtime (wasi-libc) imports the WASI 0.2 sockets
//! interfaces whether or not the collector opens a socket, and the agent
//! refuses every collector that imports the network. Instead of weakening
//! that rule, `wasmtap plugin build` satisfies those imports inside the
//! component with `deny-sockets` (`plugins/support/deny-sockets`), whose every
//! function answers "access denied". The result imports no `wasi:sockets`.

use wac_graph::types::{ItemKind, Package, Types};
use wac_graph::{CompositionGraph, EncodeOptions};

/// Why an import listing or a plug failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlugError {
    /// A file is not a component.
    #[error("{what} is not a valid component: {reason}")]
    Parse {
        /// Which file.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// Composition failed.
    #[error("plugging deny-sockets into the collector failed: {0}")]
    Compose(String),
    /// Imports remain that the plug did not satisfy.
    #[error(
        "after plugging deny-sockets the collector still imports {0}: the sockets version differs from the one deny-sockets exports (0.2.9); rebuild plugins/support/deny-sockets against it"
    )]
    Leftover(String),
}

fn parse(what: &'static str, bytes: &[u8], types: &mut Types) -> Result<Package, PlugError> {
    Package::from_bytes(what, None, bytes.to_vec(), types)
        .map_err(|e| PlugError::Parse { what, reason: format!("{e:#}") })
}

/// The names of the interfaces and functions `component` imports (type
/// imports, such as the world's `use types.{sample}`, are not listed).
pub fn imports(component: &[u8]) -> Result<Vec<String>, PlugError> {
    let mut types = Types::default();
    let package = parse("the built collector", component, &mut types)?;
    Ok(types[package.ty()]
        .imports
        .iter()
        .filter(|(_, kind)| !matches!(kind, ItemKind::Type(_)))
        .map(|(name, _)| name.clone())
        .collect())
}

/// Whether `import` is one of the WASI sockets interfaces.
pub fn is_sockets(import: &str) -> bool {
    import.starts_with("wasi:sockets/")
}

/// `collector` with its `wasi:sockets` imports satisfied by `deny_sockets`.
pub fn deny_sockets(collector: &[u8], deny_sockets: &[u8]) -> Result<Vec<u8>, PlugError> {
    let compose = |e: &dyn std::fmt::Display| PlugError::Compose(e.to_string());
    let mut graph = CompositionGraph::new();
    let socket = parse("the built collector", collector, graph.types_mut())?;
    let socket = graph.register_package(socket).map_err(|e| compose(&e))?;
    let plug = parse("deny-sockets.wasm", deny_sockets, graph.types_mut())?;
    let plug = graph.register_package(plug).map_err(|e| compose(&e))?;
    wac_graph::plug(&mut graph, vec![plug], socket).map_err(|e| compose(&e))?;
    let bytes = graph
        .encode(EncodeOptions { validate: true, ..EncodeOptions::default() })
        .map_err(|e| compose(&e))?;
    let left: Vec<String> = imports(&bytes)?.into_iter().filter(|i| is_sockets(i)).collect();
    if !left.is_empty() {
        return Err(PlugError::Leftover(left.join(", ")));
    }
    Ok(bytes)
}
