//! A real Prometheus server (Debian's `prometheus` package, installed by
//! `cargo xtask test`) on 127.0.0.1 with a temporary store and its
//! remote-write receiver on, for round trips through remote write.

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
        Self::launch(dir, None)
    }

    /// Like [`Prometheus::start`], serving HTTPS only, with `pki`'s server certificate.
    pub fn start_tls(dir: &Path, pki: &Pki) -> anyhow::Result<Self> {
        Self::launch(dir, Some(pki))
    }

    fn launch(dir: &Path, pki: Option<&Pki>) -> anyhow::Result<Self> {
        if !Path::new(BINARY).is_file() {
            bail!(
                "{BINARY} is missing: run `cargo xtask test`, which installs Debian's `prometheus` package"
            );
        }
        std::fs::create_dir_all(dir)?;
        let config = dir.join("prometheus.yml");
        // No scrape jobs: everything it holds arrives by remote write.
        std::fs::write(&config, "global:\n  evaluation_interval: 1m\n")?;
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
