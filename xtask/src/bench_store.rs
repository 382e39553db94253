//! `cargo xtask bench-store [--values N]`: the proxy's embedded store at
//! scale, beside VictoriaMetrics (Debian's `victoria-metrics`) fed the same
//! values by remote write, in the same run.
//!
//! 1. N values (default 100 M; 10 agents × 1,000 series, one value per
//!    series and second, so N / 10,000 seconds ending now) are sent to a
//!    release proxy by the load generator (`proxy/examples/store_load.rs`)
//!    over real sessions, as fast as acknowledgements come back; once the
//!    closed segments are compressed, the proxy's CPU time (every thread,
//!    compression included) gives values ingested per CPU-second. Against
//!    today's write path (a proxy that keeps row segments, `compress =
//!    false`), ingest is compared in three alternating pairs of up to 10 M
//!    values each, rows then compressed, every one into a fresh store: the
//!    median ratio is reported with its range, as one pair alone moves
//!    with the machine's state by more than the difference it measures.
//! 2. Bytes on disk per value: every file of the project's store.
//! 3. One series over one hour, the newest hour and one in the middle:
//!    `wasmtap-proxy query --stats` wall time (median of 7) and the peak
//!    resident memory of the querying process.
//! 4. Start-up with the values on disk: from starting the proxy until a
//!    new agent's first batch is acknowledged (its project opened), after
//!    a SIGTERM and after a kill -9.
//! 5. VictoriaMetrics: the same values by remote write (a minute of one
//!    agent per request), flushed and merged; bytes of its data directory
//!    per value.
//!
//! N must be a multiple of 10,000. A full run at 100 M takes a while on
//! the project's 2-core machine (VictoriaMetrics' ingestion most of it).

pub(crate) mod victoria;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::footprint::procfs;
use crate::{packages, util};

/// Agents of the load, and series per agent.
pub(crate) const AGENTS: u64 = 10;
pub(crate) const SERIES_PER_AGENT: u64 = 1_000;
/// Values of each run of the ingest comparison, at most.
const PAIR_VALUES: u64 = 10_000_000;
/// Alternating pairs of runs (rows kept, then compressed) in the comparison.
const PAIRS: usize = 3;
/// Runs of each query; the median is reported.
const QUERY_RUNS: usize = 7;
/// The proxy's store maintenance thread (compression, retention).
const MAINTENANCE_THREAD: &str = "wasmtap-store-maint";
/// The proxy's store writer thread (records, group commits).
const WRITER_THREAD: &str = "wasmtap-store";

/// A proxy's CPU-seconds for a load (every thread, and its maintenance
/// thread alone), and the wall time of the sending.
struct Ingest {
    cpu: f64,
    compression: f64,
    /// The store writer thread's share.
    writer: f64,
    wall: f64,
}

/// A child process killed on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn now_ms() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Bytes of the files under `dir`, recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The release binaries, the load generator and the project's key.
pub(crate) struct Bench {
    bin: PathBuf,
    pub(crate) load: PathBuf,
    pub(crate) key: String,
}

/// A running proxy and where it listens.
pub(crate) struct Proxy {
    proc: Proc,
    pub(crate) addr: SocketAddr,
    config: PathBuf,
}

impl Proxy {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

impl Bench {
    /// Builds the release proxy and the load generator, and makes a key.
    pub(crate) fn build() -> anyhow::Result<Self> {
        let root = util::root();
        util::cargo(
            &["build", "--release", "-p", "wasmtap-proxy", "--bins", "--example", "store_load"],
            &root,
        )?;
        let bin = root.join("target/release");
        Ok(Self { load: bin.join("examples/store_load"), key: keygen(&bin)?, bin })
    }

