//! A real NATS cluster with JetStream (Debian's `nats-server`, installed
//! by `cargo xtask test`): three nodes on loopback ports, each with its own
//! JetStream store, routed to one another. A node can be killed with
//! SIGKILL and restarted on the same ports and store; the whole cluster
//! can be stopped and started again. Its ports lie below the ephemeral
//! range, so that nothing else takes them while a node is down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{http, wait};

/// Where Debian installs the server.
pub const BINARY: &str = "/usr/sbin/nats-server";

/// Ports for the nodes are taken below Linux's ephemeral range (32768 and
/// up), which outgoing connections draw from: a port picked here stays
/// free while a killed node is down, whatever the other tests connect to.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port in [`PORTS`], none handed out twice by this process: for
/// a server killed and restarted on the same port.
pub fn stable_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    if NEXT.load(Ordering::Relaxed) == 0 {
        let start = PORTS.start + rand::random::<u16>() % span;
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = PORTS.start + port.wrapping_sub(PORTS.start) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {PORTS:?}")
}

/// One node: its ports, its files, and its process while it runs.
#[derive(Debug)]
struct Node {
    name: String,
    config: PathBuf,
    log: PathBuf,
    client: u16,
    monitor: u16,
    child: Option<Child>,
}

/// A running cluster; every node is killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` nodes under `dir` and waits until each reports
    /// JetStream healthy.
    pub fn start(dir: &Path, size: usize) -> anyhow::Result<Self> {
        if !Path::new(BINARY).is_file() {
            bail!("{BINARY} is missing: `cargo xtask test` installs Debian's nats-server");
        }
        let routes: Vec<u16> = (0..size).map(|_| stable_port()).collect::<anyhow::Result<_>>()?;
        let route_urls: Vec<String> =
            routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let home = dir.join(&name);
            std::fs::create_dir_all(&home)?;
            let (client, monitor) = (stable_port()?, stable_port()?);
            let config = home.join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{\n  store_dir: \"{}\"\n}}\n\
                     cluster {{\n  name: wasmtap-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    home.join("js").display(),
                    route_urls.join(", "),
                ),
            )?;
            nodes.push(Node {
                log: home.join("nats.log"),
                name,
                config,
                client,
                monitor,
                child: None,
            });
        }
        let mut cluster = Self { nodes };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// The client URLs of every node, `nats://127.0.0.1:PORT`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client)).collect()
    }

    /// The URLs as a TOML array, for a `[cluster] nats = …` line.
    pub fn toml_urls(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let child = Command::new(BINARY)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {BINARY} for {}", node.name))?;
        node.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.nodes[i].monitor).parse()?;
        let what = format!("nats node {} healthy", self.nodes[i].name);
        let result = wait::until(Duration::from_secs(60), &what, || {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("nats-server exited: {status}");
            }
            Ok(http::get(addr, "/healthz", &[])
                .ok()
                .filter(|r| r.status == 200 && r.body.contains("ok"))
                .map(|_| ()))
        });
        result.with_context(|| self.log_text())
    }

    /// Kills node `i` (0-based) with SIGKILL.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts node `i` again on its ports and store, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i)?;
        self.spawn(i)?;
        self.wait_healthy(i)
    }

    /// Kills every node.
    pub fn kill_all(&mut self) -> anyhow::Result<()> {
        (0..self.nodes.len()).try_for_each(|i| self.kill(i))
    }

    /// Starts every stopped node and waits until all are healthy.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        (0..self.nodes.len()).try_for_each(|i| self.wait_healthy(i))
    }

    /// The nodes' logs, for a failing test's message.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} ---\n", n.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        let _ = self.kill_all();
    }
}
