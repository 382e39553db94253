//! The collector sandbox, checked at run time with collectors made for it:
//! a socket import is refused at load, a granted directory is read-only,
//! nothing outside the grants (not even `/etc`) is visible, the agent's
//! environment is hidden except the granted variables, and the memory cap
//! covers all of a collector's memories together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtap_tests::ctl::{Ctl, admin_section};
use wasmtap_tests::df::df;
use wasmtap_tests::{Agent, Proxy, component, new_key, wait};

const SECRET: &str = "agent-only-3f9a2c";

/// A running proxy with an admin API under `dir`, and an agent `web-01`
/// prepared (not started) with `collectors`: the proxy, the agent's
/// directory, its config and its plugins directory.
fn proxy_and_agent(
    dir: &Path,
    collectors: &[&str],
) -> anyhow::Result<(Proxy, PathBuf, PathBuf, PathBuf)> {
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.join("proxy"), &[("shop", &key)], &admin_section())?;
    let agent_dir = dir.join("agent");
    let (config, plugins) =
        Agent::prepare(&agent_dir, "web-01", proxy.addr.port(), &key, collectors, "")?;
    Ok((proxy, agent_dir, config, plugins))
}

/// The latest value of each of `collector`'s fields in the store, once it
/// has stored at least one sample.
fn latest(proxy: &Proxy, collector: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    wait::until(Duration::from_secs(30), &format!("a sample of {collector}"), || {
        let mut rows = proxy.query(&["--collector", collector])?;
        rows.sort_by_key(|r| r["time"].as_u64());
        let fields: BTreeMap<String, Value> = rows
            .into_iter()
            .filter_map(|r| Some((r["field"].as_str()?.to_owned(), r["value"].clone())))
            .collect();
        Ok((!fields.is_empty()).then_some(fields))
    })
}

#[test]
fn sandbox_refuses_sockets_writes_foreign_paths_and_the_environment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let grant = dir.path().join("grant");
    std::fs::create_dir_all(&grant)?;
    std::fs::write(grant.join("inside.txt"), "granted")?;
    let outside = dir.path().join("outside/secret.txt");
    std::fs::create_dir_all(dir.path().join("outside"))?;
    std::fs::write(&outside, "not granted")?;
    std::os::unix::fs::symlink(&outside, grant.join("link.txt"))?;

    let (proxy, agent_dir, config, plugins) =
        proxy_and_agent(dir.path(), &["load", "testing/probe", "testing/socket-client"])?;
    std::fs::write(
        plugins.join("probe.toml"),
        format!(
            "interval = \"1s\"\ntimeout = \"1s\"\n[grants]\nread = [{:?}]\nenv = [\"WASMTAP_PROBE_GRANTED\"]\n[config]\ngrant = {:?}\noutside = {:?}\n",
            grant.display().to_string(),
            grant.display().to_string(),
            outside.display().to_string(),
        ),
    )?;
    let agent = Agent::start_with_env(
        &agent_dir,
        &config,
        plugins,
        &[("WASMTAP_PROBE_GRANTED", "yes"), ("WASMTAP_PROBE_SECRET", SECRET)],
    )?;
    let ctl = Ctl::new(&proxy, "web-01");

    // The socket user is refused at load, saying why, and never runs.
    wait::until(Duration::from_secs(30), "the socket-client collector refused", || {
        Ok(agent
            .log_text()
            .lines()
            .any(|l| l.contains("socket-client.wasm imports `wasi:sockets/"))
            .then_some(()))
    })
    .with_context(|| agent.log_text())?;
    let log = agent.log_text();
    assert!(
        log.contains("which collectors may not use (no network access)"),
        "the refusal must say why: {log}"
    );

    let probe = latest(&proxy, "probe").with_context(|| agent.log_text())?;
    let value = |name: &str| probe.get(name).and_then(Value::as_f64);
    let errors = probe.get("errors").and_then(Value::as_str).unwrap_or_default();
    // What a collector may do: read inside its grant, see granted variables.
    assert_eq!(value("read_grant"), Some(1.0), "the granted file must be readable: {errors}");
    assert_eq!(value("files_read_grant"), Some(1.0), "and through the files import: {errors}");
    assert_eq!(value("files_list_grant"), Some(1.0), "the grant must list: {errors}");
    assert_eq!(value("granted_env"), Some(1.0), "{probe:?}");
    // What it may not.
    for denied in [
        "write_grant",
        "create_grant",
        "mkdir_grant",
        "remove_grant",
        "read_outside",
        "read_etc",
        "list_root",
        "secret_env",
        "files_read_outside",
        "files_read_etc",
        "files_read_link",
    ] {
        assert_eq!(value(denied), Some(0.0), "{denied} must fail: {probe:?}");
    }
    assert_eq!(value("env_vars"), Some(1.0), "only the granted variable is visible: {probe:?}");
    for refused in [
        "files outside: FileError::Refused",
        "files etc: FileError::Refused",
        "files link: FileError::Refused",
    ] {
        assert!(errors.contains(refused), "the files import must say `{refused}`: {errors}");
    }
    // And the grant is as it was.
    assert_eq!(std::fs::read_to_string(grant.join("inside.txt"))?, "granted");
    assert!(!grant.join("created.txt").exists() && !grant.join("made").exists());

    let names: Vec<Value> = ctl
        .request(&["collectors"])?
        .as_array()
        .map(|l| l.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    assert!(
        names.contains(&"probe".into()) && !names.contains(&"socket-client".into()),
        "{names:?}"
    );
    // The secret never left the agent.
    let stored = proxy.query(&[])?;
    assert!(!format!("{stored:?}").contains(SECRET), "the agent's environment leaked");
    Ok(())
}

