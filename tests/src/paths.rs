//! Locating the binaries under test and the compiled collectors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `target/debug` (or wherever this test binary was built), with the
/// `wasmtap`, `wasmtap-plugin` and `wasmtap-proxy` binaries built and up to date.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_bins().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_bins() -> anyhow::Result<PathBuf> {
    // Test executables live in <target>/<profile>/deps.
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test binary has no profile dir")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--bins",
            "-p",
            "wasmtap-host",
            "-p",
            "wasmtap-proxy",
            "-p",
            "wasmtap-authoring",
        ])
        .current_dir(root());
    // Not the variables cargo set for this test's package: some build
    // scripts (ring's) watch CARGO_MANIFEST_DIR and would rebuild whenever
    // it differs from a plain `cargo build`.
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(&var);
        }
    }
    let status = command.status().context("running cargo build for the binaries under test")?;
    if !status.success() {
        bail!("building the binaries under test failed");
    }
    Ok(dir.to_owned())
}

/// A compiled collector (`name.wasm`) and its manifest, from `target/plugins`.
pub fn plugin(name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = root().join("target/plugins");
    let wasm = dir.join(format!("{name}.wasm"));
    if !wasm.is_file() {
        bail!("{} is missing: run `cargo xtask plugins` (or `cargo xtask test`)", wasm.display());
    }
    Ok((wasm, dir.join(format!("{name}.toml"))))
}
