//! Hostile and broken collectors are contained: each fails only its own
//! ticks, is counted, restarted with backoff and quarantined, while `load`
//! keeps reporting. Results are read from the agent's own counters (the
//! `collectors` control request), not from its log, wherever a counter
//! exists.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtap_tests::ctl::{Ctl, admin_section};
use wasmtap_tests::{Agent, Proxy, new_key, wait};

const MISBEHAVING: [&str; 8] = [
    "testing/spin",
    "testing/membomb",
    "testing/recursion",
    "testing/panic",
    "testing/flood",
    "testing/smuggler",
    "testing/slow-init",
    "testing/schema-shift",
];

/// A proxy with its admin API and an agent `web-01` with `collectors`,
/// quarantining after three failures in a row.
fn start(dir: &std::path::Path, collectors: &[&str]) -> anyhow::Result<(Proxy, Agent)> {
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.join("proxy"), &[("shop", &key)], &admin_section())?;
    let agent = Agent::start_with(
        &dir.join("agent"),
        "web-01",
        proxy.addr.port(),
        &key,
        collectors,
        "quarantine_after = 3",
    )?;
    Ok((proxy, agent))
}

/// Waits until every collector in `names` is quarantined; their entries.
fn quarantined(ctl: &Ctl<'_>, agent: &Agent, names: &[&str]) -> anyhow::Result<Vec<Value>> {
    wait::until(Duration::from_secs(60), "every failing collector quarantined", || {
        let mut out = Vec::new();
        for name in names {
            match ctl.collector(name)? {
                Some(c) if c["state"] == "quarantined" => out.push(c),
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    })
    .with_context(|| agent.log_text())
}

fn count(c: &Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or(0)
}

#[test]
fn misbehaving_collectors_are_contained_while_load_keeps_its_schedule() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut collectors = vec!["load"];
    collectors.extend(MISBEHAVING);
    let (proxy, agent) = start(dir.path(), &collectors)?;
    let ctl = Ctl::new(&proxy, "web-01");

    let names = ["spin", "membomb", "recursion", "panic", "flood"];
    let entries = quarantined(&ctl, &agent, &names)?;
    for (name, c) in names.iter().zip(&entries) {
        assert_eq!(count(c, "failures"), 3, "{name}: {c}");
        assert_eq!(count(c, "calls"), 3, "{name}: {c}");
        let reason = c["reason"].as_str().unwrap_or_default();
        let expected = match *name {
            "spin" => "timed out",
            // Refused from the list's length, before the host copies it.
            "flood" => "too much data",
            _ => "trapped",
        };
        assert!(reason.contains(expected), "{name} quarantined for {reason:?}, not {expected:?}");
    }
    assert_eq!(count(&entries[0], "timeouts"), 3, "spin's timeouts are counted: {}", entries[0]);
    assert!(entries[1..].iter().all(|c| count(c, "timeouts") == 0), "{entries:?}");

    // A collector that fails at load is never scheduled; only the log says why.
    assert!(ctl.collector("slow-init")?.is_none(), "slow-init must not be running");
    let log = agent.log_text();
    assert!(log.contains("init failed: timed out"), "slow-init must fail its init deadline: {log}");

    // `load` kept its 1 s schedule throughout: no gap between its samples
    // is far from a second (its ticks are not delayed by the others). The
    // first gap is not a tick's: the first call comes at once and the
    // second on the agent's phase, half an interval to an interval and a
    // half later.
    let mut times: Vec<u64> = wait::until(Duration::from_secs(20), "ten load samples", || {
        let times: Vec<u64> = proxy
            .query(&["--collector", "load"])?
            .iter()
            .filter(|r| r["field"] == "load1")
            .filter_map(|r| r["time"].as_u64())
            .collect();
        Ok((times.len() >= 10).then_some(times))
    })?;
    times.sort_unstable();
    let worst = times.windows(2).skip(1).map(|w| (w[1] - w[0]).abs_diff(1_000)).max().unwrap_or(0);
    assert!(worst <= 500, "a load tick was {worst} ms off schedule: {times:?}");
    let load = ctl.collector("load")?.context("load listed")?;
    assert_eq!((load["state"].as_str(), count(&load, "failures")), (Some("running"), 0), "{load}");

    // The smuggler's values: only declared fields, each with its declared
    // type; the others dropped and counted.
    let rows = proxy.query(&["--collector", "smuggler"])?;
    assert!(!rows.is_empty(), "smuggler's legitimate values are stored");
    for r in &rows {
        match r["kind"].as_str() {
            Some("text") => assert!(r["value"].is_string(), "{r}"),
            Some("gauge" | "counter") => assert!(r["value"].is_number(), "{r}"),
            other => panic!("unexpected kind {other:?} in {r}"),
        }
    }
    let smuggler = ctl.collector("smuggler")?.context("smuggler listed")?;
    assert!(count(&smuggler, "dropped_values") > 0, "{smuggler}");

    // schema-shift's schema was read once (its first describe); every later
    // describe returns other fields, and none of them is ever stored.
    let rows = proxy.query(&["--collector", "schema-shift"])?;
    assert!(!rows.is_empty(), "schema-shift reports under its first schema");
    for r in &rows {
        match r["field"].as_str() {
            Some("describe_calls") => {
                assert_eq!(r["value"], 1.0, "describe ran more than once: {r}")
            }
            Some("note") => assert!(r["value"].is_string(), "{r}"),
            other => panic!("field {other:?} from a later schema was stored: {r}"),
        }
    }
    Ok(())
}

/// A collector blocked in a host call (30 s in `sleep`, or `poll` on a
/// pollable that never resolves) is cut off at its 100 ms deadline, counted
/// as a timeout, restarted and finally quarantined like any other failure.
#[test]
fn collectors_blocked_in_host_calls_are_cut_off_at_their_deadline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (proxy, agent) = start(dir.path(), &["load", "testing/sleeper", "testing/poller"])?;
    let ctl = Ctl::new(&proxy, "web-01");

    let entries = quarantined(&ctl, &agent, &["sleeper", "poller"])?;
    for c in &entries {
        // Three calls, each a timeout: a fresh instance after each one.
        assert_eq!((count(c, "calls"), count(c, "timeouts")), (3, 3), "{c}");
        assert_eq!(count(c, "failures"), 3, "{c}");
        // The agent's own measure of the time those calls took.
        let per_call = c["call_time_ms"].as_f64().unwrap_or(f64::MAX) / 3.0;
        eprintln!("{}: {per_call:.1} ms per call under a 100 ms deadline", c["name"]);
        assert!(per_call < 500.0, "a blocked call ran {per_call} ms past a 100 ms deadline: {c}");
        assert!(c["reason"].as_str().is_some_and(|r| r.contains("timed out")), "{c}");
    }
    // Nothing of theirs was stored, and `load` carries on.
    assert!(proxy.query(&["--collector", "sleeper"])?.is_empty());
    assert!(proxy.query(&["--collector", "poller"])?.is_empty());
    let calls = |c: Option<Value>| c.map_or(0, |c| count(&c, "calls"));
    let before = calls(ctl.collector("load")?);
    wait::until(Duration::from_secs(20), "load to keep being called", || {
        Ok((calls(ctl.collector("load")?) >= before + 2).then_some(()))
    })?;
    Ok(())
}

