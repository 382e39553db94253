//! Collector distribution end to end: a real proxy publishes real compiled
//! collectors (`testing/fleet-v1`, and `testing/fleet-v2`, the same
//! collector broken) to real agents over their data sessions, through
//! `wasmtap-proxy collectors`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtap_tests::ctl::admin_section;
use wasmtap_tests::{Agent, Proxy, new_key, paths, wait};

/// Long enough for a report the proxy refreshes every 30 s.
const WAIT: Duration = Duration::from_secs(120);

fn publish(proxy: &Proxy, wasm: &Path, extra: &[&str]) -> anyhow::Result<Value> {
    let mut args = vec!["publish", "--project", "shop", wasm.to_str().context("path")?];
    args.extend_from_slice(extra);
    let out = proxy.collectors(&args)?;
    anyhow::ensure!(out.ok, "publish failed: {}", out.stderr);
    Ok(out.json)
}

/// One agent in `collectors status`: name, the release it has, its status, the reason.
type Row = (String, Option<u64>, String, String);

/// `collectors status --project shop fleet`.
fn status(proxy: &Proxy) -> anyhow::Result<Vec<Row>> {
    let out = proxy.collectors(&["status", "--project", "shop", "fleet"])?;
    anyhow::ensure!(out.ok, "status failed: {}", out.stderr);
    Ok(out
        .json
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["agent"].as_str().unwrap_or("").to_owned(),
                a["release"].as_u64(),
                a["status"].as_str().unwrap_or("").to_owned(),
                a["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

/// Waits until every one of `agents` reports `release` of `fleet` as `want`.
fn until_all(proxy: &Proxy, agents: &[&str], release: u64, want: &str) -> anyhow::Result<()> {
    wait::until(WAIT, &format!("release {release} {want} on {agents:?}"), || {
        let s = status(proxy)?;
        let done = agents.iter().all(|a| {
            s.iter().any(|(name, r, st, _)| name == a && *r == Some(release) && st == want)
        });
        Ok(done.then_some(()))
    })
    .with_context(|| format!("{:?}\n{}", status(proxy).ok(), proxy.log_text()))
}

/// Waits until `agent`'s own report (its `agent` collector) on `fleet`
/// has every field of `want` with its value.
fn until_reported(proxy: &Proxy, agent: &str, want: &[(&str, Value)]) -> anyhow::Result<()> {
    wait::until(WAIT, &format!("{agent}'s report on fleet: {want:?}"), || {
        let args = ["--collector", "agent", "--agent", agent, "--label", "collector=fleet"];
        let rows = proxy.query(&args)?;
        let has = |(field, value): &(&str, Value)| {
            rows.iter().any(|r| r["field"] == *field && r["value"] == *value)
        };
        Ok(want.iter().all(has).then_some(()))
    })
}

fn release_state(proxy: &Proxy, id: u64) -> anyhow::Result<(String, String)> {
    let out = proxy.collectors(&["list", "--project", "shop"])?;
    anyhow::ensure!(out.ok, "list failed: {}", out.stderr);
    let r = out.json.as_array().into_iter().flatten().find(|r| r["id"] == id);
    let r = r.with_context(|| format!("no release {id} in {}", out.json))?;
    Ok((r["state"].as_str().unwrap_or("").into(), r["reason"].as_str().unwrap_or("").into()))
}

fn start_agents(
    dir: &Path,
    proxy: &Proxy,
    key: &str,
    names: &[&str],
) -> anyhow::Result<Vec<Agent>> {
    let agents = names
        .iter()
        .map(|n| Agent::start(&dir.join(n), n, proxy.addr.port(), key, &[]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for a in &agents {
        wait::until(WAIT, "the agent's session", || {
            Ok(a.log_text().contains("session established").then_some(()))
        })?;
    }
    Ok(agents)
}

#[test]
fn a_published_collector_reaches_every_agent_and_a_broken_canary_rolls_back_by_itself()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &admin_section())?;
    let names = ["web-01", "web-02", "web-03"];
    let _agents = start_agents(dir.path(), &proxy, &key, &names)?;

    let (v1, _) = paths::plugin("testing/fleet-v1")?;
    let r1 = publish(&proxy, &v1, &[])?;
    assert_eq!((r1["id"].as_u64(), r1["state"].as_str()), (Some(1), Some("promoted")), "{r1}");
    until_all(&proxy, &names, 1, "running")?;
    // `list` counts the agents on each release, by status.
    wait::until(WAIT, "list counting three agents running release 1", || {
        let l = list(&proxy)?;
        Ok((l[0]["id"] == 1 && l[0]["agents"] == serde_json::json!({"running": 3})).then_some(()))
    })
    .with_context(|| format!("{:?}", list(&proxy).ok()))?;
    for agent in names {
        wait::until(WAIT, "the agent's fleet samples", || {
            let rows = proxy.query(&["--collector", "fleet", "--agent", agent])?;
            Ok((!rows.is_empty()).then_some(()))
        })?;
    }
    // The agent reports on its managed collectors too: version and origin.
    until_reported(&proxy, "web-01", &[("version", "1.0.0".into()), ("managed", 1.0.into())])
        .with_context(|| {
            format!(
                "{:?}",
                proxy.query(&["--collector", "agent", "--agent", "web-01"]).map(|r| r
                    .into_iter()
                    .filter(|r| r["labels"].to_string().contains("fleet"))
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>())
            )
        })?;

    // Version 2 traps in collect: the one canary agent catches it.
    let (v2, _) = paths::plugin("testing/fleet-v2")?;
    let r2 = publish(&proxy, &v2, &["--canary", "34%", "--watch", "10m"])?;
    assert_eq!(r2["state"], "canary", "{r2}");
    let canaries: Vec<String> = serde_json::from_value(r2["canary"]["agents"].clone())?;
    assert_eq!(canaries.len(), 1, "34 % of 3: one agent");
    let (state, reason) = wait::until(WAIT, "the automatic rollback", || {
        let (state, reason) = release_state(&proxy, 2)?;
        Ok((state == "rolled_back").then_some((state, reason)))
    })
    .with_context(|| proxy.log_text())?;
    assert_eq!(state, "rolled_back");
    assert!(reason.contains(&canaries[0]), "the reason names the agent: {reason}");
    // Every agent runs version 1 again, the canary included.
    until_all(&proxy, &names, 1, "running")?;
    assert_eq!(release_state(&proxy, 1)?.0, "promoted");

    // The proxy's /metrics shows the releases and the agents on each.
    let http = proxy.http.context("the proxy's [http] listener")?;
    let metrics = wasmtap_tests::http::get(http, "/metrics", &[])?.body;
    for line in [
        r#"wasmtap_proxy_fleet_release{project="shop",collector="fleet",release="1",version="1.0.0",state="promoted"} 1.0"#,
        r#"wasmtap_proxy_fleet_rollbacks_total{project="shop",collector="fleet"} 1.0"#,
        r#"wasmtap_proxy_fleet_agents{project="shop",collector="fleet",release="1",status="running"} 3.0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    let problems = wasmtap_tests::prometheus::promtool_problems(&metrics)?;
    assert!(problems.is_empty(), "{problems:?}");
    Ok(())
}

#[test]
fn over_granted_unsigned_tampered_and_invalid_collectors_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &admin_section())?;
    // One agent trusts a publisher key, one takes what its bounds allow.
    let key_file = dir.path().join("publisher.key");
    let keygen = std::process::Command::new(paths::bin_dir()?.join("wasmtap"))
        .args(["plugin", "keygen", "--out"])
        .arg(&key_file)
        .output()?;
    anyhow::ensure!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let public = String::from_utf8(keygen.stdout)?.trim().to_owned();
    let strict = Agent::start_with(
        &dir.path().join("strict"),
        "strict",
        proxy.addr.port(),
        &key,
        &[],
        &format!("trusted_keys = [\"{public}\"]"),
    )?;
    let open = start_agents(dir.path(), &proxy, &key, &["open"])?.pop().context("agent")?;
    wait::until(WAIT, "the strict agent's session", || {
        Ok(strict.log_text().contains("session established").then_some(()))
    })?;

    // Bad input: nothing is published.
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm but not really")?;
    let bad_manifest = dir.path().join("bad.toml");
    std::fs::write(&bad_manifest, "interval = \"often\"\n")?;
    let (v1, _) = paths::plugin("testing/fleet-v1")?;
    for (args, says) in [
        (
            vec!["publish", "--project", "shop", garbage.to_str().context("path")?],
            "not a valid component",
        ),
        (vec!["publish", "--project", "nope", v1.to_str().context("path")?], "no project `nope`"),
        (
            vec![
                "publish",
                "--project",
                "shop",
                v1.to_str().context("path")?,
                "--manifest",
                bad_manifest.to_str().context("path")?,
            ],
            "interval",
        ),
        (
            vec!["publish", "--project", "shop", v1.to_str().context("path")?, "--canary", "0%"],
            "between 1% and 100%",
        ),
        (vec!["promote", "--project", "shop", "fleet"], "never published"),
    ] {
        let out = proxy.collectors(&args)?;
        assert!(!out.ok, "{args:?} succeeded");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    let list = proxy.collectors(&["list", "--project", "shop"])?;
    assert_eq!(list.json, serde_json::json!([]), "a failed publish leaves the catalog unchanged");

    // A manifest that grants more than the agents allow: both refuse, with the grant.
    let greedy = dir.path().join("greedy.toml");
    std::fs::write(&greedy, "[grants]\nread = [\"/etc\"]\n")?;
    publish(&proxy, &v1, &["--manifest", greedy.to_str().context("path")?])?;
    wait::until(WAIT, "both refusals", || {
        let s = status(&proxy)?;
        let refused =
            s.iter().filter(|(_, _, st, why)| st == "refused" && why.contains("/etc")).count();
        Ok((refused == 2).then_some(()))
    })
    .with_context(|| format!("{:?}", status(&proxy).ok()))?;
    // The agent's own report says so too.
    until_reported(&proxy, "open", &[("state", "refused".into()), ("refused", 1.0.into())])?;

    // Within bounds but unsigned: the strict agent refuses, the open one runs it.
    let (_, manifest) = paths::plugin("testing/fleet-v1")?;
    let unsigned = dir.path().join("fleet.wasm");
    std::fs::copy(&v1, &unsigned)?;
    std::fs::copy(&manifest, unsigned.with_extension("toml"))?;
    publish(&proxy, &unsigned, &[])?;
    wait::until(WAIT, "unsigned refused by strict, running on open", || {
        let s = status(&proxy)?;
        let strict = s
            .iter()
            .any(|(a, _, st, why)| a == "strict" && st == "refused" && why.contains("unsigned"));
        let open = s.iter().any(|(a, r, st, _)| a == "open" && *r == Some(2) && st == "running");
        Ok((strict && open).then_some(()))
    })
    .with_context(|| format!("{:?}", status(&proxy).ok()))?;

    // Signed by the trusted key (the signature beside the file is taken): both run it.
    let sign = std::process::Command::new(paths::bin_dir()?.join("wasmtap"))
        .args(["plugin", "sign"])
        .arg(&unsigned)
        .arg("--key")
        .arg(&key_file)
        .output()?;
    anyhow::ensure!(sign.status.success(), "{}", String::from_utf8_lossy(&sign.stderr));
    let signed = publish(&proxy, &unsigned, &[])?;
    let id = signed["id"].as_u64().context("id")?;
    until_all(&proxy, &["strict", "open"], id, "running")?;

    // A blob damaged on the proxy's disk is refused by the agent that
    // receives it, which keeps running the release it has.
    strict.stop()?;
    open.stop()?;
    let (v2, _) = paths::plugin("testing/fleet-v2")?;
    let r = publish(&proxy, &v2, &[])?;
    let sha = r["sha256"].as_str().context("sha256")?;
    let blob = dir.path().join("proxy/store/fleet/shop/blobs").join(format!("{sha}.wasm"));
    let mut bytes = std::fs::read(&blob).with_context(|| blob.display().to_string())?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&blob, bytes)?;
    let open_dir = dir.path().join("open");
    let restarted = wasmtap_tests::wait::now_ms();
    let _open = Agent::start_with_config(
        &open_dir,
        &open_dir.join("agent.toml"),
        open_dir.join("plugins"),
    )?;
    wait::until(WAIT, "the damaged copy held back", || {
        let out = proxy.collectors(&["status", "--project", "shop", "fleet"])?;
        let held = out.json.as_array().into_iter().flatten().any(|a| {
            a["agent"] == "open"
                && a["status"] == "refused"
                && a["error"].as_str().is_some_and(|e| e.contains("does not match its SHA-256"))
        });
        Ok(held.then_some(()))
    })
    .with_context(|| {
        format!("{:?}", proxy.collectors(&["status", "--project", "shop", "fleet"]).map(|o| o.json))
    })?;
    // And the agent runs the release it had.
    wait::until(WAIT, "samples of the release it had", || {
        let rows = proxy.query(&["--collector", "fleet", "--agent", "open"])?;
        Ok(rows.iter().any(|r| r["time"].as_u64().is_some_and(|t| t > restarted)).then_some(()))
    })?;
    Ok(())
}

#[test]
fn an_offline_agent_converges_and_an_agent_without_its_proxy_keeps_its_collectors()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &admin_section())?;
    let mut agents = start_agents(dir.path(), &proxy, &key, &["online", "offline"])?;
    let offline = agents.pop().context("agent")?;
    let online = agents.pop().context("agent")?;
    offline.stop()?;
    // This one has a local collector of the same name: it wins.
    let local = Agent::start(
        &dir.path().join("local"),
        "local",
        proxy.addr.port(),
        &key,
        &["testing/fleet-v1"],
    )?;

    let (v1, _) = paths::plugin("testing/fleet-v1")?;
    publish(&proxy, &v1, &[])?;
    until_all(&proxy, &["online"], 1, "running")?;
    until_all(&proxy, &["local"], 1, "shadowed")?;
    assert!(
        local.log_text().contains("a local collector of this name runs instead"),
        "{}",
        local.log_text()
    );
    // Without the local one, the published one runs.
    std::fs::remove_file(local.plugins.join("fleet-v1.wasm"))?;
    until_all(&proxy, &["local"], 1, "running")?;
    let back_dir = dir.path().join("offline");
    let _back = Agent::start_with_config(
        &back_dir,
        &back_dir.join("agent.toml"),
        back_dir.join("plugins"),
    )?;
    until_all(&proxy, &["online", "offline"], 1, "running")?;

    // No proxy at all: the agent runs its managed collectors from its data dir.
    drop(proxy);
    online.stop()?;
    let online_dir = dir.path().join("online");
    let again = Agent::start_with_config(
        &online_dir,
        &online_dir.join("agent.toml"),
        online_dir.join("plugins"),
    )?;
    wait::until(WAIT, "the managed collector loaded without a proxy", || {
        let log = again.log_text();
        Ok(log
            .lines()
            .any(|l| l.contains("collector loaded") && l.contains("collector=fleet"))
            .then_some(()))
    })
    .with_context(|| again.log_text())?;
    assert!(!again.log_text().contains("session established"), "no proxy was reachable");
    Ok(())
}

