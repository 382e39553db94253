//! Collector components assembled from hand-written core modules (WAT),
//! for collectors Rust cannot express, such as one with two linear
//! memories: `plugins/testing/<name>/collector.wat` is parsed, given the
//! `wasmtap:collector@0.1.0` world of `wit/v0.1.0/` as its component type
//! (the canonical-ABI layouts the modules write are that world's), and
//! wrapped into a component by `wit-component`, as `cargo component` would.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::paths;

/// The component of `plugins/testing/<name>/collector.wat`.
pub fn from_wat(name: &str) -> anyhow::Result<Vec<u8>> {
    from_wat_as(name, "0.1.0")
}

/// The component of `plugins/testing/<name>/collector.wat`, with the 0.1.0
/// world's types under the package version `version`: a component that
/// targets a version of the world the agent may not know.
pub fn from_wat_as(name: &str, version: &str) -> anyhow::Result<Vec<u8>> {
    let source = paths::root().join("plugins/testing").join(name).join("collector.wat");
    let mut module =
        wat::parse_file(&source).with_context(|| format!("assembling {}", source.display()))?;
    let wit = paths::root().join("wit/v0.1.0/collector.wit");
    let text = std::fs::read_to_string(&wit)
        .with_context(|| format!("reading {}", wit.display()))?
        .replace(
            "package wasmtap:collector@0.1.0;",
            &format!("package wasmtap:collector@{version};"),
        );
    let mut resolve = wit_parser::Resolve::default();
    let package =
        resolve.push_str("collector.wit", &text).context("parsing the collector world")?;
    let world = resolve.select_world(&[package], Some("collector"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .encode()
        .with_context(|| format!("wrapping {} into a component", source.display()))
}

/// Writes the component of `name` into `plugins` as `<name>.wasm`, with
/// `plugins/testing/<name>/manifest.toml` as `<name>.toml`; returns the `.wasm`.
pub fn install(name: &str, plugins: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(plugins)?;
    let wasm = plugins.join(format!("{name}.wasm"));
    std::fs::write(&wasm, from_wat(name)?)?;
    let manifest = paths::root().join("plugins/testing").join(name).join("manifest.toml");
    std::fs::copy(&manifest, wasm.with_extension("toml"))
        .with_context(|| format!("copying {}", manifest.display()))?;
    Ok(wasm)
}
