//! `cargo xtask footprint [--seconds N]`: what the agent costs a monitored
//! machine, side by side with collectd and node_exporter in the same run.
//!
//! - wasmtap: the agent as shipped (`--profile dist`) with the six standard collectors at a 1 s
//!   interval, from a cold compile cache, sending through a counting relay
//!   to a proxy built the same way;
//! - collectd (Debian's `collectd-core`): cpu, memory, df, interface, load,
//!   disk and processes at a 1 s interval, sent encrypted by its network
//!   plugin through a counting relay to a collectd server;
//! - node_exporter (Debian's `prometheus-node-exporter`), its default
//!   collectors scraped once a second through a counting relay;
//! - the floor: a second agent in the same window with six no-op
//!   collectors (`plugins/testing/noop`: one constant value per collect, no
//!   file reads, no state), to its own proxy. It pays everything the agent
//!   spends per call and per tick (the guest call, its epoch deadline,
//!   checks, encoding, spool, encryption, sending) and nothing of the
//!   collectors' own work, so the two agent rows separate what wasmtime and
//!   the agent cost from what reading and parsing `/proc` costs;
//! - the reading floor ([`native`]): the six collectors' file reads and
//!   parsing done natively once a second by a small process, what reading
//!   `/proc` costs without a sandbox. The no-op agent plus this row is the
//!   least the agent could cost.
//!
//! After a warm-up, each tool's CPU time (user + system, all threads) is
//! measured over the same window; resident memory at its end; wire bytes
//! per value from the relays and the values each receiver got. Then an
//! agent with no collectors is measured alone (CPU and wake-ups), and the
//! stripped size of the agent binary. Results print as a table with the
//! targets of the footprint issue.

mod collectd;
pub(crate) mod native;
pub(crate) mod procfs;
mod relay;
mod scrape;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{packages, plugins, util};

/// The standard collectors the agent runs.
const STANDARD: [&str; 6] = ["cpu", "memory", "disk", "net", "load", "process"];
/// No-op collectors of the floor agent, one per standard collector.
const NOOPS: usize = STANDARD.len();
/// The baselines' binaries.
const COLLECTD: &str = "/usr/sbin/collectd";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// The baselines, as Debian packages.
const BASELINES: [packages::Need; 2] = [
    packages::Need {
        what: "collectd (the baseline of the footprint benchmark)",
        present: || Path::new(COLLECTD).exists(),
        packages: &["collectd-core"],
    },
    packages::Need {
        what: "node_exporter (the other baseline)",
        present: || Path::new(NODE_EXPORTER).exists(),
        packages: &["prometheus-node-exporter"],
    },
];
/// Time every tool runs before the measured window starts.
const WARM_UP: Duration = Duration::from_secs(10);

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// One tool's figures over the window.
struct Row {
    name: &'static str,
    cpu_s: f64,
    rss_kib: u64,
    bytes: u64,
    values: u64,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let seconds = match args {
        [] => 60,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds takes a number")?,
        _ => bail!("usage: cargo xtask footprint [--seconds N]"),
    };
    let window = Duration::from_secs(seconds);
    packages::install(&BASELINES)?;
    let root = util::root();
    let built = plugins::build()?;
    dist_build(&root)?;
    let bin = root.join("target/dist");
    let work = root.join("target/footprint");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let ticks = procfs::clock_ticks()?;

