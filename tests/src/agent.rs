//! A real `wasmtap` agent process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context as _;

use crate::paths;

/// A running agent; killed on drop.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// Its stderr log.
    pub log: PathBuf,
    /// Its plugins directory.
    pub plugins: PathBuf,
}

impl Agent {
    /// Writes `agent.toml` under `dir` for a proxy on `port` and `key`, copies the
    /// named collectors into its plugins dir, and starts the agent. Names are
    /// relative to `target/plugins` (`load`, `testing/spin`).
    pub fn start(
        dir: &Path,
        name: &str,
        port: u16,
        key: &str,
        collectors: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with(dir, name, port, key, collectors, "")
    }

    /// Like [`Agent::start`], with extra lines for the `[plugins]` table.
    pub fn start_with(
        dir: &Path,
        name: &str,
        port: u16,
        key: &str,
        collectors: &[&str],
        plugins_extra: &str,
    ) -> anyhow::Result<Self> {
        let (config, plugins) = Self::prepare(dir, name, port, key, collectors, plugins_extra)?;
        Self::start_with_config(dir, &config, plugins)
    }

    /// Writes what [`Agent::start_with`] writes (`agent.toml`, the plugins
    /// dir with the named collectors) without starting the agent; returns
    /// the config file and the plugins dir.
    pub fn prepare(
        dir: &Path,
        name: &str,
        port: u16,
        key: &str,
        collectors: &[&str],
        plugins_extra: &str,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        for c in collectors {
            // `testing/spin` names a misbehaving collector; it is installed as `spin`.
            let (wasm, manifest) = paths::plugin(c)?;
            let file = c.rsplit('/').next().unwrap_or(c);
            std::fs::copy(&wasm, plugins.join(format!("{file}.wasm")))?;
            if manifest.is_file() {
                std::fs::copy(&manifest, plugins.join(format!("{file}.toml")))?;
            }
        }
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhosts = [\"127.0.0.1\"]\nport = {port}\naccess_key = \"{key}\"\nmax_backoff = \"2s\"\n\n[agent]\nname = \"{name}\"\ndata_dir = \"data\"\n\n[plugins]\ndir = \"plugins\"\n{plugins_extra}\n"
            ),
        )?;
        Ok((config, plugins))
    }

    /// Starts an agent on an existing config file.
    pub fn start_with_config(dir: &Path, config: &Path, plugins: PathBuf) -> anyhow::Result<Self> {
        Self::start_with_env(dir, config, plugins, &[])
    }

    /// Like [`Agent::start_with_config`], with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        config: &Path,
        plugins: PathBuf,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_exe(&paths::bin_dir()?.join("wasmtap"), dir, config, plugins, env)
    }

    /// Like [`Agent::start_with_env`], running the agent executable `exe`.
    pub fn start_exe(
        exe: &Path,
        dir: &Path,
        config: &Path,
        plugins: PathBuf,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let log = dir.join("agent.log");
        let child = Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting wasmtap")?;
        Ok(Self { child, log, plugins })
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the agent has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Kills the agent at once (SIGKILL) and waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for the agent to exit.
    pub fn terminate(mut self, timeout: std::time::Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "agent did not exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