/// A collector blocked in a file operation on a real filesystem (opening a
/// FIFO no one writes to, in a granted temporary directory: the open waits
/// in the kernel on one of the agent's blocking threads) is cut off at its
/// 100 ms deadline all the same, counted as a timeout and quarantined,
/// while `load` keeps its schedule. A grant outside `/proc` and `/sys` is
/// what puts the collector's file operations on the blocking threads.
#[test]
fn a_collector_blocked_opening_a_slow_file_is_cut_off_at_its_deadline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let grant = dir.path().join("grant");
    std::fs::create_dir_all(&grant)?;
    // The `probe` collector's first operation reads `<grant>/inside.txt`:
    // here a FIFO without a writer, so the open never returns by itself.
    let fifo = grant.join("inside.txt");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o644))?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &admin_section())?;
    let agent_dir = dir.path().join("agent");
    let (config, plugins) = Agent::prepare(
        &agent_dir,
        "web-01",
        proxy.addr.port(),
        &key,
        &["load", "testing/probe"],
        "quarantine_after = 3",
    )?;
    let outside = dir.path().join("outside.txt");
    std::fs::write(
        plugins.join("probe.toml"),
        format!(
            "interval = \"1s\"\ntimeout = \"100ms\"\n[grants]\nread = [{grant:?}]\nenv = []\n[config]\ngrant = {grant:?}\noutside = {outside:?}\n",
            grant = grant.display().to_string(),
            outside = outside.display().to_string(),
        ),
    )?;
    let agent = Agent::start_with_config(&agent_dir, &config, plugins)?;
    let ctl = Ctl::new(&proxy, "web-01");

    let entries = quarantined(&ctl, &agent, &["probe"])?;
    let c = &entries[0];
    assert_eq!((count(c, "calls"), count(c, "timeouts")), (3, 3), "{c}");
    assert_eq!(count(c, "failures"), 3, "{c}");
    let per_call = c["call_time_ms"].as_f64().unwrap_or(f64::MAX) / 3.0;
    eprintln!("probe: {per_call:.1} ms per call blocked opening a FIFO under a 100 ms deadline");
    assert!(per_call < 500.0, "a blocked open ran {per_call} ms past a 100 ms deadline: {c}");
    assert!(c["reason"].as_str().is_some_and(|r| r.contains("timed out")), "{c}");
    assert!(proxy.query(&["--collector", "probe"])?.is_empty(), "nothing of the probe stored");

    // `load` kept its 1 s schedule while the probe's opens hung, and goes on.
    // Wait on what is stored, not on the agent's call count: a call is
    // counted before its batch is delivered and acknowledged.
    let calls = |c: Option<Value>| c.map_or(0, |c| count(&c, "calls"));
    let before = calls(ctl.collector("load")?);
    let load_times = || -> anyhow::Result<Vec<u64>> {
        let mut times: Vec<u64> = proxy
            .query(&["--collector", "load"])?
            .iter()
            .filter(|r| r["field"] == "load1")
            .filter_map(|r| r["time"].as_u64())
            .collect();
        times.sort_unstable();
        Ok(times)
    };
    let times = wait::until(Duration::from_secs(20), "load to keep its schedule", || {
        let times = load_times()?;
        let called = calls(ctl.collector("load")?) >= before + 2;
        Ok((called && times.len() >= 5).then_some(times))
    })?;
    let worst = times.windows(2).skip(1).map(|w| (w[1] - w[0]).abs_diff(1_000)).max().unwrap_or(0);
    assert!(worst <= 500, "a load tick was {worst} ms off schedule: {times:?}");

    // The opens still wait in the kernel on blocking threads (one per call;
    // quarantine ends the calls); the agent nevertheless exits on SIGTERM.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", agent.pid()))?;
    let waits: Vec<String> =
        tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("wchan")).ok()).collect();
    eprintln!("agent threads: {}, waiting in: {waits:?}", waits.len());
    let log = agent.log.clone();
    let stopping = std::time::Instant::now();
    let status = agent.terminate(Duration::from_secs(20)).with_context(|| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        format!("SIGTERM with opens still waiting in the kernel; agent log:\n{log}")
    })?;
    assert!(status.success(), "{status}");
    eprintln!("the agent exited {:?} after SIGTERM", stopping.elapsed());
    Ok(())
}
