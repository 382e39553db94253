//! Acknowledged delivery end to end: real proxies that die and come back,
//! an agent that is killed, a spool that fills up. The `ticker` collector
//! counts 1, 2, 3, ... (every 100 ms, across restarts), so the store shows
//! exactly which samples arrived.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::ticks::{free_port, ticks, wait_for_tick};
use wasmtap_tests::{Agent, Proxy, new_key, plugin, spool, wait};

/// Writes an agent config for `hosts` on `port` and installs `collectors`.
fn agent_dir(
    dir: &Path,
    hosts: &[&str],
    port: u16,
    key: &str,
    collectors: &[&str],
    agent_extra: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for c in collectors {
        let (wasm, manifest) = plugin(c)?;
        let file = c.rsplit('/').next().unwrap_or(c);
        std::fs::copy(&wasm, plugins.join(format!("{file}.wasm")))?;
        std::fs::copy(&manifest, plugins.join(format!("{file}.toml")))?;
    }
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhosts = [{}]\nport = {port}\naccess_key = \"{key}\"\nmax_backoff = \"1s\"\n\n[agent]\nname = \"edge-1\"\ndata_dir = \"data\"\n{agent_extra}\n\n[plugins]\ndir = \"plugins\"\n",
            hosts.join(", ")
        ),
    )?;
    Ok((config, plugins))
}

/// A proxy for project `shop` on `127.0.0.1:port` (a port agents already try).
fn proxy_on(dir: &Path, port: u16, key: &str) -> anyhow::Result<Proxy> {
    Proxy::start_at(dir, &format!("127.0.0.1:{port}"), &[("shop", key)], "")
}

/// Every value from 1 to the highest is there, and no agent batch is
/// stored twice in one store; a value may sit in two stores only under one
/// batch sequence number (a resend to the other proxy after a lost ack).
fn assert_complete_and_deduplicated(proxies: &[&Proxy]) -> anyhow::Result<u64> {
    let all = ticks(proxies)?;
    let top = all.keys().next_back().copied().unwrap_or(0);
    let missing: Vec<u64> = (1..=top).filter(|n| !all.contains_key(n)).collect();
    assert!(missing.is_empty(), "lost ticks: {missing:?}");
    for (n, places) in &all {
        let seqs: BTreeSet<u64> = places.iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs.len(), 1, "tick {n} was sent in two different batches: {places:?}");
        let stores: BTreeSet<usize> = places.iter().map(|(i, _)| *i).collect();
        assert_eq!(stores.len(), places.len(), "tick {n} stored twice in one store: {places:?}");
    }
    Ok(top)
}

#[test]
fn failover_between_two_proxies_loses_nothing_and_stores_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let projects = [("shop", key.as_str())];
    let a = Proxy::start(&dir.path().join("a"), &projects)?;
    let port = a.addr.port();
    // The second proxy on the same port, on another loopback address; the
    // proxies of one deployment share the identity file.
    let b_listen = format!("127.0.0.2:{port}");
    Proxy::share_identity(&dir.path().join("a"), &dir.path().join("b"))?;
    let b = Proxy::start_at(&dir.path().join("b"), &b_listen, &projects, "")?;
    let (config, plugins) = agent_dir(
        &dir.path().join("agent"),
        &["127.0.0.1", "127.0.0.2"],
        port,
        &key,
        &["testing/ticker"],
        "",
    )?;
    let agent = Agent::start_with_config(&dir.path().join("agent"), &config, plugins)?;

    let first = wait_for_tick(&[&a, &b], 15, "ticks before any failure")?;
    a.kill()?;
    let second = wait_for_tick(&[&b], first + 15, "ticks after proxy a died")?;
    let a = proxy_on(&dir.path().join("a"), port, &key)?;
    b.kill()?;
    wait_for_tick(&[&a], second + 15, "ticks after proxy b died")?;
    let b = Proxy::start_at(&dir.path().join("b"), &b_listen, &projects, "")?;

    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");
    let top = assert_complete_and_deduplicated(&[&a, &b])?;
    assert!(top >= second + 15, "top {top}");
    for (i, p) in [&a, &b].iter().enumerate() {
        assert!(!ticks(&[p])?.is_empty(), "proxy {i} stored nothing: no failover happened");
    }
    Ok(())
}

