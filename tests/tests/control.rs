//! Control requests over the agent's data session, end to end: the proxy's
//! admin API (through `wasmtap-proxy ctl`) asks a real agent, which answers
//! while its data keeps flowing.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtap_tests::{Agent, Proxy, new_key, paths, wait};

const TOKEN: &str = "test-token-0123456789";

struct Ctl<'a> {
    proxy: &'a Proxy,
}

impl Ctl<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<wasmtap_tests::proxy::CtlAnswer> {
        self.proxy.ctl(args)
    }

    /// `request edge-1 ARGS...`, which must succeed; its `ok` document.
    fn ask(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = vec!["request", "edge-1"];
        all.extend_from_slice(args);
        let a = self.run(&all)?;
        anyhow::ensure!(a.ok, "ctl {args:?} failed: {}", a.stderr);
        Ok(a.json["ok"].clone())
    }
}

fn highest_tick(proxy: &Proxy) -> anyhow::Result<u64> {
    Ok(proxy
        .query(&["--collector", "ticker"])?
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .fold(0.0, f64::max) as u64)
}

#[test]
fn control_requests_round_trip_while_data_flows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let proxy = Proxy::start_with(
        &dir.path().join("proxy"),
        &[("shop", &key)],
        &format!("[http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken = \"{TOKEN}\"\n"),
    )?;
    let agent_dir = dir.path().join("agent");
    // `slow` sleeps 5 s per call here: a wide margin for the requests
    // answered while it runs, on a loaded machine.
    let plugins = agent_dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let (slow_wasm, slow_manifest) = paths::plugin("testing/slow")?;
    std::fs::copy(&slow_wasm, plugins.join("slow.wasm"))?;
    let manifest = std::fs::read_to_string(&slow_manifest)?;
    anyhow::ensure!(manifest.contains("millis = 1500"), "slow's manifest changed: {manifest}");
    std::fs::write(plugins.join("slow.toml"), manifest.replace("millis = 1500", "millis = 5000"))?;
    let agent =
        Agent::start(&agent_dir, "edge-1", proxy.addr.port(), &key, &["testing/ticker", "load"])?;
    let ctl = Ctl { proxy: &proxy };
    wait::until(Duration::from_secs(20), "the agent to connect", || {
        let a = ctl.run(&["agents"])?;
        Ok(a.json
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["agent"] == "edge-1"))
            .then_some(()))
    })?;
    wait::until(
        Duration::from_secs(20),
        "ticks",
        || Ok((highest_tick(&proxy)? > 3).then_some(())),
    )?;

    let info = ctl.ask(&["info"])?;
    assert_eq!(info["agent"], "edge-1");
    assert_eq!(info["project"], "shop");
    assert!(info["version"].is_string() && info["uptime_s"].is_u64(), "{info}");
    assert_eq!(info["collectors"]["total"], 3, "{info}");

    let collectors = ctl.ask(&["collectors"])?;
    let ticker = collectors
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "ticker"))
        .context("ticker listed")?;
    assert_eq!(ticker["state"], "running");

    let config = ctl.ask(&["config"])?;
    assert_eq!(config["server"]["access_key"], "[redacted]");
    assert!(!config.to_string().contains(&key[12..]), "the key left the agent: {config}");

    let logs = ctl.ask(&["logs", "5"])?;
    let lines = logs.as_array().context("log lines")?;
    assert!(!lines.is_empty() && lines.len() <= 5, "{logs}");

    let ran = ctl.ask(&["run", "ticker"])?;
    assert_eq!(ran[0]["collector"], "ticker", "{ran}");
    assert!(ran[0]["values"]["n"].as_f64().is_some_and(|n| n >= 1.0), "{ran}");

    // Unknown commands and bad arguments get explicit errors.
    let unknown = ctl.run(&["request", "edge-1", "frobnicate"])?;
    assert!(
        !unknown.ok && unknown.stderr.contains("unknown command `frobnicate`"),
        "{}",
        unknown.stderr
    );
    let usage = ctl.run(&["request", "edge-1", "enable"])?;
    assert!(!usage.ok && usage.stderr.contains("usage: enable NAME"), "{}", usage.stderr);
    let missing = ctl.run(&["request", "edge-1", "run", "nope"])?;
    assert!(
        !missing.ok && missing.stderr.contains("no collector named `nope`"),
        "{}",
        missing.stderr
    );
    let nobody = ctl.run(&["request", "edge-9", "info"])?;
    assert!(!nobody.ok && nobody.stderr.contains("not connected"), "{}", nobody.stderr);

    // A slow request (the `slow` collector sleeps 5 s) does not hold up
    // other requests or the data.
    let before = highest_tick(&proxy)?;
    let runs = || agent.log_text().matches("command=run").count();
    let runs_before = runs();
    let slow = std::thread::spawn({
        let config = proxy.config.clone();
        move || -> anyhow::Result<Value> {
            let out = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
                .args(["ctl", "--config"])
                .arg(&config)
                .args(["request", "edge-1", "run", "slow"])
                .output()?;
            anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            Ok(serde_json::from_slice(&out.stdout)?)
        }
    });
    wait::until(Duration::from_secs(20), "the agent to take the slow request", || {
        Ok((runs() > runs_before).then_some(()))
    })?;
    ctl.ask(&["info"])?;
    assert!(!slow.is_finished(), "info was answered while the slow request was still running");
    let slow = slow.join().map_err(|_| anyhow::anyhow!("slow request thread panicked"))??;
    assert!(slow["ok"][0]["values"]["slept_ms"].as_f64().is_some_and(|ms| ms >= 4_900.0), "{slow}");
    let during = highest_tick(&proxy)?;
    assert!(
        during >= before + 5,
        "data kept flowing during the slow request: {before} -> {during}"
    );

    // Disable stops the collector, enable brings it back, reload keeps it.
    ctl.ask(&["disable", "ticker"])?;
    let disabled_at = wait::now_ms();
    // Once load samples from a second later are stored, every batch from
    // before has arrived: no ticker sample may be stamped after the disable.
    wait::for_sample_after(&proxy, "load", disabled_at + 1_000, Duration::from_secs(20))?;
    let stopped = highest_tick(&proxy)?;
    let last_tick = proxy
        .query(&["--collector", "ticker"])?
        .iter()
        .filter_map(|r| r["time"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(last_tick <= disabled_at, "a disabled collector is not called");
    let collectors = ctl.ask(&["collectors"])?;
    assert!(collectors.to_string().contains("\"disabled\""), "{collectors}");
    ctl.ask(&["enable", "ticker"])?;
    wait::until(Duration::from_secs(10), "ticks after enable", || {
        Ok((highest_tick(&proxy)? > stopped).then_some(()))
    })?;
    let reload = ctl.ask(&["reload"])?;
    assert!(reload["running"].to_string().contains("ticker"), "{reload}");
    Ok(())
}
