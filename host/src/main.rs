//! `wasmtap`: the agent binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
    /// Tools for collector authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a component against the WIT world; print its fields and grants.
    Check {
        /// The collector component.
        file: PathBuf,
        /// Its manifest (default: <file>.toml beside it).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Run a collector under the agent's sandbox and print its samples.
    Run {
        /// The collector component.
        file: PathBuf,
        /// Its manifest (default: <file>.toml beside it).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Call collect once and exit (the default).
        #[arg(long, conflicts_with = "every")]
        once: bool,
        /// Call collect repeatedly at this interval (e.g. 1s).
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<std::time::Duration>,
        /// With --every: stop after this many calls.
        #[arg(long, requires = "every")]
        count: Option<u64>,
        /// One JSON object per value and line.
        #[arg(long)]
        json: bool,
    },
    /// Create an ed25519 signing key for distributing collectors.
    Keygen {
        /// Where to write the key (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a collector: writes <file>.sig.
    Sign {
        /// The collector component.
        file: PathBuf,
        /// The signing key file from `wasmtap plugin keygen`.
        #[arg(long)]
        key: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Run { config } => {
            let cfg = wasmtap_host::config::Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let (stop, shutdown) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutting down");
                    let _ = stop.send(true);
                });
                wasmtap_host::agent::run(cfg, shutdown).await
            })?;
        }
        Command::Plugin(cmd) => plugin(cmd)?,
    }
    Ok(())
}

fn plugin(cmd: PluginCommand) -> anyhow::Result<()> {
    use wasmtap_host::authoring::{self, Repeat};
    match cmd {
        PluginCommand::Check { file, manifest } => {
            let report = authoring::check(&file, manifest.as_deref())
                .with_context(|| format!("checking {}", file.display()))?;
            print!("{report}");
        }
        PluginCommand::Run { file, manifest, once: _, every, count, json } => {
            let repeat = every.map_or(Repeat::Once, |d| Repeat::Every(d, count));
            authoring::run(&file, manifest.as_deref(), repeat, json, |report| print!("{report}"))
                .with_context(|| format!("running {}", file.display()))?;
        }
        PluginCommand::Keygen { out } => {
            let public = authoring::keygen(&out)?;
            eprintln!("signing key written to {} (keep it secret)", out.display());
            println!("{public}");
        }
        PluginCommand::Sign { file, key } => {
            let sig = authoring::sign(&file, &key)?;
            println!("{}", sig.display());
        }
    }
    Ok(())
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
