//! `wasmtap`: the agent binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtap_host::config::LogFormat;
use wasmtap_host::logring::LogRing;

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
    /// Create a collector project in NAME/: source, manifest, README, build files.
    New {
        /// Collector and directory name ([a-z][a-z0-9_-]*).
        name: String,
        /// Language: rust, python or js.
        #[arg(long, value_parser = wasmtap_host::authoring::Lang::parse)]
        lang: wasmtap_host::authoring::Lang,
        /// Directory to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Rust SDK (plugins/sdk) to depend on [default: $WASMTAP_SDK, else the
        /// wasmtap source tree this binary was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a collector project (Rust, Python or JavaScript); prints the .wasm path last.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
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
    match cli.command {
        Command::Run { config } => {
            let cfg = wasmtap_host::config::Config::load(&config)
                .with_context(|| format!("loading config {}", config.display()))?;
            let logs = init_logging(&cfg.log_level, cfg.log_format);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let (stop, shutdown) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutting down");
                    let _ = stop.send(true);
                });
                wasmtap_host::agent::run(cfg, logs, shutdown).await
            })?;
        }
        Command::Plugin(cmd) => {
            init_logging("info", LogFormat::Text);
            plugin(cmd)?;
        }
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

fn plugin(cmd: PluginCommand) -> anyhow::Result<()> {
    use wasmtap_host::authoring::{self, Repeat};
    match cmd {
        PluginCommand::New { name, lang, dir, sdk } => {
            let project = authoring::scaffold::NewProject { name, lang, parent: dir, sdk };
            let made = authoring::scaffold::create(&project).context("creating the project")?;
            eprintln!("created a {lang:?} collector project; build it with:");
            eprintln!("  wasmtap plugin build {}", made.display());
            println!("{}", made.display());
        }
        PluginCommand::Build { dir } => {
            let wasm = authoring::builder::build(&dir)
                .with_context(|| format!("building {}", dir.display()))?;
            println!("{}", wasm.display());
        }
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
