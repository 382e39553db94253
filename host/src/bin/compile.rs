//! `wasmtap-compile`: compiles one collector into the agent's compile cache
//! and exits. The agent runs it for every collector missing from the cache,
//! with the component on standard input, so the agent itself links no
//! compiler and the compiler's memory leaves with this process.

use std::path::PathBuf;

use std::process::ExitCode;

use clap::Parser;
use wasmtap_host::runtime::cache::{self, CompileFailure};

#[derive(Parser)]
#[command(
    name = "wasmtap-compile",
    version,
    about = "Compiles a collector (a component on stdin) into a wasmtap compile cache"
)]
struct Cli {
    /// The compile cache directory (`<data_dir>/cache` of the agent).
    #[arg(long)]
    cache: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cache::compile_child(&cli.cache, std::io::stdin().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ CompileFailure::Invalid(_)) => {
            eprintln!("not a valid component: {e}");
            ExitCode::from(cache::EXIT_INVALID)
        }
        Err(e @ CompileFailure::Compiler(_)) => {
            eprintln!("wasmtap-compile: {e}");
            ExitCode::FAILURE
        }
    }
}