/// `collectors list --project shop` as JSON.
fn list(proxy: &Proxy) -> anyhow::Result<Value> {
    let out = proxy.collectors(&["list", "--project", "shop"])?;
    anyhow::ensure!(out.ok, "list failed: {}", out.stderr);
    Ok(out.json)
}

/// Runs an operator command that must succeed.
fn command(proxy: &Proxy, args: &[&str]) -> anyhow::Result<Value> {
    let out = proxy.collectors(args)?;
    anyhow::ensure!(out.ok, "{args:?} failed: {}", out.stderr);
    Ok(out.json)
}

fn until_state(proxy: &Proxy, id: u64, want: &str) -> anyhow::Result<String> {
    wait::until(WAIT, &format!("release {id} {want}"), || {
        let (state, reason) = release_state(proxy, id)?;
        Ok((state == want).then_some(reason))
    })
    .with_context(|| format!("{:?}", list(proxy).ok()))
}

/// A manifest for `fleet-v1` with a timeout of `secs`: a release of its own.
fn variant(dir: &Path, secs: u32) -> anyhow::Result<String> {
    let path = dir.join(format!("fleet-{secs}s.toml"));
    std::fs::write(
        &path,
        format!("interval = \"1s\"\ntimeout = \"{secs}s\"\n\n[grants]\nread = [\"/proc\"]\n"),
    )?;
    path.to_str().map(str::to_owned).context("path")
}

