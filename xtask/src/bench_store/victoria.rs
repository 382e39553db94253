//! VictoriaMetrics single node (Debian's `victoria-metrics`) as the
//! baseline of `bench-store`: started on a fresh data directory, fed the
//! same values by remote write, flushed, merged, measured.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Proc, dir_bytes};
use crate::footprint::procfs;
use crate::packages;

const BINARY: &str = "/usr/bin/victoria-metrics";

/// The package the baseline needs.
pub const NEED: packages::Need = packages::Need {
    what: "VictoriaMetrics (the baseline of the store benchmark)",
    present: || Path::new(BINARY).exists(),
    packages: &["victoria-metrics"],
};

/// What the baseline measured.
pub struct Figures {
    /// Bytes of its data directory once merged.
    pub bytes: u64,
    /// Its CPU-seconds while taking the values.
    pub cpu: f64,
}

fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Runs the baseline in `dir` with the load generator `load`.
pub fn run(
    load: &Path,
    dir: &Path,
    agents: u64,
    seconds: u64,
    end_ms: u64,
    ticks: f64,
) -> anyhow::Result<Figures> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let vm = Proc(
        Command::new(BINARY)
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr={addr}"))
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("victoria-metrics.log"))?)
            .spawn()
            .context("starting victoria-metrics")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&addr, "/health").is_err() {
        anyhow::ensure!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = procfs::sample(vm.0.id(), ticks)?;
    let url = format!("http://{addr}/api/v1/write");
    let out = Command::new(load)
        .args(["write", &url, &agents.to_string(), &seconds.to_string(), &end_ms.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "remote write to victoria-metrics failed");
    get(&addr, "/internal/force_flush")?;
    let after = procfs::sample(vm.0.id(), ticks)?;
    // Merge every partition, then wait for the directory to stop changing.
    get(&addr, "/internal/force_merge")?;
    let (mut last, mut stable) = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(1_800);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        let bytes = dir_bytes(&data);
        if bytes != last {
            (last, stable) = (bytes, Instant::now());
        } else if stable.elapsed() >= Duration::from_secs(20) {
            break;
        }
    }
    drop(vm);
    Ok(Figures { bytes: dir_bytes(&data), cpu: after.cpu_s - before.cpu_s })
}
