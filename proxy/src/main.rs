//! `wasmtap-proxy`: the collection server binary.

#[path = "cli/collectors.rs"]
mod collectors;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::keyfile;
use wasmtap_proxy::config::Config;
use wasmtap_proxy::ctl::{AdminApi, CtlError};
use wasmtap_proxy::display;
use wasmtap_proxy::query::{self, Filter, scan};
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
    /// Print this deployment's public identity (`wtapid1_…`, last line),
    /// creating the identity key in `identity_file` if it does not exist.
    Identity {
        /// Proxy config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
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
        /// Print what was read and skipped, the time taken and the peak memory on stderr.
        #[arg(long)]
        stats: bool,
        /// Counters as per-second rates since the series' previous sample
        /// (`<field>_per_second`; a reset counts from zero); gauges as stored.
        #[arg(long)]
        rate: bool,
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
    /// Publish collectors to a project's agents, follow and roll them back
    /// (through a running proxy's admin API).
    Collectors {
        /// Proxy config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The admin API's address, when `[http] listen` does not say (port 0).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Print the admin API's JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: collectors::Action,
    },
}

#[derive(Subcommand)]
enum CtlAction {
    /// List the connected agents.
    Agents,
    /// List which identity owns each agent name.
    Bindings {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Release an agent name, so that the next identity to prove itself under it gets it.
    Forget {
        /// The agent's project.
        #[arg(long)]
        project: String,
        /// The agent's name.
        agent: String,
    },
    /// Let an agent that waits for approval (enroll = "closed") connect.
    Approve {
        /// The agent's project.
        #[arg(long)]
        project: String,
        /// The agent's name.
        agent: String,
    },
    /// Send a control request to an agent and print its answer.
    Request {
        /// The agent's project (needed when the name is connected in several).
        #[arg(long)]
        project: Option<String>,
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
        Command::Identity { config } => identity(config),
        Command::Run { config, print } => run(config, print),
        Command::Query {
            config,
            project,
            collector,
            agent,
            labels,
            field,
            since,
            until,
            json,
            stats,
            rate,
        } => {
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
            query(config, project, filter, Output { json, stats, rate })
        }
        Command::Ctl { config, addr, action } => ctl(config, addr, action),
        Command::Collectors { config, addr, json, action } => {
            let (cfg, rt) = admin(&config)?;
            let api = AdminApi::new(cfg.http.as_ref().ok_or(CtlError::NoHttp)?, addr)?;
            rt.block_on(collectors::run(&api, action, json))
        }
    }
}

fn load(config: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(config).with_context(|| format!("loading config {}", config.display()))
}

/// The config of a proxy whose admin API a command calls, and a runtime
/// to call it on.
fn admin(config: &std::path::Path) -> anyhow::Result<(Config, tokio::runtime::Runtime)> {
    let cfg = load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok((cfg, rt))
}

fn identity(config: PathBuf) -> anyhow::Result<()> {
    let cfg = load(&config)?;
    let (key, origin) = keyfile::load_or_create(&cfg.identity_file, &mut rand::rng())?;
    if origin == keyfile::Origin::Created {
        eprintln!("created identity key {}", cfg.identity_file.display());
    }
    println!("{}", key.identity());
    Ok(())
}

fn run(config: PathBuf, print: bool) -> anyhow::Result<()> {
    let cfg = load(&config)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let bound = wasmtap_proxy::bind(cfg, wasmtap_proxy::Options { print }).await?;
        // Tests and scripts read the bound addresses from these lines; a
        // reader that went away (a closed pipe) does not stop the proxy.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", bound.addr()?);
        if let Some(http) = bound.http_addr() {
            let _ = writeln!(out, "http listening on {http}");
        }
        let _ = out.flush();
        drop(out);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down (a second signal stops at once)");
            let _ = stop.send(true);
            wait_for_signal().await;
            tracing::warn!(
                "second signal: stopping now; the sinks resume from the store at the next start"
            );
            std::process::exit(1);
        });
        bound.serve(shutdown).await?;
        Ok(())
    })
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn ctl(
    config: PathBuf,
    addr: Option<std::net::SocketAddr>,
    action: CtlAction,
) -> anyhow::Result<()> {
    let (cfg, rt) = admin(&config)?;
    let api = AdminApi::new(cfg.http.as_ref().ok_or(CtlError::NoHttp)?, addr)?;
    let answer = rt.block_on(async {
        match &action {
            CtlAction::Agents => api.agents().await,
            CtlAction::Bindings { project } => api.bindings(project.as_deref()).await,
            CtlAction::Forget { project, agent } => api.binding(project, agent, "forget").await,
            CtlAction::Approve { project, agent } => api.binding(project, agent, "approve").await,
            CtlAction::Request { project, agent, command, args, timeout } => {
                api.request(project.as_deref(), agent, command, args, *timeout).await
            }
        }
    });
    let answer = match (answer, &action) {
        (Ok(a), _) => a,
        (Err(e), CtlAction::Agents) => return Err(e).context("listing agents"),
        (Err(e), CtlAction::Bindings { .. }) => return Err(e).context("listing bindings"),
        (Err(e), CtlAction::Forget { project, agent } | CtlAction::Approve { project, agent }) => {
            return Err(e).with_context(|| format!("agent `{agent}` of project `{project}`"));
        }
        (Err(e), CtlAction::Request { agent, command, .. }) => {
            return Err(e).with_context(|| format!("request `{command}` to agent `{agent}`"));
        }
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &answer)?;
    writeln!(out)?;
    Ok(())
}

/// How `query` prints.
struct Output {
    json: bool,
    stats: bool,
    rate: bool,
}

fn query(
    config: PathBuf,
    project: Option<String>,
    filter: Filter,
    Output { json, stats, rate }: Output,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let cfg = load(&config)?;
    let projects = match project {
        Some(p) => vec![ProjectId::new(&p).with_context(|| format!("project {p:?}"))?],
        None => Store::projects_in(&cfg.data_dir)?,
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = Vec::new();
    let mut print = |found: &scan::Found<'_>| {
        line.clear();
        if json {
            display::write_json_lines(found, &mut line);
        } else {
            line.extend_from_slice(display::found_line(found).as_bytes());
            line.push(b'\n');
        }
        out.write_all(&line)
    };
    let mut rates = query::rate::Rates::default();
    let mut emit = |found: &scan::Found<'_>| {
        if rate { rates.emit(found, &mut print) } else { print(found) }
    };
    let found = scan::projects(&cfg.data_dir, &projects, &filter, None, &mut emit);
    out.flush()?;
    let found = match found {
        Err(scan::QueryError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(());
        }
        other => other?,
    };
    if stats {
        eprintln!(
            "segments {} (skipped {}), chunks {}, row records {}, samples {}, damaged {}; {:.1} ms; peak memory {} KiB",
            found.segments,
            found.skipped,
            found.chunks,
            found.records,
            found.samples,
            found.damaged,
            started.elapsed().as_secs_f64() * 1e3,
            peak_rss_kib().unwrap_or(0),
        );
    }
    Ok(())
}

/// This process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}
