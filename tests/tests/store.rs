//! The proxy's store end to end: a query's memory stays bounded on a store
//! far larger than it, retention deletes closed segments and never the
//! newest, a `kill -9` changes nothing a query answers, and a store written
//! before segments were compressed reads as it did.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::{Agent, Proxy, http, new_key, paths, ticks, wait};

/// An agent under `dir` with `collectors`, `bulk` (if among them) sending
/// `bulk_values` values a second.
fn agent(
    dir: &Path,
    proxy: &Proxy,
    key: &str,
    collectors: &[&str],
    bulk_values: u64,
) -> anyhow::Result<Agent> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for c in collectors {
        let (wasm, manifest) = paths::plugin(c)?;
        let name = c.rsplit('/').next().unwrap_or(c);
        std::fs::copy(&wasm, plugins.join(format!("{name}.wasm")))?;
        let text = std::fs::read_to_string(&manifest)?;
        // At most 100,000 values a call (the agent's cap), with time to lift them.
        let text = text
            .replace("values = 10000", &format!("values = {bulk_values}"))
            .replace("timeout = \"1s\"", "timeout = \"10s\"");
        std::fs::write(plugins.join(format!("{name}.toml")), text)?;
    }
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhosts = [\"127.0.0.1\"]\nport = {}\naccess_key = \"{key}\"\nmax_backoff = \"1s\"\n\n[agent]\nname = \"edge-1\"\ndata_dir = \"data\"\nspool_cap = \"1GiB\"\n\n[plugins]\ndir = \"plugins\"\n",
            proxy.addr.port()
        ),
    )?;
    Agent::start_with_config(dir, &config, plugins)
}

/// The segment files of project `shop` under a proxy's home: (row files, blocks).
fn segments(home: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let dir = home.join("store/shop");
    let mut rows = Vec::new();
    let mut blocks = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        // No batch stored yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((rows, blocks)),
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    for entry in entries {
        let path = entry?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("seg") => rows.push(path),
            Some("blk") => blocks.push(path),
            _ => {}
        }
    }
    rows.sort();
    blocks.sort();
    Ok((rows, blocks))
}

/// `query --json --stats` with `args`: the lines printed (counted as they
/// stream, not kept) and the peak memory the query reported, in KiB.
fn query_stats(config: &Path, args: &[&str]) -> anyhow::Result<(u64, u64)> {
    let mut child = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
        .args(["query", "--json", "--stats", "--config"])
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = 0;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = Vec::new();
    while out.read_until(b'\n', &mut line)? > 0 {
        lines += 1;
        line.clear();
    }
    let done = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    anyhow::ensure!(done.status.success(), "query failed: {stderr}");
    let peak = stderr
        .rsplit_once("peak memory ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no peak memory in {stderr:?}"))?;
    Ok((lines, peak))
}

/// `query --json` of everything, sorted (the order of lines is per segment form).
fn everything(config: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
        .args(["query", "--json", "--config"])
        .arg(config)
        .output()?;
    anyhow::ensure!(out.status.success(), "query: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> =
        String::from_utf8(out.stdout)?.lines().map(str::to_owned).collect();
    lines.sort();
    Ok(lines)
}

#[test]
fn a_query_stays_within_its_memory_bound_on_a_store_much_larger_than_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let home = dir.path().join("proxy");
    let proxy = Proxy::start_with(&home, &[("shop", &key)], "[store]\nsegment_bytes = 4194304\n")?;
    let agent = agent(&dir.path().join("agent"), &proxy, &key, &["testing/bulk"], 100_000)?;
    // Half the store, then all of it: the same query must not need more
    // memory for twice the data.
    wait::until(Duration::from_secs(300), "four compressed segments", || {
        Ok((segments(&home)?.1.len() >= 4).then_some(()))
    })
    .with_context(|| proxy.log_text())?;
    let half = query_stats(&proxy.config, &["--collector", "bulk"])?;
    wait::until(Duration::from_secs(300), "twelve compressed segments", || {
        Ok((segments(&home)?.1.len() >= 12).then_some(()))
    })
    .with_context(|| proxy.log_text())?;
    let status = agent.terminate(Duration::from_secs(60))?;
    assert!(status.success(), "{status}");
    // Every value as a JSON line: the query used to hold every stored
    // batch, about 50 bytes a value, far over the bound.
    let (lines, peak_kib) = query_stats(&proxy.config, &["--collector", "bulk"])?;
    let bound_kib = 32 * 1024;
    assert!(2 * lines >= 3 * half.0, "{lines} values, {} before", half.0);
    assert!(lines * 50 / 1024 > 4 * bound_kib, "{lines} values: not much larger than the bound");
    assert!(peak_kib < bound_kib, "peak memory {peak_kib} KiB for {lines} values");
    assert!(peak_kib < half.1 + 4 * 1024, "{peak_kib} KiB for all, {} KiB for half", half.1);
    // One series over a time range reads a fraction of that.
    let one = ["--label", "series=7", "--field", "g3", "--since", "1h"];
    let (some, small_kib) = query_stats(&proxy.config, &one)?;
    assert!(some > 10, "{some}");
    assert!(small_kib < bound_kib);
    Ok(())
}

