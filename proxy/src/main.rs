//! `wasmtap-proxy`: the collection server binary.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_proxy::config::Config;
use wasmtap_proxy::ctl::{AdminApi, CtlError};
use wasmtap_proxy::display;
use wasmtap_proxy::http::{self, HttpState};
use wasmtap_proxy::latest::Latest;
use wasmtap_proxy::query::{self, Filter};
use wasmtap_proxy::remote_write::RemoteWrite;
use wasmtap_proxy::server::Hub;
use wasmtap_proxy::sessions::Sessions;
use wasmtap_proxy::sink::Sinks;
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
        /// Only series with this label (`key=value`; repeat for several).
        #[arg(long = "label", value_parser = query::parse_label)]
        labels: Vec<(String, String)>,
        /// Only this field.
        #[arg(long)]
        field: Option<String>,
        /// Samples taken since this time (RFC 3339, or a duration ago such as `15m`).
        #[arg(long)]
        since: Option<String>,
        /// Samples taken before this time (RFC 3339, or a duration ago).
        #[arg(long)]
        until: Option<String>,
        /// One JSON object per value and line.
        #[arg(long)]
        json: bool,
    },
    /// Talk to a running proxy's admin API (address and token from `[http]`).
    Ctl {
        /// Proxy config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The admin API's address, when `[http] listen` does not say (port 0).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        #[command(subcommand)]
        action: CtlAction,
    },
}

#[derive(Subcommand)]
enum CtlAction {
    /// List the connected agents.
    Agents,
    /// Send a control request to an agent and print its answer.
    Request {
        /// The agent's name.
        agent: String,
        /// The command.
        command: String,
        /// The command's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// How long to wait for the answer, e.g. `10s` (default: the proxy's, 30s).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
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
        Command::Query { config, project, collector, agent, labels, field, since, until, json } => {
            let now = std::time::SystemTime::now();
            let time = |t: Option<String>| t.map(|t| query::parse_time(&t, now)).transpose();
            let filter = Filter {
                agent,
                collector,
                labels,
                field,
                since_ms: time(since)?,
                until_ms: time(until)?,
            };
            query(config, project, filter, json)
        }
        Command::Ctl { config, addr, action } => ctl(config, addr, action),
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
    let store = Arc::new(Store::open_with(&cfg.data_dir, cfg.store).context("opening the store")?);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(listen = %addr, projects = cfg.projects.len(), "proxy listening");
        // Tests and scripts read the bound address from this line.
        println!("listening on {addr}");
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let sessions = Arc::new(Sessions::default());
        let mut sinks: Sinks = Vec::new();
        let mut workers = Vec::new();
        let mut remote = Vec::new();
        for endpoint in &cfg.remote_write {
            let rw = RemoteWrite::new(endpoint.clone());
            workers.push(tokio::spawn(rw.clone().run(shutdown.clone())));
            sinks.push(rw.clone());
            remote.push(rw);
        }
        if let Some(http_cfg) = &cfg.http {
            let latest = Arc::new(Latest::new(http_cfg.max_series, http_cfg.series_ttl));
            sinks.push(latest.clone());
            let http_listener = tokio::net::TcpListener::bind(http_cfg.listen)
                .await
                .with_context(|| format!("binding [http] listen {}", http_cfg.listen))?;
            let http_addr = http_listener.local_addr()?;
            if http_cfg.token.is_none() {
                tracing::warn!("[http] has no token: the admin API under /api/ is off");
            }
            tracing::info!(listen = %http_addr, "http listening");
            println!("http listening on {http_addr}");
            let state = Arc::new(HttpState {
                token: http_cfg.token.clone(),
                sessions: sessions.clone(),
                latest,
                remote_write: remote,
                store: store.clone(),
            });
            let http_shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = http::serve(http_listener, state, http_shutdown).await {
                    tracing::error!(error = %e, "http listener failed");
                }
            });
        }
        if print {
            sinks.push(Arc::new(display::Print));
        }
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        });
        let hub = Arc::new(Hub { config: cfg, store, sessions, sinks });
        wasmtap_proxy::server::run(listener, hub, shutdown).await?;
        // Remote-write workers make one last attempt with what is queued.
        let flush = join_all(workers);
        if tokio::time::timeout(SHUTDOWN_FLUSH, flush).await.is_err() {
            tracing::warn!("remote write did not finish within {SHUTDOWN_FLUSH:?}; values lost");
        }
        Ok(())
    })
}

/// How long remote-write workers get to send what is queued at shutdown.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

fn ctl(
    config: PathBuf,
    addr: Option<std::net::SocketAddr>,
    action: CtlAction,
) -> anyhow::Result<()> {
    let cfg = load(&config)?;
    let http_cfg = cfg.http.as_ref().ok_or(CtlError::NoHttp)?;
    let api = AdminApi::new(http_cfg, addr)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let answer = rt.block_on(async {
        match &action {
            CtlAction::Agents => api.agents().await,
            CtlAction::Request { agent, command, args, timeout } => {
                api.request(agent, command, args, *timeout).await
            }
        }
    });
    let answer = match (answer, &action) {
        (Ok(a), _) => a,
        (Err(e), CtlAction::Agents) => return Err(e).context("listing agents"),
        (Err(e), CtlAction::Request { agent, command, .. }) => {
            return Err(e).with_context(|| format!("request `{command}` to agent `{agent}`"));
        }
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &answer)?;
    writeln!(out)?;
    Ok(())
}

fn query(
    config: PathBuf,
    project: Option<String>,
    filter: Filter,
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
            for s in record.batch.samples.iter().filter(|s| filter.sample(&record.agent, s)) {
                let s = filter.values(s);
                if s.values.is_empty() {
                    continue;
                }
                if json {
                    for line in display::json_lines(p.as_str(), &record.agent, record.batch.seq, &s)
                    {
                        writeln!(out, "{line}")?;
                    }
                } else {
                    writeln!(out, "{}", display::human_line(&record.agent, &s))?;
                }
            }
        }
    }
    Ok(())
}
