//! Control requests to a running agent through a real proxy's admin API
//! (`wasmtap-proxy ctl request AGENT …`): how tests read the agent's own
//! counters, such as each collector's calls, failures and timeouts.

use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{Proxy, paths};

/// The admin token of proxies started with [`admin_section`].
pub const TOKEN: &str = "test-token-0123456789";

/// Config text for a proxy's `[http]` listener (on an ephemeral port) with
/// the admin API on, for [`Proxy::start_with`].
pub fn admin_section() -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

/// Asks one agent, through one proxy.
#[derive(Debug)]
pub struct Ctl<'a> {
    proxy: &'a Proxy,
    agent: String,
}

impl<'a> Ctl<'a> {
    /// Requests to `agent` through `proxy` (started with [`admin_section`]).
    pub fn new(proxy: &'a Proxy, agent: &str) -> Self {
        Self { proxy, agent: agent.to_owned() }
    }

    /// Runs `ctl request AGENT ARGS…`; the agent's answer (`ok`), or its error.
    pub fn request(&self, args: &[&str]) -> anyhow::Result<Value> {
        let addr = self.proxy.http.context("the proxy has no [http] listener")?;
        let out = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
            .args(["ctl", "--config"])
            .arg(&self.proxy.config)
            .arg("--addr")
            .arg(addr.to_string())
            .arg("request")
            .arg(&self.agent)
            .args(args)
            .output()
            .context("running wasmtap-proxy ctl")?;
        if !out.status.success() {
            bail!("ctl request {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let answer: Value =
            serde_json::from_slice(&out.stdout).context("ctl printed no JSON document")?;
        Ok(answer["ok"].clone())
    }

    /// The agent's `collectors` entry for `name`, if it has one; `None` too
    /// while the agent is not connected yet. Other failures are errors.
    pub fn collector(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let list = match self.request(&["collectors"]) {
            Ok(list) => list,
            Err(e) if e.to_string().contains("is not connected") => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(list.as_array().and_then(|l| l.iter().find(|c| c["name"] == name)).cloned())
    }
}
