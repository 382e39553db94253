//! `wasmtap`: the agent binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtap_host::config::LogFormat;
use wasmtap_host::logring::LogRing;

mod arenas;
mod authoring_tools;

#[derive(Parser)]
#[command(name = "wasmtap", version, about = "wasmtap monitoring agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Agent config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Tools for collector authors (runs `wasmtap-plugin`, installed beside
    /// the agent where collectors are written; see `wasmtap plugin --help`).
    #[command(disable_help_flag = true)]
    Plugin {
        /// Arguments for `wasmtap-plugin`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The executable, installed beside the agent, that compiles collectors
/// missing from the compile cache.
const COMPILER: &str = "wasmtap-compile";

/// How long the agent waits at exit for blocking threads still at work.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            arenas::one_arena();
            let mut cfg = wasmtap_host::config::Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            cfg.compile_with =
                std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(COMPILER)));
            let logs = init_logging(&cfg.log_level, cfg.log_format);
            // One thread runs the agent's tasks, collector calls included
            // (they yield every epoch tick): nothing hands work between
            // threads, so an idle agent wakes only for its own timers. Disk
            // writes, batch encoding and compiles use blocking threads.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let ran = rt.block_on(async move {
                let (stop, shutdown) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutting down");
                    let _ = stop.send(true);
                });
                wasmtap_host::agent::run(cfg, logs, shutdown).await
            });
            // A blocking thread may still wait in the kernel for a call the
            // agent already dropped (a collector's open of a FIFO or read of
            // a hung network file); dropping the runtime would wait for it
            // forever. What the agent writes itself was awaited by `run`.
            rt.shutdown_timeout(EXIT_GRACE);
            ran?;
        }
        Command::Plugin { args } => authoring_tools::exec(&args)?,
    }
    Ok(())
}

/// Logs to stderr as text or JSON at `level` (`RUST_LOG` wins), and into
/// the ring the `logs` control request reads.
fn init_logging(level: &str, format: LogFormat) -> LogRing {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ring = LogRing::default();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter).with(ring.clone());
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
            .init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    ring
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
