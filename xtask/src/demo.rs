//! `cargo xtask demo`: a project, its key, a local proxy and an agent with
//! the standard collectors; the proxy prints every sample it stores.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{plugins, util};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let seconds = match args {
        [] => None,
        [flag, n] if flag == "--seconds" => {
            Some(n.parse::<u64>().context("--seconds takes a number")?)
        }
        _ => bail!("usage: cargo xtask demo [--seconds N]"),
    };
    let root = util::root();
    let plugins_dir = plugins::build()?;
    util::cargo(&["build", "--bins", "-p", "wasmtap-host", "-p", "wasmtap-proxy"], &root)?;
    let bin = root.join("target/debug");

    let data = root.join("demo-data");
    std::fs::create_dir_all(&data).context("creating demo-data/")?;
    let out = Command::new(bin.join("wasmtap-proxy"))
        .args(["keygen", "--project", "demo"])
        .output()
        .context("running wasmtap-proxy keygen")?;
    if !out.status.success() {
        bail!("keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let key = String::from_utf8(out.stdout).context("key is not text")?.trim().to_owned();
    let proxy_toml = data.join("proxy.toml");
    std::fs::write(
        &proxy_toml,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"store\"\n\n[[projects]]\nname = \"demo\"\naccess_key = \"{key}\"\n"
        ),
    )?;
    let proxy_log = std::fs::File::create(data.join("proxy.log"))?;
    let mut proxy = Killed(
        Command::new(bin.join("wasmtap-proxy"))
            .args(["run", "--print", "--config"])
            .arg(&proxy_toml)
            .stdout(Stdio::piped())
            .stderr(proxy_log)
            .spawn()
            .context("starting wasmtap-proxy")?,
    );
    let mut lines = BufReader::new(proxy.0.stdout.take().context("proxy stdout")?).lines();
    let first =
        lines.next().context("proxy exited before listening (see demo-data/proxy.log)")??;
    let addr =
        first.strip_prefix("listening on ").context("unexpected first line from proxy")?.to_owned();
    let port = addr.rsplit(':').next().context("no port")?.to_owned();

    let agent_toml = data.join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "[server]\nhosts = [\"127.0.0.1\"]\nport = {port}\naccess_key = \"{key}\"\n\n[agent]\nname = \"demo-agent\"\ndata_dir = \"agent\"\n\n[plugins]\ndir = \"{}\"\n",
            plugins_dir.display()
        ),
    )?;
    let agent_log = std::fs::File::create(data.join("agent.log"))?;
    let _agent = Killed(
        Command::new(bin.join("wasmtap"))
            .args(["run", "--config"])
            .arg(&agent_toml)
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()
            .context("starting wasmtap")?,
    );
    println!("wasmtap demo: proxy on {addr}, project `demo`, agent `demo-agent`");
    println!(
        "config and logs in {}; samples as the proxy stores them (Ctrl-C stops):",
        data.display()
    );
    let printer = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => {
            let _ = printer.join();
        }
    }
    Ok(())
}
