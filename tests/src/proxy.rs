//! A real `wasmtap-proxy` process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::paths;

/// A running proxy; killed on drop.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its config file.
    pub config: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
}

impl Proxy {
    /// Starts a proxy under `dir` serving `projects` (name, key) on an ephemeral port.
    pub fn start(dir: &Path, projects: &[(&str, &str)]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut text = String::from("listen = \"127.0.0.1:0\"\ndata_dir = \"store\"\n");
        for (name, key) in projects {
            text.push_str(&format!("\n[[projects]]\nname = \"{name}\"\naccess_key = \"{key}\"\n"));
        }
        let config = dir.join("proxy.toml");
        std::fs::write(&config, text)?;
        let log = dir.join("proxy.log");
        let mut child = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting wasmtap-proxy")?;
        let stdout = child.stdout.take().context("proxy stdout")?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first)?;
        let Some(addr) = first.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!(
                "proxy did not start: {first:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let addr = addr.parse().context("proxy address")?;
        Ok(Self { child, addr, config, log })
    }

    /// Everything the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `wasmtap-proxy query --json` with extra arguments, one value per line.
    pub fn query(&self, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
        let out = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
            .args(["query", "--json", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .context("running wasmtap-proxy query")?;
        if !out.status.success() {
            bail!("query failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8(out.stdout)?
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("query line {l:?}")))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