    // wasmtap: proxy, relay, agent with a cold cache.
    let key = keygen(&bin)?;
    let (proxy, proxy_addr) = start_proxy(&bin, &work.join("proxy"), &key)?;
    let (agent_relay, agent_bytes) = relay::tcp(proxy_addr)?;
    let agent = start_agent(&bin, &work.join("agent"), agent_relay, &key, &built, &STANDARD)?;
    // The floor: six no-op collectors, to a proxy of their own.
    let (floor_proxy, floor_proxy_addr) = start_proxy(&bin, &work.join("floor-proxy"), &key)?;
    let (floor_relay, floor_bytes) = relay::tcp(floor_proxy_addr)?;
    let floor = start_noop_agent(&bin, &work.join("floor-agent"), floor_relay, &key, &built)?;
    // collectd: server, relay, client.
    let collectd_listen = free_udp()?;
    let _collectd_server = Proc(collectd::server(&work.join("collectd-server"), collectd_listen)?);
    let (collectd_relay, collectd_bytes) = relay::udp(collectd_listen)?;
    let collectd_client = Proc(collectd::client(&work.join("collectd-client"), collectd_relay)?);
    // node_exporter, scraped through a relay.
    let exporter_addr = free_tcp()?;
    let exporter = Proc(
        Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address={exporter_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("node_exporter.log"))?)
            .spawn()
            .context("starting node_exporter")?,
    );
    let (exporter_relay, exporter_bytes) = relay::tcp(exporter_addr)?;
    let scraper = scrape::every_second(exporter_relay);
    // The native reading floor: this program, reading as the collectors do.
    let reads = Proc(
        Command::new(std::env::current_exe()?)
            .arg("footprint-reads")
            .spawn()
            .context("starting the native reader")?,
    );

    eprintln!("footprint: warming up for {WARM_UP:?}, then measuring {window:?}");
    std::thread::sleep(WARM_UP);
    let pids = [agent.pid(), collectd_client.pid(), exporter.pid(), floor.pid(), reads.pid()];
    let before: Vec<procfs::Sample> =
        pids.iter().map(|p| procfs::sample(*p, ticks)).collect::<Result<_, _>>()?;
    let counts_before = [
        (agent_bytes.get(), wasmtap_values(&bin, &work.join("proxy"))?),
        (collectd_bytes.get(), collectd::values_received(&work.join("collectd-server"))?),
        (exporter_bytes.get(), scraper.values()),
        (floor_bytes.get(), wasmtap_values(&bin, &work.join("floor-proxy"))?),
        (0, 0),
    ];
    std::thread::sleep(window);
    let after: Vec<procfs::Sample> =
        pids.iter().map(|p| procfs::sample(*p, ticks)).collect::<Result<_, _>>()?;
    let counts_after = [
        (agent_bytes.get(), wasmtap_values(&bin, &work.join("proxy"))?),
        (collectd_bytes.get(), collectd::values_received(&work.join("collectd-server"))?),
        (exporter_bytes.get(), scraper.values()),
        (floor_bytes.get(), wasmtap_values(&bin, &work.join("floor-proxy"))?),
        (0, 0),
    ];
    let names = [
        "wasmtap agent",
        "collectd",
        "node_exporter",
        "wasmtap agent, six no-op collectors",
        "the collectors' reads, native",
    ];
    let rows: Vec<Row> = (0..names.len())
        .map(|i| Row {
            name: names[i],
            cpu_s: after[i].cpu_s - before[i].cpu_s,
            rss_kib: after[i].rss_kib,
            bytes: counts_after[i].0 - counts_before[i].0,
            values: counts_after[i].1.saturating_sub(counts_before[i].1),
        })
        .collect();
    drop((agent, collectd_client, exporter, proxy, floor, floor_proxy, reads));

    // An agent with no collectors, alone.
    let idle_window = Duration::from_secs(30.min(seconds.max(10)));
    let (proxy, proxy_addr) = start_proxy(&bin, &work.join("idle-proxy"), &key)?;
    let idle = start_agent(&bin, &work.join("idle-agent"), proxy_addr, &key, &built, &[])?;
    std::thread::sleep(Duration::from_secs(5));
    let a = procfs::sample(idle.pid(), ticks)?;
    let t = Instant::now();
    std::thread::sleep(idle_window);
    let b = procfs::sample(idle.pid(), ticks)?;
    let elapsed = t.elapsed().as_secs_f64();
    drop((idle, proxy));
    let idle_cpu_30 = (b.cpu_s - a.cpu_s) * 30.0 / elapsed;
    let idle_wakeups = b.switches.saturating_sub(a.switches) as f64 / elapsed;

    let stripped = stripped_size(&bin.join("wasmtap"), &work)?;
    report(&rows, window, idle_cpu_30, idle_wakeups, b.threads, stripped);
    Ok(())
}

