//! `cargo xtask`: project automation.
//!
//! - `cargo xtask plugins`: build every collector for wasm32-wasip2 into `target/plugins/`.
//! - `cargo xtask examples`: install the Python and JavaScript tools, build `plugins/examples/`.
//! - `cargo xtask demo [--seconds N]`: a local proxy and agent, metrics on screen.
//! - `cargo xtask footprint [--seconds N]`: the agent's cost beside collectd and node_exporter (a benchmark).
//! - `cargo xtask bench-store [--values N]`: the proxy's store at scale beside VictoriaMetrics (a benchmark).
//! - `cargo xtask bench-ingest [--values N]`: ingest with `[cluster]` beside the embedded store and VictoriaMetrics (a benchmark).
//! - `cargo xtask test`: install what tests need (see `packages.rs`), build collectors, run every test, smoke-run every fuzz target, lint.
//! - `cargo xtask fuzz [SECONDS]`: build every fuzz target on nightly and run each for SECONDS (default 5).

mod authoring;
mod bench_ingest;
mod bench_store;
mod demo;
mod footprint;
mod fuzz;
mod packages;
mod plugins;
mod util;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("plugins") => plugins::build().map(|_| ()),
        Some("examples") => authoring::build_examples().map(|_| ()),
        Some("demo") => demo::run(&args[1..]),
        Some("footprint") => footprint::run(&args[1..]),
        // Started by `footprint` itself: the native reading floor.
        Some("footprint-reads") => footprint::native::run(),
        Some("bench-store") => bench_store::run(&args[1..]),
        Some("bench-ingest") => bench_ingest::run(&args[1..]),
        Some("test") => test(),
        Some("lint") => lint(),
        Some("fuzz") => {
            let seconds = match args.get(1) {
                Some(s) => s.parse().with_context(|| format!("seconds: {s:?}"))?,
                None => fuzz::SMOKE_SECONDS,
            };
            fuzz::smoke(seconds)
        }
        _ => {
            eprintln!("usage: cargo xtask <plugins|examples|demo|test|lint|fuzz>");
            eprintln!("  plugins        build every collector into target/plugins/");
            eprintln!(
                "  examples       build the Python and JavaScript examples (installs their tools)"
            );
            eprintln!(
                "  demo           run a local proxy and agent and show the metrics (Ctrl-C stops)"
            );
            eprintln!(
                "  footprint      the agent's CPU, memory and wire cost beside collectd and node_exporter"
            );
            eprintln!(
                "  bench-store    the proxy's store at 100 M values beside VictoriaMetrics (--values N)"
            );
            eprintln!(
                "  bench-ingest   the proxy's ingest with [cluster] beside the embedded store and VictoriaMetrics (--values N)"
            );
            eprintln!("  test           build collectors and run every test and lint");
            eprintln!("  lint           cargo fmt --check and clippy -D warnings");
            eprintln!("  fuzz [SECONDS] build every fuzz target (nightly) and run each briefly");
            bail!("unknown or missing command");
        }
    }
}

fn test() -> anyhow::Result<()> {
    packages::ensure()?;
    plugins::build()?;
    authoring::build_examples()?;
    let host = util::host_triple()?;
    // Collector unit tests run natively: their parsing code is plain Rust.
    util::cargo(&["test", "--release", "--target", &host], &util::root().join("plugins"))?;
    util::cargo(&["build", "--workspace", "--bins"], &util::root())?;
    util::cargo(&["test", "--workspace"], &util::root())?;
    fuzz::smoke(fuzz::SMOKE_SECONDS)?;
    lint()
}

fn lint() -> anyhow::Result<()> {
    let root = util::root();
    util::cargo(&["fmt", "--all", "--", "--check"], &root)?;
    util::cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &root)?;
    // The agent as shipped: no compiler (see host/Cargo.toml).
    util::cargo(
        &[
            "clippy",
            "-p",
            "wasmtap-host",
            "--no-default-features",
            "--lib",
            "--bin",
            "wasmtap",
            "--",
            "-D",
            "warnings",
        ],
        &root,
    )?;
    util::cargo(&["fmt", "--all", "--", "--check"], &root.join("plugins"))?;
    util::cargo(&["clippy", "--workspace", "--", "-D", "warnings"], &root.join("plugins"))
}
