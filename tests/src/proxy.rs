//! A real `wasmtap-proxy` process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    /// The address of its `[http]` listener, when configured.
    pub http: Option<SocketAddr>,
    /// Kept open so that the proxy's later stdout lines have a reader.
    _stdout: BufReader<ChildStdout>,
}

impl Proxy {
    /// Starts a proxy under `dir` serving `projects` (name, key) on an ephemeral port.
    pub fn start(dir: &Path, projects: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(dir, projects, "")
    }

    /// Like [`Proxy::start`], with `extra` TOML appended to the config (for
    /// example an `[http]` section, whose bound address is then read too).
    pub fn start_with(dir: &Path, projects: &[(&str, &str)], extra: &str) -> anyhow::Result<Self> {
        Self::start_at(dir, "127.0.0.1:0", projects, extra)
    }

    /// Like [`Proxy::start_with`], listening on `listen` (restarting a proxy
    /// on its old address and store, or several proxies on one port).
    pub fn start_at(
        dir: &Path,
        listen: &str,
        projects: &[(&str, &str)],
        extra: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut text = format!("listen = \"{listen}\"\ndata_dir = \"store\"\n");
        for (name, key) in projects {
            text.push_str(&format!("\n[[projects]]\nname = \"{name}\"\naccess_key = \"{key}\"\n"));
        }
        text.push('\n');
        text.push_str(extra);
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
        let mut stdout = BufReader::new(child.stdout.take().context("proxy stdout")?);
        let mut read_addr = |prefix: &str| -> anyhow::Result<SocketAddr> {
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            match line.trim().strip_prefix(prefix) {
                Some(addr) => addr.parse().with_context(|| format!("proxy address {line:?}")),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "proxy did not start: {line:?}; log: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                }
            }
        };
        let addr = read_addr("listening on ")?;
        let http =
            if extra.contains("[http]") { Some(read_addr("http listening on ")?) } else { None };
        Ok(Self { child, addr, config, log, http, _stdout: stdout })
    }

    /// The proxy's identity key file (in its store directory).
    pub fn identity_file(dir: &Path) -> PathBuf {
        dir.join("store").join("identity.key")
    }

    /// Gives the proxy that will run in `dir` the identity of the one in
    /// `from` (proxies serving the same agents share the key file).
    pub fn share_identity(from: &Path, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir.join("store"))?;
        std::fs::copy(Self::identity_file(from), Self::identity_file(dir))
            .context("copying the identity key")?;
        Ok(())
    }

    /// `wasmtap-proxy identity`: the public identity (its last stdout line).
    pub fn identity(&self) -> anyhow::Result<String> {
        let out = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
            .args(["identity", "--config"])
            .arg(&self.config)
            .output()
            .context("running wasmtap-proxy identity")?;
        anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout)?;
        text.lines().last().map(str::to_owned).context("no identity printed")
    }

    /// One `wasmtap-proxy ctl` run against this proxy (at its bound
    /// `[http]` address, so `listen` may use port 0).
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<CtlAnswer> {
        self.admin_command(&["ctl"], args)
    }

    /// One `wasmtap-proxy collectors --json` run against this proxy.
    pub fn collectors(&self, args: &[&str]) -> anyhow::Result<CtlAnswer> {
        self.admin_command(&["collectors", "--json"], args)
    }

    /// `wasmtap-proxy COMMAND --config … [--addr …] ARGS` (a command that
    /// calls the admin API).
    fn admin_command(&self, command: &[&str], args: &[&str]) -> anyhow::Result<CtlAnswer> {
        let mut cmd = Command::new(paths::bin_dir()?.join("wasmtap-proxy"));
        cmd.args(command).arg("--config").arg(&self.config);
        if let Some(http) = self.http {
            cmd.arg("--addr").arg(http.to_string());
        }
        let out = cmd
            .args(args)
            .output()
            .with_context(|| format!("running wasmtap-proxy {}", command.join(" ")))?;
        let stdout = String::from_utf8(out.stdout)?;
        Ok(CtlAnswer {
            ok: out.status.success(),
            json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Everything the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of `series` (a metric name with its labels, as printed:
    /// `name{label="value"}`) on the proxy's `/metrics`; `None` if absent.
    pub fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let addr = self.http.context("the proxy has no [http] listener")?;
        let response = crate::http::get(addr, "/metrics", &[])?;
        anyhow::ensure!(response.status == 200, "GET /metrics: {}", response.status);
        let prefix = format!("{series} ");
        Ok(response
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// `wasmtap-proxy query --json` with extra arguments, one value per line.
    pub fn query(&self, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
        query(&self.config, args)
    }
}

/// What one `ctl` run printed.
#[derive(Debug)]
pub struct CtlAnswer {
    /// Whether it exited with success.
    pub ok: bool,
    /// The JSON it printed on stdout (`Null` if none).
    pub json: serde_json::Value,
    /// What it printed on stderr.
    pub stderr: String,
}

/// `wasmtap-proxy query --json` on the store of the proxy configured by
/// `config` (running or not), one value per line.
pub fn query(config: &Path, args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
        .args(["query", "--json", "--config"])
        .arg(config)
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

impl Proxy {
    /// Kills the proxy at once (SIGKILL) and waits for it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The exit status, if the proxy has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGTERM and waits up to `timeout` for the proxy to exit.
    pub fn terminate(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the proxy did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