    /// Starts a proxy in `dir` whose config has `store` in its `[store]`
    /// section (sections may follow).
    pub(crate) fn start_proxy(&self, dir: &Path, store: &str) -> anyhow::Result<Proxy> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"store\"\n[[projects]]\nname = \"bench\"\naccess_key = \"{}\"\n[store]\n{store}\n[limits]\nmax_clock_skew = \"24h\"\n",
                self.key
            ),
        )?;
        let mut child = Command::new(self.bin.join("wasmtap-proxy"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("proxy.log"))?,
            )
            .spawn()
            .context("starting wasmtap-proxy")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("proxy stdout")?).read_line(&mut line)?;
        let addr =
            line.trim().strip_prefix("listening on ").context("proxy did not start")?.parse()?;
        Ok(Proxy { proc: Proc(child), addr, config })
    }

    pub(crate) fn load(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.load).args(args).stderr(Stdio::inherit()).output()?;
        anyhow::ensure!(out.status.success(), "store_load {} failed", args.first().unwrap_or(&""));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Sends `values` ending at `end_ms`; the proxy's CPU-seconds for it
    /// (compression included when `compressed`: it waits for that), and
    /// the wall time of the sending.
    fn ingest(
        &self,
        proxy: &Proxy,
        values: u64,
        end_ms: u64,
        ticks: f64,
        compressed: bool,
    ) -> anyhow::Result<Ingest> {
        let seconds = (values / (AGENTS * SERIES_PER_AGENT)).to_string();
        let pid = proxy.proc.0.id();
        let before = procfs::sample(pid, ticks)?;
        let maint_before = procfs::thread_cpu(pid, MAINTENANCE_THREAD, ticks)?;
        let writer_before = procfs::thread_cpu(pid, WRITER_THREAD, ticks)?;
        let started = Instant::now();
        let (addr, agents, end) = (proxy.addr.to_string(), AGENTS.to_string(), end_ms.to_string());
        let sent = self.load(&["send", &addr, &self.key, &agents, &seconds, &end])?;
        let wall = started.elapsed().as_secs_f64();
        let sent = sent.lines().next().unwrap_or_default();
        anyhow::ensure!(sent == values.to_string(), "sent {sent} values, not {values}");
        if compressed {
            wait_compressed(&proxy.config.with_file_name("store").join("bench"))?;
        }
        let after = procfs::sample(pid, ticks)?;
        let maint = procfs::thread_cpu(pid, MAINTENANCE_THREAD, ticks)? - maint_before;
        let writer = procfs::thread_cpu(pid, WRITER_THREAD, ticks)? - writer_before;
        Ok(Ingest { cpu: after.cpu_s - before.cpu_s, compression: maint, writer, wall })
    }

    /// Time from starting a proxy in `dir` until a new agent `name` has a batch acknowledged.
    fn start_up(&self, dir: &Path, name: &str) -> anyhow::Result<(f64, Proxy)> {
        let started = Instant::now();
        let proxy = self.start_proxy(dir, "")?;
        self.load(&["probe", &proxy.addr.to_string(), &self.key, name, "1"])?;
        Ok((started.elapsed().as_secs_f64(), proxy))
    }

    /// `query --stats` for one series between `since` and `until` (ms):
    /// the median wall time (ms) and the largest peak memory (KiB) of the runs.
    fn query(&self, config: &Path, since: u64, until: u64) -> anyhow::Result<(f64, u64, usize)> {
        let (mut times, mut peak, mut lines) = (Vec::new(), 0, 0);
        for _ in 0..QUERY_RUNS {
            let started = Instant::now();
            let out = Command::new(self.bin.join("wasmtap-proxy"))
                .args(["query", "--json", "--stats", "--project", "bench", "--agent", "bench-003"])
                .args(["--collector", "bench", "--label", "series=42", "--field", "f5"])
                .arg(format!("--since=unix-ms:{since}"))
                .arg(format!("--until=unix-ms:{until}"))
                .arg("--config")
                .arg(config)
                .output()?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(
                out.status.success(),
                "query: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            lines = out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
            let stats = String::from_utf8_lossy(&out.stderr).into_owned();
            let kib = stats
                .rsplit_once("peak memory ")
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok())
                .with_context(|| format!("no peak memory in {stats:?}"))?;
            peak = peak.max(kib);
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], peak, lines))
    }
}

