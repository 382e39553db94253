//! `wasmtap plugin …`: runs `wasmtap-plugin`, the collector author's tools,
//! which live in a binary of their own so the agent does not link them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

/// The authoring binary's name.
const TOOL: &str = "wasmtap-plugin";

/// Runs `wasmtap-plugin ARGS…` in place of this process (on Unix) and
/// returns only if it could not be started, or with its exit status.
pub fn exec(args: &[OsString]) -> anyhow::Result<()> {
    let tool = locate();
    let mut cmd = Command::new(&tool);
    cmd.args(args);
    let started = || {
        format!(
            "running {} (the collector authoring tools are a separate binary, {TOOL}, \
             installed beside `wasmtap` or on PATH where collectors are written; \
             from the source tree: cargo install --path authoring)",
            tool.display()
        )
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // `exec` returns only on failure.
        Err(cmd.exec()).with_context(started)
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().with_context(started)?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// `wasmtap-plugin` beside this executable if it is there, else the name
/// alone (looked up on PATH).
fn locate() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(TOOL))
        .filter(|beside| beside.is_file())
        .unwrap_or_else(|| PathBuf::from(TOOL))
}
