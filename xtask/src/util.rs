//! Running commands from the project root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A `cargo` command, clean of the variables the outer `cargo run` set.
pub fn cargo_command(args: &[&str], dir: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(dir);
    clean_env(&mut cmd);
    cmd
}

/// A `cargo +toolchain` command through rustup's proxy (the `cargo` on the
/// `PATH`), clean like [`cargo_command`].
pub fn rustup_cargo_command(toolchain: &str, args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}")).args(args).current_dir(dir);
    clean_env(&mut cmd);
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Removes the variables the outer `cargo run` set.
fn clean_env(cmd: &mut Command) {
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        cmd.env_remove(var);
    }
    // The package variables `cargo run` sets for xtask itself: some build
    // scripts (ring's) watch CARGO_MANIFEST_DIR, and a value here that a
    // plain `cargo build` lacks would rebuild them on every switch.
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(is_package_variable) {
            cmd.env_remove(var);
        }
    }
}

/// A variable cargo sets for the package it runs, not a cargo setting.
fn is_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"]
            .contains(&name)
}

/// Runs `cargo args…` in `dir`, failing on a non-zero exit.
pub fn cargo(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    run(cargo_command(args, dir))
}

/// Runs `cmd`, failing on a non-zero exit.
pub fn run(mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> anyhow::Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(root())
        .output()
        .context("running rustc -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host line")
}

/// Adds the wasm32-wasip2 target to the project's toolchain when missing.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output()
        .context("running rustup (is the Rust toolchain installed with rustup?)")?;
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-wasip2") {
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", "wasm32-wasip2"]).current_dir(root());
    run(cmd)
}
