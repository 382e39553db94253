//! `wasmtap-proxy`: the collection server binary.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_proxy::config::Config;
use wasmtap_proxy::display;
use wasmtap_proxy::store::Store;

#[derive(Parser)]
#[command(name = "wasmtap-proxy", version, about = "wasmtap collection server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a fresh access key for a project.
    Keygen {
        /// Project name: a-z, 0-9 and `-`.
        #[arg(long)]
        project: String,
    },
    /// Serve agents.
    Run {
        /// Proxy config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Print every sample as it is stored, one line each, on stdout.
        #[arg(long)]
        print: bool,
    },
    /// Print stored samples.
    Query {
        /// Proxy config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this collector.
        #[arg(long)]
        collector: Option<String>,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// One JSON object per value and line.
        #[arg(long)]
        json: bool,
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
        Command::Keygen { project } => {
            let id = ProjectId::new(&project).with_context(|| format!("project {project:?}"))?;
            let key = AccessKey::generate(id, &mut rand::rng());
            println!("{}", key.to_key_string().as_str());
            Ok(())
        }
        Command::Run { config, print } => run(config, print),
        Command::Query { config, project, collector, agent, json } => {
            query(config, project, collector, agent, json)
        }
    }
}

fn load(config: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(config).with_context(|| format!("loading config {}", config.display()))
}

fn run(config: PathBuf, print: bool) -> anyhow::Result<()> {
    let cfg = Arc::new(load(&config)?);
    if cfg.projects.is_empty() {
        tracing::warn!("no [[projects]] configured: every agent will be refused");
    }
    let store = Arc::new(Store::open(&cfg.data_dir).context("opening the store")?);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(listen = %addr, projects = cfg.projects.len(), "proxy listening");
        // Tests and scripts read the bound address from this line.
        println!("listening on {addr}");
        let observer = print.then(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some((_project, record)) = rx.recv().await {
                    let record: wasmtap_proxy::store::StoredBatch = record;
                    let mut out = std::io::stdout().lock();
                    for s in &record.batch.samples {
                        let _ = writeln!(out, "{}", display::human_line(&record.agent, s));
                    }
                }
            });
            tx
        });
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        });
        wasmtap_proxy::server::run(listener, cfg, store, observer, shutdown).await?;
        Ok(())
    })
}

fn query(
    config: PathBuf,
    project: Option<String>,
    collector: Option<String>,
    agent: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = load(&config)?;
    let store = Store::open(&cfg.data_dir).context("opening the store")?;
    let projects = match project {
        Some(p) => vec![ProjectId::new(&p).with_context(|| format!("project {p:?}"))?],
        None => store.projects()?,
    };
    let mut out = std::io::stdout().lock();
    for p in projects {
        for record in store.read(&p)? {
            if agent.as_ref().is_some_and(|a| *a != record.agent) {
                continue;
            }
            for s in &record.batch.samples {
                if collector.as_ref().is_some_and(|c| *c != s.collector) {
                    continue;
                }
                if json {
                    for line in display::json_lines(p.as_str(), &record.agent, s) {
                        writeln!(out, "{line}")?;
                    }
                } else {
                    writeln!(out, "{}", display::human_line(&record.agent, s))?;
                }
            }
        }
    }
    Ok(())
}