/// Waits until every closed segment under `store` is compressed.
fn wait_compressed(store: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3_600);
    loop {
        let names: Vec<String> = std::fs::read_dir(store)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        let rows = names.iter().filter(|n| n.ends_with(".seg")).count();
        if rows <= 1 && !names.iter().any(|n| n.ends_with(".tmp")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("closed segments still not compressed after an hour");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn keygen(bin: &Path) -> anyhow::Result<String> {
    let out =
        Command::new(bin.join("wasmtap-proxy")).args(["keygen", "--project", "bench"]).output()?;
    anyhow::ensure!(out.status.success(), "keygen failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The `[--values N]` of benchmark `command` (`default` without it): a
/// positive multiple of the load's series.
pub(crate) fn values_arg(args: &[String], default: u64, command: &str) -> anyhow::Result<u64> {
    let values: u64 = match args {
        [] => default,
        [flag, n] if flag == "--values" => {
            n.replace('_', "").parse().context("--values takes a number")?
        }
        _ => bail!("usage: cargo xtask {command} [--values N]"),
    };
    let series = AGENTS * SERIES_PER_AGENT;
    if values == 0 || !values.is_multiple_of(series) {
        bail!("--values must be a positive multiple of {series}");
    }
    Ok(values)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let values = values_arg(args, 100_000_000, "bench-store")?;
    let series = AGENTS * SERIES_PER_AGENT;
    packages::install(&[victoria::NEED])?;
    let bench = Bench::build()?;
    let work = util::root().join("target/bench-store");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let ticks = procfs::clock_ticks()?;
    let end_ms = now_ms() / 1_000 * 1_000;

    // Ingest against today's write path (rows kept), in alternating pairs.
    let pair_values = values.min(PAIR_VALUES);
    let mut pairs = Vec::with_capacity(PAIRS);
    for i in 1..=PAIRS {
        eprintln!(
            "bench-store: pair {i} of {PAIRS}, {pair_values} values kept as rows, then compressed"
        );
        let run = |name: &str, store: &str, compressed: bool| -> anyhow::Result<Ingest> {
            let dir = work.join(name);
            let proxy = bench.start_proxy(&dir, store)?;
            let ingest = bench.ingest(&proxy, pair_values, end_ms, ticks, compressed)?;
            drop(proxy);
            std::fs::remove_dir_all(&dir)?;
            Ok(ingest)
        };
        let rows = run("baseline", "compress = false", false)?;
        let compressed = run("paired", "", true)?;
        pairs.push(Pair { rows, compressed });
    }

    eprintln!("bench-store: {values} values into a compressing store");
    let home = work.join("proxy");
    let proxy = bench.start_proxy(&home, "")?;
    let ingest = bench.ingest(&proxy, values, end_ms, ticks, true)?;
    let store = home.join("store/bench");
    let bytes = dir_bytes(&store);
    let seconds = values / series;
    let hour = 3_600_000.min(seconds * 1_000);
    let newest = bench.query(&proxy.config, end_ms - hour, end_ms)?;
    let middle_start = end_ms - seconds * 1_000 / 2 - hour / 2;
    let middle = bench.query(&proxy.config, middle_start, middle_start + hour)?;
    let full_hour = (hour / 1_000) as usize;
    anyhow::ensure!(
        newest.2 == full_hour && middle.2 == full_hour,
        "an hour of one series: {} and {} values",
        newest.2,
        middle.2
    );

    // Start-up after SIGTERM, then after kill -9.
    let status = Command::new("kill").args(["-TERM", &proxy.proc.0.id().to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let mut proxy = proxy;
    proxy.proc.0.wait()?;
    let (clean, proxy) = bench.start_up(&home, "probe-clean")?;
    drop(proxy); // kill -9
    let (killed, proxy) = bench.start_up(&home, "probe-killed")?;
    drop(proxy);

    eprintln!("bench-store: the same values into VictoriaMetrics by remote write");
    let vm = victoria::run(&bench.load, &work.join("victoria"), AGENTS, seconds, end_ms, ticks)?;

    report(
        values,
        Figures { ingest, pairs, pair_values, bytes, newest, middle, clean, killed },
        &vm,
    );
    Ok(())
}

/// One pair of the ingest comparison: the run with rows kept, and the
/// compressed run.
struct Pair {
    rows: Ingest,
    compressed: Ingest,
}

/// The median and the range of `xs`.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let (lo, hi) = (xs.first().copied().unwrap_or(0.0), xs.last().copied().unwrap_or(0.0));
    (xs.get(xs.len() / 2).copied().unwrap_or(0.0), lo, hi)
}

/// What the run measured of the proxy.
struct Figures {
    ingest: Ingest,
    pairs: Vec<Pair>,
    pair_values: u64,
    bytes: u64,
    newest: (f64, u64, usize),
    middle: (f64, u64, usize),
    clean: f64,
    killed: f64,
}

fn report(values: u64, f: Figures, vm: &victoria::Figures) {
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let per_value = f.bytes as f64 / values as f64;
    let vm_per_value = vm.bytes as f64 / values as f64;
    let rate = values as f64 / f.ingest.cpu / 1e6;
    let compression_ns = f.ingest.compression * 1e9 / values as f64;
    let pv = f.pair_values as f64;
    let (ratio, ratio_lo, ratio_hi) =
        spread(f.pairs.iter().map(|p| p.rows.cpu / p.compressed.cpu).collect());
    let (path, path_lo, path_hi) = spread(
        f.pairs
            .iter()
            .map(|p| p.rows.cpu / (p.compressed.cpu - p.compressed.compression))
            .collect(),
    );
    let (base_rate, _, _) = spread(f.pairs.iter().map(|p| pv / p.rows.cpu / 1e6).collect());
    let (writer_share, _, _) = spread(f.pairs.iter().map(|p| p.rows.writer / p.rows.cpu).collect());
    let (budget, _, _) = spread(
        f.pairs
            .iter()
            .map(|p| (p.rows.cpu - (p.compressed.cpu - p.compressed.compression)) * 1e9 / pv)
            .collect(),
    );
    let (with_rate, _, _) = spread(f.pairs.iter().map(|p| pv / p.compressed.cpu / 1e6).collect());
    println!("\n## Store at {} M values (cargo xtask bench-store)\n", values / 1_000_000);
    println!("| what | figure | target | |");
    println!("|---|---|---|---|");
    println!(
        "| bytes on disk per value (blocks, indexes, the segment being written) | {per_value:.2} ({:.1} MB) | ≤ 2 | {} |",
        f.bytes as f64 / 1e6,
        mark(per_value <= 2.0)
    );
    println!(
        "| VictoriaMetrics, same values by remote write, flushed and merged | {vm_per_value:.2} ({:.1} MB) | — | |",
        vm.bytes as f64 / 1e6
    );
    for (what, q) in [("the newest hour", f.newest), ("an hour in the middle", f.middle)] {
        let mib = q.1 as f64 / 1024.0;
        println!(
            "| one series over {what}: latency (median of {QUERY_RUNS}), peak RSS of `query` | {:.1} ms, {mib:.1} MiB | ≤ 50 ms, ≤ 64 MiB | {} |",
            q.0,
            mark(q.0 <= 50.0 && mib <= 64.0)
        );
    }
    for (what, s) in [("after SIGTERM", f.clean), ("after kill -9", f.killed)] {
        println!(
            "| start-up {what}, until a new agent's batch is acknowledged | {s:.2} s | ≤ 2 s | {} |",
            mark(s <= 2.0)
        );
    }
    let pairs =
        format!("median of {PAIRS} alternating pairs of {} M values", f.pair_values / 1_000_000);
    println!(
        "| ingest per proxy CPU-second, compression included, against today's write path (rows kept, no compression), {pairs} | {ratio:.2}× ({ratio_lo:.2}–{ratio_hi:.2}×; {with_rate:.2} M against {base_rate:.2} M values) | ≥ 1× | {} |",
        mark(ratio >= 1.0)
    );
    println!(
        "| the same, the ingest path alone (every thread but the store's maintenance thread) | {path:.2}× ({path_lo:.2}–{path_hi:.2}×) | ≥ 1× | {} |",
        mark(path >= 1.0)
    );
    println!(
        "| what compression may cost for the ingest target: the rows-only baseline less the ingest path, per value | {budget:.1} ns | — | |"
    );
    println!(
        "| the store writer thread's share of the rows-only baseline (records, checksums, writes, group commits) | {:.0} % ({:.1} ns per value) | — | |",
        writer_share * 100.0,
        writer_share * 1e3 / base_rate
    );
    println!(
        "| ingest per proxy CPU-second at {} M values, compression included | {rate:.2} M values ({:.1} CPU-s; {:.0} s wall) | — | |",
        values / 1_000_000,
        f.ingest.cpu,
        f.ingest.wall
    );
    println!(
        "| compression, on the maintenance thread | {compression_ns:.0} ns per value ({:.1} CPU-s) | — | |",
        f.ingest.compression
    );
    println!(
        "| VictoriaMetrics ingest (remote write) | {:.2} M values per CPU-second ({:.1} CPU-s) | — | |",
        values as f64 / vm.cpu / 1e6,
        vm.cpu
    );
}
