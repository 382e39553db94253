//! `cargo xtask bench-ingest [--values N]`: what `[cluster]` costs the
//! proxy's ingest, beside the embedded store and VictoriaMetrics, in one run.
//!
//! The load is `bench-store`'s (10 agents × 1,000 series, one value per
//! series and simulated second, sent by `proxy/examples/store_load` over
//! real sessions as fast as acknowledgements come back; default 10 M values):
//!
//! 1. into a release proxy with its embedded store (`/metrics` without its
//!    table of latest values, `max_series = 0`, in both proxy runs): the
//!    proxy's CPU-seconds from the first batch until every batch is
//!    acknowledged and the store has compressed the segments it closed
//!    (read on `/metrics/proxy`), and the time from sending a batch to its
//!    acknowledgement (median and 99th percentile);
//! 2. into a proxy with `[cluster]` over a three-node NATS JetStream
//!    cluster on loopback (Debian's `nats-server`, three replicas): the same,
//!    and until the proxy's own store has every batch from the stream (so
//!    the CPU counts publishing, confirmation and the feed into the store);
//!    the three NATS servers' CPU-seconds beside it;
//! 3. into VictoriaMetrics single node (Debian's `victoria-metrics`) by
//!    remote write: its CPU-seconds for the same values.
//!
//! Targets: the clustered proxy ingests at least 0.5× the embedded one's
//! values per CPU-second, and the embedded proxy at least 2× VictoriaMetrics'.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench_store::{self, AGENTS, Bench, Proc, SERIES_PER_AGENT, victoria};
use crate::footprint::procfs;
use crate::{packages, util};

/// Debian's NATS server.
const NATS: &str = "/usr/sbin/nats-server";
const NATS_NEED: packages::Need = packages::Need {
    what: "nats-server (the JetStream cluster of the ingest benchmark)",
    present: || Path::new(NATS).exists(),
    packages: &["nats-server"],
};