#[test]
fn retention_deletes_closed_segments_and_never_the_newest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let home = dir.path().join("proxy");
    // A size cap no store meets: only the segment being written may stay.
    let extra =
        "[store]\nsegment_bytes = 20000\nmax_size = \"1\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n";
    let proxy = Proxy::start_with(&home, &[("shop", &key)], extra)?;
    let agent =
        agent(&dir.path().join("agent"), &proxy, &key, &["testing/bulk", "testing/ticker"], 1_000)?;
    let addr = proxy.http.context("http")?;
    let metric = "wasmtap_proxy_store_expired_segments_total{project=\"shop\",reason=\"size\"} ";
    wait::until(Duration::from_secs(90), "three segments deleted for the size cap", || {
        let body = http::get(addr, "/metrics", &[])?.body;
        let n: f64 = body
            .lines()
            .find_map(|l| l.strip_prefix(metric))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Ok((n >= 3.0).then_some(()))
    })
    .with_context(|| proxy.log_text())?;
    let status = agent.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status}");
    // Once the last closed segment is handled, the newest alone is left,
    // and it reads: the last ticks the agent sent are there.
    let (rows, blocks) = wait::until(Duration::from_secs(90), "one segment left", || {
        let (rows, blocks) = segments(&home)?;
        Ok((rows.len() + blocks.len() == 1).then_some((rows, blocks)))
    })?;
    assert_eq!((rows.len(), blocks.len()), (1, 0), "the segment being written is kept");
    let kept = ticks::stored(&proxy)?;
    assert!(!kept.is_empty(), "the newest segment's ticks read back");
    Ok(())
}

#[test]
fn after_a_kill_9_queries_answer_exactly_as_before() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let home = dir.path().join("proxy");
    let extra = "[store]\nsegment_bytes = 16384\n";
    let proxy = Proxy::start_with(&home, &[("shop", &key)], extra)?;
    let listen = proxy.addr.to_string();
    let agent_home = dir.path().join("agent");
    let first = agent(&agent_home, &proxy, &key, &["testing/ticker", "testing/bulk"], 2_000)?;
    wait::until(Duration::from_secs(60), "several compressed segments", || {
        Ok((segments(&home)?.1.len() >= 3).then_some(()))
    })?;
    let status = first.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status}");
    let before = everything(&proxy.config)?;
    assert!(before.len() > 5_000, "{} values", before.len());
    proxy.kill()?;
    let proxy = Proxy::start_at(&home, &listen, &[("shop", &key)], extra)?;
    assert_eq!(everything(&proxy.config)?, before, "right after the restart");
    // Again once whatever the kill left uncompressed is compressed.
    wait::until(Duration::from_secs(30), "closed segments compressed", || {
        Ok((segments(&home)?.0.len() == 1).then_some(()))
    })?;
    assert_eq!(everything(&proxy.config)?, before, "after compression");
    // The agent goes on where it stopped: every tick stored once.
    let again = Agent::start_with_config(
        &agent_home,
        &agent_home.join("agent.toml"),
        agent_home.join("plugins"),
    )?;
    let last = ticks::highest(&proxy)?;
    ticks::wait_for(&proxy, last + 10, "ticks after the restart")?;
    let status = again.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "{status}");
    ticks::assert_each_once(&proxy).with_context(|| proxy.log_text())?;
    Ok(())
}

#[test]
fn a_store_written_before_compression_reads_as_it_did() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = paths::root().join("proxy/tests/fixtures/store-v2");
    let shop = dir.path().join("proxy/store/shop");
    std::fs::create_dir_all(&shop)?;
    for entry in std::fs::read_dir(fixture.join("shop"))? {
        let path = entry?.path();
        std::fs::copy(&path, shop.join(path.file_name().context("name")?))?;
    }
    let mut expected: Vec<String> = std::fs::read_to_string(fixture.join("expected-query.jsonl"))?
        .lines()
        .map(str::to_owned)
        .collect();
    expected.sort();
    let key = new_key("shop")?;
    // The fixture's batches arrived in November 2026: kept whatever their age.
    let proxy = Proxy::start_with(
        &dir.path().join("proxy"),
        &[("shop", &key)],
        "[store]\nretention = \"off\"\n",
    )?;
    wait::until(Duration::from_secs(30), "the closed segments compressed", || {
        Ok((segments(&dir.path().join("proxy"))?.1.len() == 2).then_some(()))
    })?;
    assert_eq!(everything(&proxy.config)?, expected);
    Ok(())
}