fn report(
    rows: &[Row],
    window: Duration,
    idle_cpu_30: f64,
    idle_wakeups: f64,
    idle_threads: u64,
    stripped: u64,
) {
    let secs = window.as_secs_f64();
    println!("\n## Footprint, {} s at a 1 s interval (cargo xtask footprint)\n", window.as_secs());
    println!(
        "| | CPU-s | % of one core | RSS at the end | wire bytes | values | bytes per value |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let wire = if r.values > 0 {
            format!("{} | {} | {:.2}", r.bytes, r.values, r.bytes as f64 / r.values as f64)
        } else {
            "— | — | —".to_owned()
        };
        println!(
            "| {} | {:.2} | {:.2} % | {:.1} MiB | {wire} |",
            r.name,
            r.cpu_s,
            100.0 * r.cpu_s / secs,
            r.rss_kib as f64 / 1024.0,
        );
    }
    let (agent, collectd, floor, reads) = (&rows[0], &rows[1], &rows[3], &rows[4]);
    let ratio = agent.cpu_s / collectd.cpu_s;
    println!(
        "\nThe floor (six no-op collectors, same window) is {:.2}× collectd's CPU and {:.1} MiB: \
         what the agent costs with collectors that do nothing; the standard collectors' own \
         work is the difference, {:.2} CPU-s.",
        floor.cpu_s / collectd.cpu_s,
        floor.rss_kib as f64 / 1024.0,
        agent.cpu_s - floor.cpu_s
    );
    println!(
        "The same reads and parsing done natively cost {:.2} CPU-s ({:.2}× collectd's): \
         with the no-op agent, a floor of {:.2}× collectd's CPU for the agent; the standard \
         collectors' work costs {:.1}× what it costs natively.",
        reads.cpu_s,
        reads.cpu_s / collectd.cpu_s,
        (floor.cpu_s + reads.cpu_s) / collectd.cpu_s,
        (agent.cpu_s - floor.cpu_s) / reads.cpu_s.max(f64::EPSILON),
    );
    let per_value = agent.bytes as f64 / agent.values.max(1) as f64;
    let mib = agent.rss_kib as f64 / 1024.0;
    let stripped_mb = stripped as f64 / 1e6;
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("\n| target | measured | |");
    println!("|---|---|---|");
    println!("| agent CPU ≤ 0.75× collectd's | {ratio:.2}× | {} |", mark(ratio <= 0.75));
    println!(
        "| agent RSS ≤ 12 MiB at the end (cold cache at start) | {mib:.1} MiB | {} |",
        mark(mib <= 12.0)
    );
    println!(
        "| idle agent (no collectors) ≤ 0.02 CPU-s per 30 s | {idle_cpu_30:.3} CPU-s | {} |",
        mark(idle_cpu_30 <= 0.02)
    );
    println!(
        "| idle agent ≤ 2 wake-ups per second | {idle_wakeups:.1} ({idle_threads} threads) | {} |",
        mark(idle_wakeups <= 2.0)
    );
    println!(
        "| wire ≤ 3 bytes per value (stretch 2) | {per_value:.2} | {} |",
        mark(per_value <= 3.0)
    );
    println!(
        "| stripped agent binary ≤ 15 MB | {stripped_mb:.1} MB | {} |",
        mark(stripped_mb <= 15.0)
    );
}

fn keygen(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin.join("wasmtap-proxy"))
        .args(["keygen", "--project", "footprint"])
        .output()
        .context("running wasmtap-proxy keygen")?;
    anyhow::ensure!(out.status.success(), "keygen failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn start_proxy(bin: &Path, dir: &Path, key: &str) -> anyhow::Result<(Proc, std::net::SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"store\"\n[[projects]]\nname = \"footprint\"\naccess_key = \"{key}\"\n"
        ),
    )?;
    let mut child = Command::new(bin.join("wasmtap-proxy"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("proxy.log"))?)
        .spawn()
        .context("starting wasmtap-proxy")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("proxy stdout")?).read_line(&mut line)?;
    let addr = line.trim().strip_prefix("listening on ").context("proxy did not start")?.parse()?;
    Ok((Proc(child), addr))
}

fn start_agent(
    bin: &Path,
    dir: &Path,
    proxy: std::net::SocketAddr,
    key: &str,
    built: &Path,
    collectors: &[&str],
) -> anyhow::Result<Proc> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for c in collectors {
        std::fs::copy(built.join(format!("{c}.wasm")), plugins.join(format!("{c}.wasm")))?;
        let manifest = std::fs::read_to_string(built.join(format!("{c}.toml")))?;
        std::fs::write(plugins.join(format!("{c}.toml")), at_1s(&manifest, None))?;
    }
    spawn_agent(bin, dir, proxy, key, &[])
}