/// What one ingest run measured.
struct Run {
    /// The proxy's CPU-seconds.
    cpu: f64,
    /// The NATS servers' CPU-seconds (clustered run only).
    nats_cpu: f64,
    /// Wall seconds.
    wall: f64,
    /// Send to acknowledgement, ms: median and 99th percentile.
    p50: f64,
    p99: f64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Three NATS nodes with JetStream, routed to one another on loopback.
struct Nats {
    nodes: Vec<Proc>,
    urls: Vec<String>,
}

impl Nats {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let route_urls: Vec<String> =
            routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let (mut nodes, mut urls, mut monitors) = (Vec::new(), Vec::new(), Vec::new());
        for (i, route) in routes.iter().enumerate() {
            let home = dir.join(format!("n{}", i + 1));
            std::fs::create_dir_all(&home)?;
            let (client, monitor) = (free_port()?, free_port()?);
            let config = home.join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: n{}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                     max_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n}}\n\
                     cluster {{\n  name: bench\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    i + 1,
                    home.join("js").display(),
                    route_urls.join(", "),
                ),
            )?;
            let log = std::fs::File::create(home.join("nats.log"))?;
            let child = Command::new(NATS)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting nats-server")?;
            nodes.push(Proc(child));
            urls.push(format!("nats://127.0.0.1:{client}"));
            monitors.push(SocketAddr::from(([127, 0, 0, 1], monitor)));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for m in monitors {
            while !get(m, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
                if Instant::now() > deadline {
                    bail!("nats node {m} did not become healthy (logs under {})", dir.display());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(Self { nodes, urls })
    }

    fn cpu(&self, ticks: f64) -> anyhow::Result<f64> {
        self.nodes.iter().map(|n| Ok(procfs::sample(n.0.id(), ticks)?.cpu_s)).sum()
    }
}

/// Sends `seconds` of the load to `proxy`; with `fed`, also waits until
/// the proxy's `/metrics` at that address says the stream fed its store
/// every batch.
fn ingest(
    bench: &Bench,
    proxy: &bench_store::Proxy,
    seconds: u64,
    end_ms: u64,
    ticks: f64,
    http: SocketAddr,
    nats: Option<&Nats>,
) -> anyhow::Result<Run> {
    let pid = proxy.pid();
    let before = procfs::sample(pid, ticks)?;
    let nats_before = nats.map(|n| n.cpu(ticks)).transpose()?.unwrap_or(0.0);
    let started = Instant::now();
    let (addr, agents) = (proxy.addr.to_string(), AGENTS.to_string());
    let out = bench.load(&[
        "send",
        &addr,
        &bench.key,
        &agents,
        &seconds.to_string(),
        &end_ms.to_string(),
    ])?;
    let mut lines = out.lines();
    let values: u64 = lines.next().context("values sent")?.parse()?;
    anyhow::ensure!(values == seconds * AGENTS * SERIES_PER_AGENT, "sent {values} values");
    let latency: Vec<f64> = lines
        .next()
        .context("latencies")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let batches = (AGENTS * seconds) as f64;
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        let body = get(http, "/metrics/proxy")?;
        let metric = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        // Under [cluster]: until the stream has fed the store every batch.
        let fed = nats.is_none()
            || metric("wasmtap_proxy_cluster_fed_batches_total ").is_some_and(|n| n >= batches);
        // Both: until the store has compressed what it closed (the segment
        // being written stays in rows), so both runs count that work.
        let settled = metric("wasmtap_proxy_store_row_segments{project=\"bench\"} ")
            .is_some_and(|n| n <= 1.0);
        if fed && settled {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the store did not settle:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = procfs::sample(pid, ticks)?.cpu_s - before.cpu_s;
    let nats_cpu = nats.map(|n| n.cpu(ticks)).transpose()?.unwrap_or(0.0) - nats_before;
    let (p50, p99) = match latency[..] {
        [a, b] => (a, b),
        _ => bail!("latencies: {latency:?}"),
    };
    Ok(Run { cpu, nats_cpu, wall, p50, p99 })
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let values = bench_store::values_arg(args, 10_000_000, "bench-ingest")?;
    let series = AGENTS * SERIES_PER_AGENT;
    packages::install(&[NATS_NEED, victoria::NEED])?;
    let bench = Bench::build()?;
    let work = util::root().join("target/bench-ingest");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let ticks = procfs::clock_ticks()?;
    let end_ms = bench_store::now_ms() / 1_000 * 1_000;
    let seconds = values / series;

    // Both proxies serve /metrics/proxy, which tells when the store has
    // settled, and keep no table of latest values (max_series = 0): its
    // upkeep is not ingest, and VictoriaMetrics has none.
    let http_section =
        |http: SocketAddr| format!("\n[http]\nlisten = \"{http}\"\nmax_series = 0\n");
    eprintln!("bench-ingest: {values} values into the embedded store");
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let proxy = bench.start_proxy(&work.join("embedded"), &http_section(http))?;
    let embedded = ingest(&bench, &proxy, seconds, end_ms, ticks, http, None)?;
    drop(proxy);

    eprintln!("bench-ingest: {values} values through a three-node JetStream cluster");
    let nats = Nats::start(&work.join("nats"))?;
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let urls: Vec<String> = nats.urls.iter().map(|u| format!("\"{u}\"")).collect();
    let cluster_section = format!(
        "\n[cluster]\nnats = [{}]\nname = \"bench\"\nreplicas = 3\n{}",
        urls.join(", "),
        http_section(http)
    );
    let proxy = bench.start_proxy(&work.join("cluster"), &cluster_section)?;
    let clustered = ingest(&bench, &proxy, seconds, end_ms, ticks, http, Some(&nats))?;
    drop(proxy);
    drop(nats);

    eprintln!("bench-ingest: the same values into VictoriaMetrics by remote write");
    let vm = victoria::run(&bench.load, &work.join("victoria"), AGENTS, seconds, end_ms, ticks)?;
    report(values, &embedded, &clustered, vm.cpu, &work);
    Ok(())
}

fn report(values: u64, embedded: &Run, clustered: &Run, vm_cpu: f64, work: &Path) {
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let rate = |cpu: f64| values as f64 / cpu / 1e6;
    let (e, c, v) = (rate(embedded.cpu), rate(clustered.cpu), rate(vm_cpu));
    let all = rate(clustered.cpu + clustered.nats_cpu);
    println!("| what | figure | target | |");
    println!("|---|---|---|---|");
    println!(
        "| embedded store: ingest per proxy CPU-second | {e:.2} M values ({:.1} CPU-s, {:.1} s wall) | — | |",
        embedded.cpu, embedded.wall
    );
    println!(
        "| `[cluster]`, three replicas: ingest per proxy CPU-second, the feed into its store included | {c:.2} M values ({:.2}× the embedded store; {:.1} CPU-s, {:.1} s wall) | ≥ 0.5× | {} |",
        c / e,
        clustered.cpu,
        clustered.wall,
        mark(c / e >= 0.5)
    );
    println!(
        "| the same, the three NATS servers' CPU included | {all:.2} M values ({:.1} CPU-s of NATS) | — | |",
        clustered.nats_cpu
    );
    println!(
        "| send to acknowledgement, embedded store | p50 {:.1} ms, p99 {:.1} ms | — | |",
        embedded.p50, embedded.p99
    );
    println!(
        "| send to acknowledgement, `[cluster]` | p50 {:.1} ms, p99 {:.1} ms | — | |",
        clustered.p50, clustered.p99
    );
    println!(
        "| VictoriaMetrics (remote write): ingest per CPU-second | {v:.2} M values ({vm_cpu:.1} CPU-s); the embedded store {:.2}× | embedded ≥ 2× | {} |",
        e / v,
        mark(e / v >= 2.0)
    );
    eprintln!("bench-ingest: logs and data under {}", work.display());
}
