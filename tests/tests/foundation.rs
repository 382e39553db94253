//! The walking skeleton, end to end: a real proxy, a real agent and the
//! compiled `load` collector on 127.0.0.1.

use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::df::df;
use wasmtap_tests::wait::now_ms;
use wasmtap_tests::{Agent, Proxy, new_key, wait};

#[test]
fn load_samples_reach_the_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let started = now_ms();
    let _agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &["load"])?;

    let rows = wait::until(Duration::from_secs(15), "two rounds of load samples", || {
        let rows = proxy.query(&["--collector", "load"])?;
        Ok((rows.len() >= 10).then_some(rows))
    })
    .with_context(|| format!("proxy log:\n{}", proxy.log_text()))?;
    let finished = now_ms();

    let mut fields: Vec<&str> = rows.iter().filter_map(|r| r["field"].as_str()).collect();
    fields.sort();
    fields.dedup();
    assert_eq!(fields, ["load1", "load15", "load5", "running", "tasks"]);
    for r in &rows {
        assert_eq!(r["project"], "shop");
        assert_eq!(r["agent"], "web-01");
        assert_eq!(r["collector"], "load");
        assert!(r["labels"].as_object().is_some_and(|l| l.is_empty()), "{r}");
        let value = r["value"].as_f64().context("numeric value")?;
        assert!(value.is_finite() && value >= 0.0, "{r}");
        let time = r["time"].as_u64().context("time")?;
        assert!(
            time + 1_000 >= started && time <= finished + 1_000,
            "time {time} outside the run: {r}"
        );
    }
    // Values have /proc/loadavg's shape: at least one task exists, and no
    // more are runnable than exist.
    let by_field = |f: &'static str| {
        rows.iter().filter(move |r| r["field"] == f).filter_map(|r| r["value"].as_f64())
    };
    assert!(by_field("tasks").all(|t| t >= 1.0 && t.fract() == 0.0));
    assert!(by_field("running").all(|r| r.fract() == 0.0));
    let max_tasks = by_field("tasks").fold(0.0, f64::max);
    assert!(by_field("running").all(|r| r <= max_tasks));
    Ok(())
}

/// Agents with the wrong key are refused at both ends, nothing of theirs is
/// stored, and they retry with backoff instead of spinning.
#[test]
fn wrong_keys_are_refused_and_retried_with_backoff() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shop = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &shop)])?;
    let port = proxy.addr.port();
    // Another project's key, and a key of the right project with another secret.
    let started = std::time::Instant::now();
    let other_project =
        Agent::start(&dir.path().join("a1"), "intruder-1", port, &new_key("bank")?, &["load"])?;
    let other_secret =
        Agent::start(&dir.path().join("a2"), "intruder-2", port, &new_key("shop")?, &["load"])?;
    let needle = "the proxy refused this agent's credentials";
    // Each agent has been refused three times: it retried, with its samples
    // ready to send all along.
    wait::until(Duration::from_secs(30), "three refusals of each agent", || {
        Ok([&other_project, &other_secret]
            .iter()
            .all(|agent| agent.log_text().matches(needle).count() >= 3)
            .then_some(()))
    })?;
    let window = started.elapsed();
    assert!(proxy.query(&[])?.is_empty(), "nothing from a refused agent may be stored");

    // The proxy logs why; both agents hear the same generic refusal, so a
    // stranger learns nothing about which projects exist.
    let proxy_log = proxy.log_text();
    assert!(proxy_log.contains("unknown project `bank`"), "{proxy_log}");
    assert!(proxy_log.contains("project `shop` has no access key with id"), "{proxy_log}");

    for agent in [&other_project, &other_secret] {
        let log = agent.log_text();
        let attempts = log.matches(needle).count() as u64;
        // With backoff from 200 ms doubling to 2 s, a few attempts per
        // second at most (jitter included); spinning would be hundreds.
        let allowed = 10 + 4 * window.as_secs();
        assert!(attempts <= allowed, "retrying too fast: {attempts} attempts in {window:?}");
        assert!(!log.contains(&shop[12..]), "agent log leaks a key");
    }
    Ok(())
}

/// A mistyped key is a clear start-up error, not a handshake failure.
#[test]
fn corrupted_key_stops_the_agent_at_start_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let mut corrupted = key.clone().into_bytes();
    let i = corrupted.len() - 5;
    corrupted[i] = if corrupted[i] == b'A' { b'B' } else { b'A' };
    let corrupted = String::from_utf8(corrupted)?;
    let mut agent = Agent::start(dir.path(), "web-01", 1, &corrupted, &["load"])?;
    let status = wait::until(Duration::from_secs(10), "the agent to exit", || agent.try_wait())?;
    assert!(!status.success());
    let log = agent.log_text();
    assert!(log.contains("checksum mismatch"), "{log}");
    assert!(!log.contains(&corrupted[12..]), "error leaks the key: {log}");
    Ok(())
}

/// The six standard collectors run with the manifests they ship with and
/// report; the disk collector's filesystem usage matches `df` (within 1 %
/// of the size, since free space moves); cpu's `user_seconds`, declared
/// with two decimal places, arrives rounded to them.
#[test]
fn standard_collectors_report_and_filesystem_usage_matches_df() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let standard = ["cpu", "memory", "disk", "net", "load", "process"];
    let agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &standard)?;

    let rows =
        wait::until(Duration::from_secs(30), "every standard collector and cpu time", || {
            let rows = proxy.query(&[])?;
            let reported = |c: &str| rows.iter().any(|r| r["collector"] == c);
            let usage = rows.iter().any(|r| r["field"] == "fs_size_bytes");
            let busy = rows.iter().any(|r| r["collector"] == "cpu" && r["field"] == "user_seconds");
            Ok((standard.iter().all(|c| reported(c)) && usage && busy).then_some(rows))
        })
        .with_context(|| agent.log_text())?;

    let mut mounts = 0;
    for r in rows.iter().filter(|r| r["field"] == "fs_size_bytes") {
        let mount = r["labels"]["mount"].as_str().context("mount label")?;
        let value = |field: &str| {
            rows.iter()
                .find(|o| {
                    o["field"] == field && o["labels"]["mount"] == mount && o["time"] == r["time"]
                })
                .and_then(|o| o["value"].as_f64())
                .with_context(|| format!("no {field} for {mount}"))
        };
        let df = df(std::path::Path::new(mount))?;
        let tolerance = df.size * 0.01;
        for (field, expected) in
            [("fs_size_bytes", df.size), ("fs_used_bytes", df.used), ("fs_avail_bytes", df.avail)]
        {
            let got = value(field)?;
            assert!((got - expected).abs() <= tolerance, "{mount} {field}: {got} vs df {expected}");
        }
        mounts += 1;
    }
    assert!(mounts >= 1, "no mount reported its usage");

    for r in rows.iter().filter(|r| r["collector"] == "cpu" && r["field"] == "user_seconds") {
        let seconds = r["value"].as_f64().context("user_seconds")?;
        let hundredths = seconds * 100.0;
        assert!(
            (hundredths - hundredths.round()).abs() < 1e-6,
            "user_seconds {seconds} has more than 2 places"
        );
    }
    Ok(())
}