/// `two-memories` grows each of its two linear memories to 10 MiB. Under a
/// 64 MiB cap that works; under 16 MiB it must fail, although each memory
/// alone is under the cap.
#[test]
fn memory_cap_covers_all_memories_of_a_collector() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (proxy, agent_dir, config, plugins) = proxy_and_agent(dir.path(), &[])?;
    let wasm = component::install("two-memories", &plugins)?;
    let manifest = wasm.with_extension("toml");
    let capped = std::fs::read_to_string(&manifest)?;
    anyhow::ensure!(capped.contains("memory = \"16MiB\""), "the manifest sets the cap: {capped}");
    std::fs::write(&manifest, capped.replace("16MiB", "64MiB"))?;
    let agent = Agent::start_with_config(&agent_dir, &config, plugins)?;
    let ctl = Ctl::new(&proxy, "web-01");

    // With room for both, the collector works: 160 pages in each memory.
    let fields = latest(&proxy, "two-memories").with_context(|| agent.log_text())?;
    assert_eq!(fields.get("pages").and_then(Value::as_f64), Some(320.0), "{fields:?}");

    // The same collector under a cap below the two memories' sum.
    replace(&manifest, &capped)?;
    let failed = wait::until(Duration::from_secs(30), "two-memories to fail under 16 MiB", || {
        Ok(ctl.collector("two-memories")?.filter(|c| c["failures"].as_u64() >= Some(1)))
    })
    .with_context(|| agent.log_text())?;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("memory cap of 16777216 bytes exceeded"),
        "the failure must be the memory cap: {failed}"
    );
    assert_eq!(failed["timeouts"], 0, "{failed}");
    Ok(())
}

/// Replaces a file by renaming a complete new one over it, so the agent's
/// watcher never sees it half written.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The `filesystem.usage` import answers for paths inside the `usage`
/// grant, as `df` does, and refuses the rest: a path outside, a `..` out
/// of the grant, a symbolic link inside it that leads out. A collector
/// built against the 0.1.0 world runs beside it, its values unrounded.
#[test]
fn filesystem_usage_inside_grants_only_and_old_collectors_still_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let granted = dir.path().join("granted");
    std::fs::create_dir_all(&granted)?;
    std::os::unix::fs::symlink("/", granted.join("up"))?;
    let (proxy, agent_dir, config, plugins) =
        proxy_and_agent(dir.path(), &["testing/usage", "testing/legacy"])?;
    let g = granted.display().to_string();
    let asked = [g.clone(), "/".into(), format!("{g}/../"), format!("{g}/up")];
    std::fs::write(
        plugins.join("usage.toml"),
        format!(
            "interval = \"1s\"\ntimeout = \"1s\"\n[grants]\nusage = [{g:?}]\n[config]\npaths = {:?}\n",
            asked.join(",")
        ),
    )?;
    let agent = Agent::start_with_config(&agent_dir, &config, plugins)?;

    let rows = wait::until(Duration::from_secs(30), "usage answers for every path", || {
        let rows = proxy.query(&["--collector", "usage"])?;
        let paths: std::collections::BTreeSet<&str> =
            rows.iter().filter_map(|r| r["labels"]["path"].as_str()).collect();
        Ok((paths.len() == asked.len()).then_some(rows.clone()))
    })
    .with_context(|| agent.log_text())?;
    let field = |path: &str, name: &str| {
        rows.iter()
            .rev()
            .find(|r| r["labels"]["path"] == path && r["field"] == name)
            .map(|r| r["value"].clone())
    };
    // Inside the grant: what df says, within 1 % (free space moves).
    let df = df(&granted)?;
    let total = field(&g, "total_bytes").and_then(|v| v.as_f64()).context("no total")?;
    let avail = field(&g, "available_bytes").and_then(|v| v.as_f64()).context("no available")?;
    assert!((total - df.size).abs() <= df.size * 0.01, "total {total} vs df {df:?}");
    assert!((avail - df.avail).abs() <= df.size * 0.01, "available {avail} vs df {df:?}");
    assert_eq!(field(&g, "error"), None);
    // Outside it: refused with the reason, no numbers.
    for (path, reason) in [
        ("/", "outside the collector's read and usage grants"),
        (asked[2].as_str(), "outside the collector's read and usage grants"),
        (asked[3].as_str(), "resolves to /"),
    ] {
        let error = field(path, "error").with_context(|| format!("no answer for {path}"))?;
        assert!(error.as_str().is_some_and(|e| e.contains(reason)), "{path}: {error}");
        assert_eq!(field(path, "total_bytes"), None, "{path} must not be answered");
    }

    // The 0.1.0 collector: loaded, its state kept, its ratio shipped as given.
    let legacy = latest(&proxy, "legacy").with_context(|| agent.log_text())?;
    assert_eq!(legacy.get("ratio").and_then(Value::as_f64), Some(100.0 / 3.0), "{legacy:?}");
    assert_eq!(legacy.get("world").and_then(Value::as_str), Some("0.1.0"), "{legacy:?}");
    assert!(legacy.get("calls").and_then(Value::as_f64) >= Some(1.0), "{legacy:?}");
    Ok(())
}
