//! A real Prometheus server (Debian's `prometheus` package, installed by
//! `cargo xtask test`) on 127.0.0.1 with a temporary store and its
//! remote-write receiver on, for round trips through remote write, or
//! scraping a `/metrics` endpoint every second; and its `promtool`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::http;
use crate::pki::Pki;

/// Where Debian installs the server.
pub const BINARY: &str = "/usr/bin/prometheus";
/// Where Debian installs its tool.
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// What `promtool check metrics` says of an exposition: its problems, one
/// per line (none when the exposition passes).
pub fn promtool_problems(exposition: &str) -> anyhow::Result<Vec<String>> {
    use std::io::Write as _;
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {PROMTOOL} (installed by `cargo xtask test`)"))?;
    child.stdin.take().context("promtool stdin")?.write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let problems: Vec<String> =
        text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    if !out.status.success() && problems.is_empty() {
        bail!("promtool failed without saying why ({})", out.status);
    }
    Ok(problems)
}

/// A running Prometheus; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Its HTTP address (remote write at `/api/v1/write`, queries at `/api/v1/query`).
    pub addr: SocketAddr,
    /// Its log.
    pub log: PathBuf,
    /// When it serves HTTPS: the client settings that trust its certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Prometheus {
    /// Starts Prometheus with its store under `dir` and waits until it is ready.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::launch(dir, None, None)
    }

    /// Like [`Prometheus::start`], serving HTTPS only, with `pki`'s server certificate.
    pub fn start_tls(dir: &Path, pki: &Pki) -> anyhow::Result<Self> {
        Self::launch(dir, Some(pki), None)
    }

    /// Like [`Prometheus::start`], scraping `target`'s `/metrics` every
    /// second as job `wasmtap` (Prometheus asks for OpenMetrics first).
    pub fn start_scraping(dir: &Path, target: SocketAddr) -> anyhow::Result<Self> {
        Self::launch(dir, None, Some(target))
    }

    fn launch(dir: &Path, pki: Option<&Pki>, scrape: Option<SocketAddr>) -> anyhow::Result<Self> {
        if !Path::new(BINARY).is_file() {
            bail!(
                "{BINARY} is missing: run `cargo xtask test`, which installs Debian's `prometheus` package"
            );
        }
        std::fs::create_dir_all(dir)?;
        let config = dir.join("prometheus.yml");
        // Without a target, no scrape jobs: everything arrives by remote write.
        let mut yml = "global:\n  evaluation_interval: 1m\n".to_owned();
        if let Some(target) = scrape {
            yml.push_str(&format!(
                "scrape_configs:\n  - job_name: wasmtap\n    scrape_interval: 1s\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        std::fs::write(&config, yml)?;
        let log = dir.join("prometheus.log");
        let web = dir.join("web.yml");
        if let Some(pki) = pki {
            std::fs::write(
                &web,
                format!(
                    "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                    pki.cert.display(),
                    pki.key.display()
                ),
            )?;
        }
        // The free port may be taken between probe and bind: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut command = Command::new(BINARY);
            if pki.is_some() {
                command.arg(format!("--web.config.file={}", web.display()));
            }
            let child = command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--web.enable-remote-write-receiver")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("starting {BINARY}"))?;
            let tls = pki.map(|p| p.client.clone());
            let mut p = Self { child, addr, log: log.clone(), tls };
            if p.wait_ready(Duration::from_secs(60))? {
                return Ok(p);
            }
            last_log = p.log_text();
        }
        bail!("prometheus did not start; last log:\n{last_log}")
    }

    /// Polls `/-/ready`; `false` if the process exited first.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(false);
            }
            if self.get("/-/ready").is_ok_and(|r| r.status == 200) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("prometheus not ready after {timeout:?}; log:\n{}", self.log_text())
    }

    fn get(&self, path: &str) -> anyhow::Result<http::Response> {
        match &self.tls {
            Some(tls) => http::request_tls(self.addr, tls, "GET", path, &[], b""),
            None => http::get(self.addr, path, &[]),
        }
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What Prometheus holds of `metric`'s metadata (`/api/v1/metadata`):
    /// a list of `{type, help, unit}`.
    pub fn metadata(&self, metric: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let path = format!("/api/v1/metadata?metric={}", http::encode_query(metric));
        let r = self.get(&path)?;
        let v = r.json()?;
        if r.status != 200 || v["status"] != "success" {
            bail!("metadata of {metric:?} failed: HTTP {}: {}", r.status, r.body);
        }
        Ok(v["data"][metric].as_array().cloned().unwrap_or_default())
    }

    /// An instant PromQL query through `/api/v1/query`; the `data.result` vector.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let path = format!("/api/v1/query?query={}", http::encode_query(promql));
        let r = self.get(&path)?;
        let v = r.json()?;
        if r.status != 200 || v["status"] != "success" {
            bail!("query {promql:?} failed: HTTP {}: {}", r.status, r.body);
        }
        v["data"]["result"].as_array().cloned().context("data.result is not an array")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
