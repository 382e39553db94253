//! `cargo xtask fuzz [SECONDS]` (and a step of `cargo xtask test`): builds
//! every cargo-fuzz target in `fuzz/` on nightly and runs each for a short
//! smoke time, so a target that no longer builds, or that crashes at once,
//! fails CI. Installs the nightly toolchain with rustup and cargo-fuzz with
//! `cargo install --locked` when they are missing.
//!
//! For a smoke run the targets are built unoptimised (`--dev`; debug
//! assertions and overflow checks on, as in any fuzz build) and without a
//! sanitizer (`-s none`: the crates forbid `unsafe`): that build takes
//! about half the time of an optimised one on the CI machine's two cores,
//! and a few seconds of fuzzing do not need the speed. Longer campaigns
//! use `cargo fuzz run` directly (see `fuzz/README.md`).

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::util;

/// Seconds each target runs in `cargo xtask test`.
pub const SMOKE_SECONDS: u32 = 5;

/// Builds every target and runs each for `seconds`.
pub fn smoke(seconds: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_tools()?;
    let dir = util::root().join("fuzz");
    let out = fuzz_command(&["list"]).output().context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let targets: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).collect();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    util::run(fuzz_command(&["build", "--dev", "-s", "none"]))?;
    let built = started.elapsed();
    for target in &targets {
        let time = format!("-max_total_time={seconds}");
        // Small inputs and a memory cap keep the smoke run short and bounded.
        let args = [
            "run",
            "--dev",
            "-s",
            "none",
            target,
            "--",
            &time,
            "-max_len=4096",
            "-rss_limit_mb=2048",
        ];
        let mut cmd = fuzz_command(&args);
        cmd.stderr(Stdio::piped());
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let out = cmd.output().with_context(|| format!("running fuzz target {target}"))?;
        if !out.status.success() {
            let log = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed (the input is saved under fuzz/artifacts/{target}/):\n{}",
                tail.join("\n")
            );
        }
    }
    eprintln!(
        "xtask: {} fuzz targets built in {:.0} s and ran {seconds} s each ({:.0} s in all)",
        targets.len(),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo +nightly fuzz <args>` in `fuzz/`.
fn fuzz_command(args: &[&str]) -> Command {
    let mut cmd = util::rustup_cargo_command("nightly", &["fuzz"], &util::root().join("fuzz"));
    cmd.args(args);
    cmd
}

/// Installs the nightly toolchain and cargo-fuzz when missing.
fn ensure_tools() -> anyhow::Result<()> {
    let quiet = |mut cmd: Command| {
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    let mut nightly = Command::new("rustup");
    nightly.args(["run", "nightly", "rustc", "--version"]);
    if !quiet(nightly) {
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        util::run(cmd).context("installing the nightly toolchain for the fuzz targets")?;
    }
    if !quiet(fuzz_command(&["--version"])) {
        let cmd = util::cargo_command(&["install", "--locked", "cargo-fuzz"], &util::root());
        util::run(cmd).context("installing cargo-fuzz")?;
    }
    Ok(())
}