#[test]
fn the_spool_holds_everything_while_no_proxy_is_up_and_drains() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let port = free_port()?;
    let (config, plugins) = agent_dir(
        &dir.path().join("agent"),
        &["127.0.0.1"],
        port,
        &key,
        &["testing/ticker"],
        "log_format = \"json\"",
    )?;
    let agent = Agent::start_with_config(&dir.path().join("agent"), &config, plugins)?;
    let data = dir.path().join("agent/data");
    wait::until(Duration::from_secs(30), "batches spooled while no proxy is up", || {
        Ok((spool::batches(&data)?.len() >= 4).then_some(()))
    })?;

    let proxy = proxy_on(&dir.path().join("proxy"), port, &key)?;
    wait_for_tick(&[&proxy], 50, "the backlog and new ticks")?;
    let log = agent.log_text();
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success());
    let top = assert_complete_and_deduplicated(&[&proxy])?;
    assert!(top >= 50);
    // log_format = "json": every line is one JSON object.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect::<anyhow::Result<_>>()?;
    assert!(lines.iter().any(|l| l["fields"]["message"] == "session established"), "{log}");
    Ok(())
}

#[test]
fn over_its_cap_the_spool_drops_the_oldest_and_counts_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let port = free_port()?;
    let (config, plugins) = agent_dir(
        &dir.path().join("agent"),
        &["127.0.0.1"],
        port,
        &key,
        &["testing/ticker", "testing/bulk"],
        "spool_cap = \"256KiB\"",
    )?;
    let agent = Agent::start_with_config(&dir.path().join("agent"), &config, plugins)?;
    wait::until(Duration::from_secs(30), "the spool to overflow", || {
        Ok(agent.log_text().contains("spool full: dropped the oldest").then_some(()))
    })?;
    let proxy = proxy_on(&dir.path().join("proxy"), port, &key)?;
    // The agent reports its own drops.
    let dropped = wait::until(Duration::from_secs(40), "the agent's drop counter", || {
        let rows = proxy.query(&["--collector", "agent"])?;
        Ok(rows
            .iter()
            .filter(|r| r["field"] == "spool_dropped_samples")
            .filter_map(|r| r["value"].as_f64())
            .find(|v| *v > 0.0))
    })?;
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success());
    let all = ticks(&[&proxy])?;
    let first = all.keys().next().copied().context("some ticks arrived")?;
    assert!(first > 1, "the oldest ticks were dropped, not the newest");
    let top = all.keys().next_back().copied().unwrap_or(0);
    let gaps: Vec<u64> = (first..=top).filter(|n| !all.contains_key(n)).collect();
    assert!(gaps.is_empty(), "after the dropped ones everything arrives: {gaps:?}");
    assert!(dropped > 0.0);
    Ok(())
}

#[test]
fn a_killed_agent_delivers_its_spool_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let port = free_port()?;
    let agent_home = dir.path().join("agent");
    let (config, plugins) =
        agent_dir(&agent_home, &["127.0.0.1"], port, &key, &["testing/ticker"], "")?;
    let agent = Agent::start_with_config(&agent_home, &config, plugins.clone())?;
    wait::until(Duration::from_secs(30), "batches spooled while no proxy is up", || {
        Ok((spool::batches(&agent_home.join("data"))?.len() >= 4).then_some(()))
    })?;
    agent.stop()?; // SIGKILL
    let proxy = proxy_on(&dir.path().join("proxy"), port, &key)?;
    let agent = Agent::start_with_config(&agent_home, &config, plugins)?;
    // Ticks from before the kill, then new ones from the restarted agent.
    wait_for_tick(&[&proxy], 45, "ticks from both runs")?;
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success());
    let all = ticks(&[&proxy])?;
    let top = all.keys().next_back().copied().unwrap_or(0);
    let missing: Vec<u64> = (1..=top).filter(|n| !all.contains_key(n)).collect();
    // At most the batch being formed when the agent died (one second of ticks).
    assert!(missing.len() <= 12, "lost more than one batch: {missing:?}");
    if let (Some(lo), Some(hi)) = (missing.first(), missing.last()) {
        assert_eq!(hi - lo + 1, missing.len() as u64, "losses are one run: {missing:?}");
        assert!(*lo > 10, "the spooled ticks survived: {missing:?}");
    }
    assert!(all.contains_key(&1), "the first tick, spooled before the kill, arrived");
    Ok(())
}