/// An agent with [`NOOPS`] copies of the no-op collector at a 1 s
/// interval. The agent refuses two collectors of one name, so copy `i` is
/// granted the environment variable `NOOP_NAME_i`, whose value it takes as
/// its name.
fn start_noop_agent(
    bin: &Path,
    dir: &Path,
    proxy: std::net::SocketAddr,
    key: &str,
    built: &Path,
) -> anyhow::Result<Proc> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let manifest = std::fs::read_to_string(built.join("testing/noop.toml"))?;
    let mut env = Vec::new();
    for i in 1..=NOOPS {
        std::fs::copy(built.join("testing/noop.wasm"), plugins.join(format!("noop-{i}.wasm")))?;
        let var = format!("NOOP_NAME_{i}");
        std::fs::write(plugins.join(format!("noop-{i}.toml")), at_1s(&manifest, Some(&var)))?;
        env.push((var, format!("noop_{i}")));
    }
    spawn_agent(bin, dir, proxy, key, &env)
}

/// `manifest` with a 1 s interval and, if given, `env_grant` as its only
/// granted environment variable.
fn at_1s(manifest: &str, env_grant: Option<&str>) -> String {
    manifest
        .lines()
        .map(|l| match env_grant {
            _ if l.starts_with("interval") => "interval = \"1s\"".to_owned(),
            Some(var) if l.starts_with("env") => format!("env = [\"{var}\"]"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the agent in `dir` (its plugins already laid out) with `env` added.
fn spawn_agent(
    bin: &Path,
    dir: &Path,
    proxy: std::net::SocketAddr,
    key: &str,
    env: &[(String, String)],
) -> anyhow::Result<Proc> {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhosts = [\"{}\"]\nport = {}\naccess_key = \"{key}\"\n\n[agent]\nname = \"footprint\"\ndata_dir = \"data\"\n\n[plugins]\ndir = \"plugins\"\n",
            proxy.ip(),
            proxy.port()
        ),
    )?;
    Ok(Proc(
        Command::new(bin.join("wasmtap"))
            .args(["run", "--config"])
            .arg(&config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log"))?)
            .spawn()
            .context("starting wasmtap")?,
    ))
}

/// Numeric values the proxy has stored so far (every collector's,
/// the agent's own included: they all crossed the relay).
fn wasmtap_values(bin: &Path, proxy_dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new(bin.join("wasmtap-proxy"))
        .args(["query", "--json", "--config"])
        .arg(proxy_dir.join("proxy.toml"))
        .output()
        .context("running wasmtap-proxy query")?;
    anyhow::ensure!(out.status.success(), "query failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !l.windows(14).any(|w| w == b"\"kind\":\"text\""))
        .count() as u64)
}

/// Builds what ships, as it ships: the agent without the compiler, and
/// beside it `wasmtap-compile` and the proxy. Two builds, as cargo would
/// otherwise unify the features and link the compiler into the agent.
pub fn dist_build(root: &Path) -> anyhow::Result<()> {
    util::cargo(
        &[
            "build",
            "--profile",
            "dist",
            "-p",
            "wasmtap-host",
            "--no-default-features",
            "--bin",
            "wasmtap",
        ],
        root,
    )?;
    util::cargo(
        &[
            "build",
            "--profile",
            "dist",
            "-p",
            "wasmtap-host",
            "-p",
            "wasmtap-proxy",
            "--bin",
            "wasmtap-compile",
            "--bin",
            "wasmtap-proxy",
        ],
        root,
    )
}

fn stripped_size(binary: &Path, work: &Path) -> anyhow::Result<u64> {
    let out: PathBuf = work.join("wasmtap.stripped");
    let status =
        Command::new("strip").arg("-o").arg(&out).arg(binary).status().context("running strip")?;
    anyhow::ensure!(status.success(), "strip failed");
    Ok(std::fs::metadata(&out)?.len())
}

fn free_udp() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_tcp() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