#[test]
fn operators_promote_hold_roll_back_and_remove_and_agents_follow() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &admin_section())?;
    let names = ["a-1", "a-2"];
    let mut agents = start_agents(dir.path(), &proxy, &key, &names)?;
    let (v1, _) = paths::plugin("testing/fleet-v1")?;

    assert_eq!(publish(&proxy, &v1, &[])?["id"], 1);
    until_all(&proxy, &names, 1, "running")?;

    // A clean canary is promoted by itself when its window ends.
    let m2 = variant(dir.path(), 2)?;
    let r2 = publish(&proxy, &v1, &["--manifest", &m2, "--canary", "50%", "--watch", "8s"])?;
    assert_eq!((r2["id"].as_u64(), r2["state"].as_str()), (Some(2), Some("canary")), "{r2}");
    until_state(&proxy, 2, "promoted")?;
    assert_eq!(release_state(&proxy, 1)?.0, "superseded");
    until_all(&proxy, &names, 2, "running")?;

    // --hold waits for an operator's promote.
    let m3 = variant(dir.path(), 3)?;
    let r3 =
        publish(&proxy, &v1, &["--manifest", &m3, "--canary", "50%", "--watch", "8s", "--hold"])?;
    assert_eq!(r3["id"], 3, "{r3}");
    until_state(&proxy, 3, "held")?;
    command(&proxy, &["promote", "--project", "shop", "fleet"])?;
    assert_eq!(release_state(&proxy, 3)?.0, "promoted");
    until_all(&proxy, &names, 3, "running")?;

    // A rollback by hand: the release before it is promoted again.
    command(&proxy, &["rollback", "--project", "shop", "fleet"])?;
    assert_eq!(release_state(&proxy, 3)?.0, "rolled_back");
    assert_eq!(release_state(&proxy, 2)?.0, "promoted");
    until_all(&proxy, &names, 2, "running")?;

    // Bad input to every command: a clear error, and the catalog as it was.
    let before = list(&proxy)?;
    let missing = dir.path().join("missing.wasm");
    let bad_sig = dir.path().join("fleet.wasm.sig");
    std::fs::write(&bad_sig, "not a signature")?;
    let v1s = v1.to_str().context("path")?;
    let bad_sig_s = bad_sig.to_str().context("path")?;
    let missing_s = missing.to_str().context("path")?;
    let slow = dir.path().join("slow.toml");
    std::fs::write(&slow, "interval = \"10s\"\n\n[grants]\nread = [\"/proc\"]\n")?;
    let slow_s = slow.to_str().context("path")?;
    for (args, says) in [
        (vec!["promote", "--project", "nope", "fleet"], "no project `nope`"),
        (vec!["rollback", "--project", "nope", "fleet"], "no project `nope`"),
        (vec!["remove", "--project", "nope", "fleet"], "no project `nope`"),
        (vec!["publish", "--project", "nope", v1s], "no project `nope`"),
        (
            vec![
                "publish",
                "--project",
                "shop",
                v1s,
                "--manifest",
                slow_s,
                "--canary",
                "50%",
                "--watch",
                "15s",
            ],
            "twice the collector's interval of 10 s",
        ),
        (vec!["publish", "--project", "shop", v1s, "--hold"], "--canary"),
        (vec!["list", "--project", "nope"], "no project `nope`"),
        (vec!["status", "--project", "nope", "fleet"], "no project `nope`"),
        (vec!["status", "--project", "shop", "ghost"], "`ghost` was never published"),
        (vec!["rollback", "--project", "shop", "ghost"], "`ghost` was never published"),
        (vec!["remove", "--project", "shop", "ghost"], "`ghost` was never published"),
        (vec!["promote", "--project", "shop", "fleet"], "no canary or held release"),
        (vec!["publish", "--project", "shop", missing_s], "missing.wasm"),
        (vec!["publish", "--project", "shop", v1s, "--signature", bad_sig_s], "signature"),
        (vec!["publish", "--project", "shop", v1s, "--canary", "5%", "--watch", "soon"], "soon"),
        (vec!["publish", "--project", "shop", v1s, "--watch", "5s"], "--canary"),
        (vec!["publish", "--project", "shop", v1s, "--canary", "101%"], "between 1% and 100%"),
        (
            vec!["publish", "--project", "shop", v1s, "--canary", "5%", "--watch", "1s"],
            "between 5000",
        ),
    ] {
        let out = proxy.collectors(&args)?;
        assert!(!out.ok, "{args:?} succeeded");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    assert_eq!(list(&proxy)?, before, "refused commands leave the catalog unchanged");

    // A component over the proxy's size cap: 413, and nothing published.
    let capped = Proxy::start_with(
        &dir.path().join("capped"),
        &[("shop", &key)],
        &format!("{}\n[fleet]\nmax_size = \"1KiB\"\n", admin_section()),
    )?;
    let out = capped.collectors(&["publish", "--project", "shop", v1s])?;
    assert!(!out.ok && out.stderr.contains("max_size of 1024 bytes"), "{}", out.stderr);
    assert!(out.stderr.contains("413"), "{}", out.stderr);
    assert_eq!(list(&capped)?, serde_json::json!([]));
    drop(capped);

    // A blob damaged on its way is refused by the agent's own check, and
    // sent again: a-2 is offline while release 4 is published, and comes
    // back holding a damaged start of it.
    let a2 = agents.pop().context("agent")?;
    a2.stop()?;
    // (Version 2, a component the agents do not hold yet: it traps, which
    // does not matter here.)
    let (v2, _) = paths::plugin("testing/fleet-v2")?;
    let r4 = publish(&proxy, &v2, &[])?;
    let sha = r4["sha256"].as_str().context("sha256")?;
    let blobs = dir.path().join("a-2/data/collectors/.blobs");
    std::fs::create_dir_all(&blobs)?;
    let mut start = std::fs::read(&v2)?;
    start.truncate(start.len() / 2);
    start[10] ^= 0x55;
    std::fs::write(blobs.join(format!("{sha}.part")), start)?;
    let a2_dir = dir.path().join("a-2");
    let _a2 =
        Agent::start_with_config(&a2_dir, &a2_dir.join("agent.toml"), a2_dir.join("plugins"))?;
    wait::until(WAIT, "the damaged transfer refused by the agent", || {
        let out = proxy.collectors(&["status", "--project", "shop", "fleet"])?;
        let refused = out.json.as_array().into_iter().flatten().any(|a| {
            a["agent"] == "a-2"
                && a["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("received blob does not match its SHA-256"))
        });
        Ok(refused.then_some(()))
    })
    .with_context(|| format!("{:?}\n{}", status(&proxy).ok(), proxy.log_text()))?;
    wait::until(WAIT, "release 4 on both agents, sent again whole", || {
        let s = status(&proxy)?;
        Ok(names.iter().all(|a| s.iter().any(|(n, r, _, _)| n == a && *r == Some(4))).then_some(()))
    })
    .with_context(|| format!("{:?}", status(&proxy).ok()))?;

    // remove: every agent drops the collector.
    command(&proxy, &["remove", "--project", "shop", "fleet"])?;
    assert_eq!(release_state(&proxy, 4)?.0, "removed");
    for name in names {
        let installed = dir.path().join(name).join("data/collectors/fleet.wasm");
        wait::until(WAIT, &format!("{name} dropping the collector"), || {
            Ok((!installed.exists()).then_some(()))
        })?;
    }
    Ok(())
}