/// Batches spooled by a run whose clock was an hour ahead carry sequence
/// numbers every proxy with a right clock refuses; after the handshake the
/// agent gives them new ones, in order, and they arrive.
#[test]
fn batches_numbered_while_the_clock_was_ahead_are_renumbered_and_delivered() -> anyhow::Result<()> {
    use wasmtap_protocol::message::{Batch, Sample, Value};
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let home = dir.path().join("agent");
    let (config, plugins) =
        agent_dir(&home, &["127.0.0.1"], proxy.addr.port(), &key, &["testing/ticker"], "")?;
    let now = wait::now_ms();
    let ahead = now + 3_600_000;
    let seeded: Vec<Batch> = (0..3u64)
        .map(|i| Batch {
            seq: (ahead << 16) + i,
            samples: vec![Sample {
                collector: "seeded".into(),
                time_ms: now,
                labels: vec![("i".to_owned(), i.to_string())].into(),
                values: vec![("n".into(), Value::Gauge((i + 1) as f64))],
            }],
        })
        .collect();
    spool::seed(&home.join("data"), &seeded)?;
    let agent = Agent::start_with_config(&home, &config, plugins)?;
    let rows = wait::until(Duration::from_secs(60), "the batches from the future", || {
        let rows = proxy.query(&["--collector", "seeded"])?;
        Ok((rows.len() >= 3).then_some(rows))
    })
    .with_context(|| format!("agent:\n{}\nproxy:\n{}", agent.log_text(), proxy.log_text()))?;
    let log = agent.log_text();
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "{status:?}");
    let mut by_value: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| {
            Ok((r["value"].as_f64().context("value")? as u64, r["seq"].as_u64().context("seq")?))
        })
        .collect::<anyhow::Result<_>>()?;
    by_value.sort_unstable();
    assert_eq!(by_value.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [1, 2, 3], "each once");
    let seqs: Vec<u64> = by_value.iter().map(|(_, s)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in their order: {seqs:?}");
    assert!(seqs.iter().all(|s| s >> 16 < ahead - 3_000_000), "renumbered: {seqs:?}");
    assert!(log.contains("renumbered"), "{log}");
    Ok(())
}

#[test]
fn a_legacy_whatap_conf_is_accepted_and_a_malformed_one_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let home = dir.path().join("legacy");
    // Reuse the helper for the plugins, then write the legacy file beside them.
    let (_, plugins) = agent_dir(&home, &["unused"], 1, &key, &["testing/ticker"], "")?;
    let conf = home.join("whatap.conf");
    std::fs::write(
        &conf,
        format!(
            "# WhaTap agent settings\nlicense={key}\nwhatap.server.host=127.0.0.1/127.0.0.3\nwhatap.server.port={}\nhook_method_patterns=com.example.*\nwasmtap.agent.name=legacy-1\n",
            proxy.addr.port()
        ),
    )?;
    let agent = Agent::start_with_config(&home, &conf, plugins)?;
    let rows =
        wait::until(Duration::from_secs(30), "ticks from the legacy-configured agent", || {
            let rows = proxy.query(&["--collector", "ticker", "--agent", "legacy-1"])?;
            Ok((rows.len() >= 5).then_some(rows))
        })?;
    assert!(rows.iter().all(|r| r["agent"] == "legacy-1"));
    // Graceful shutdown closes the session with a reason.
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "{status:?}");
    wait::until(Duration::from_secs(5), "the proxy to log the close", || {
        Ok(proxy.log_text().contains("agent shutting down").then_some(()))
    })?;

    let bad = home.join("bad.conf");
    std::fs::write(&bad, format!("license={key}\nwhatap.server.host 10.0.0.1\n"))?;
    let out = std::process::Command::new(wasmtap_tests::paths::bin_dir()?.join("wasmtap"))
        .args(["run", "--config"])
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.conf") && stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains(&key[12..]), "the error leaks the key: {stderr}");
    Ok(())
}

#[test]
fn nothing_is_acknowledged_until_it_is_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy_home = dir.path().join("proxy");
    let proxy = Proxy::start(&proxy_home, &[("shop", &key)])?;
    // A file where the project's directory must go: every write fails.
    let blocker = proxy_home.join("store/shop");
    std::fs::write(&blocker, b"not a directory")?;
    let (config, plugins) = agent_dir(
        &dir.path().join("agent"),
        &["127.0.0.1"],
        proxy.addr.port(),
        &key,
        &["testing/ticker"],
        "",
    )?;
    let agent = Agent::start_with_config(&dir.path().join("agent"), &config, plugins)?;
    // Two failed sessions: the agent came back and tried again in between.
    wait::until(Duration::from_secs(30), "the proxy to fail writes twice", || {
        Ok((proxy.log_text().matches("store:").count() >= 2).then_some(()))
    })?;
    assert!(ticks(&[&proxy])?.is_empty(), "nothing stored while the store cannot write");
    // Writes work again: everything the agent had is still coming.
    std::fs::remove_file(&blocker)?;
    wait_for_tick(&[&proxy], 40, "ticks once the store can write")?;
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success());
    assert_complete_and_deduplicated(&[&proxy])?;
    Ok(())
}
