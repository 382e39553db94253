//! Faults end to end, on the proxy's side: kill -9 during ingest, a
//! remote-write backend that goes away, SIGTERM, a data directory that
//! fills up. The `ticker` collector counts 1, 2, 3, … every 100 ms, so the
//! store and Prometheus show exactly which samples arrived.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::outage::Forward;
use wasmtap_tests::tmpfs::Tmpfs;
use wasmtap_tests::{Agent, Prometheus, Proxy, http, new_key, ticks, wait};

const AGENT: &str = "edge-1";

/// Remote write to `addr` with short waits, and an `[http]` listener for `/metrics`.
fn remote_write(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[[remote_write]]\nurl = \"http://{addr}/api/v1/write\"\n\
         min_backoff = \"50ms\"\nmax_backoff = \"500ms\"\n{extra}\n"
    )
}

fn ticker_agent(dir: &Path, proxy: &Proxy, key: &str) -> anyhow::Result<Agent> {
    Agent::start(&dir.join("agent"), AGENT, proxy.addr.port(), key, &["testing/ticker"])
}

/// The value of the first `/metrics` line starting with `prefix`.
fn metric(proxy: &Proxy, prefix: &str) -> anyhow::Result<Option<f64>> {
    let addr = proxy.http.context("the proxy has no [http] listener")?;
    let body = http::get(addr, "/metrics", &[])?.body;
    Ok(body.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn five_proxy_kills_during_ingest_store_every_tick_exactly_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let home = dir.path().join("proxy");
    let mut proxy = Proxy::start(&home, &[("shop", &key)])?;
    let listen = proxy.addr.to_string();
    let agent = ticker_agent(dir.path(), &proxy, &key)?;
    let mut last = 0;
    for kill in 1..=5 {
        last = ticks::wait_for(&proxy, last + 10, &format!("ticks before kill {kill}"))?;
        proxy.kill()?;
        proxy = Proxy::start_at(&home, &listen, &[("shop", &key)], "")?;
    }
    ticks::wait_for(&proxy, last + 20, "ticks after the last restart")?;
    let status = agent.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{status}");
    let top = ticks::assert_each_once(&proxy).with_context(|| proxy.log_text())?;
    assert!(top > last, "{top}");
    Ok(())
}

#[test]
fn remote_write_delivers_every_stored_sample_across_an_outage_and_a_kill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let prometheus = Prometheus::start(&dir.path().join("prometheus"))?;
    let backend = Forward::start(prometheus.addr)?;
    let key = new_key("shop")?;
    let home = dir.path().join("proxy");
    let extra = remote_write(backend.addr, "batch_wait = \"200ms\"\nbatch_size = 20\n");
    let proxy = Proxy::start_with(&home, &[("shop", &key)], &extra)?;
    let listen = proxy.addr.to_string();
    let agent = ticker_agent(dir.path(), &proxy, &key)?;
    wait::until(Duration::from_secs(30), "ticks in Prometheus", || {
        Ok((ticks::in_prometheus(&prometheus, AGENT)?.len() >= 10).then_some(()))
    })
    .with_context(|| proxy.log_text())?;

    // The backend goes away; the proxy goes on storing, then dies (kill -9)
    // and comes back while the backend is still away.
    let backend_addr = backend.stop();
    let before = ticks::highest(&proxy)?;
    ticks::wait_for(&proxy, before + 30, "ticks stored during the outage")?;
    let endpoint = format!("{{sink=\"remote_write\",endpoint=\"http://{backend_addr}\"}} ");
    let lagging = wait::until(Duration::from_secs(20), "remote-write lag on /metrics", || {
        let values = metric(&proxy, &format!("wasmtap_proxy_sink_lag_values{endpoint}"))?;
        let seconds = metric(&proxy, &format!("wasmtap_proxy_sink_lag_seconds{endpoint}"))?;
        Ok(values.zip(seconds).filter(|(v, s)| *v >= 20.0 && *s > 0.0))
    });
    proxy.kill()?;
    let proxy = Proxy::start_at(&home, &listen, &[("shop", &key)], &extra)?;
    let h = ticks::highest(&proxy)?;
    ticks::wait_for(&proxy, h + 20, "ticks stored after the restart")?;
    let _backend = Forward::start_at(backend_addr, prometheus.addr)?;
    let status = agent.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{status}");

    let n = ticks::wait_all_in_prometheus(&proxy, &prometheus, AGENT)?;
    assert!(n >= 60, "{n} ticks stored");
    let (values, seconds) = lagging.context("lag during the outage")?;
    assert!(values >= 20.0 && seconds > 0.0, "lag {values} values, {seconds} s");
    wait::until(Duration::from_secs(20), "no lag once delivered", || {
        let v = metric(&proxy, &format!("wasmtap_proxy_sink_lag_values{endpoint}"))?;
        Ok((v == Some(0.0)).then_some(()))
    })?;
    Ok(())
}

#[test]
fn sigterm_flushes_what_is_stored_to_prometheus_and_exits_0() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let prometheus = Prometheus::start(&dir.path().join("prometheus"))?;
    let key = new_key("shop")?;
    // Batches wait for an hour: only the shutdown sends them.
    let extra = remote_write(prometheus.addr, "batch_wait = \"1h\"\nbatch_size = 50000\n");
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &extra)?;
    let _agent = ticker_agent(dir.path(), &proxy, &key)?;
    ticks::wait_for(&proxy, 30, "ticks stored")?;
    assert!(ticks::in_prometheus(&prometheus, AGENT)?.is_empty(), "sent before the shutdown");
    let log = proxy.log.clone();
    let config = proxy.config.clone();
    let status = proxy.terminate(Duration::from_secs(30))?;
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{status}; log:\n{log}");
    // The store as the proxy left it, read with `query`.
    let stored = ticks::stored_points_at(&config)?;
    assert!(stored.len() >= 30, "{}", stored.len());
    let got = ticks::in_prometheus(&prometheus, AGENT)?;
    let missing = stored.difference(&got).count();
    assert_eq!(missing, 0, "{missing} of {} stored ticks not flushed; log:\n{log}", stored.len());
    Ok(())
}

#[test]
fn a_full_data_directory_stops_acks_and_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("proxy");
    let disk = match Tmpfs::mount(&home.join("store"), 4 << 20) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED: this test mounts a small tmpfs and needs root: {e:#}");
            return Ok(());
        }
    };
    let prometheus = Prometheus::start(&dir.path().join("prometheus"))?;
    let key = new_key("shop")?;
    let extra = remote_write(prometheus.addr, "batch_wait = \"200ms\"\n");
    let mut proxy = Proxy::start_with(&home, &[("shop", &key)], &extra)?;
    let agent = ticker_agent(dir.path(), &proxy, &key)?;
    ticks::wait_for(&proxy, 20, "ticks before the disk fills")?;

    let filler = disk.dir.join("filler");
    disk.fill(&filler)?;
    let full = |at_least: usize| {
        wait::until(Duration::from_secs(30), "writes failing for lack of space", || {
            let n = proxy.log_text().matches("No space left on device").count();
            Ok((n >= at_least).then_some(n))
        })
    };
    // What fitted in the last partly used page goes in; after that, nothing.
    let failures = full(4)?;
    let stuck = ticks::highest(&proxy)?;
    full(failures + 4)?;
    assert_eq!(ticks::highest(&proxy)?, stuck, "a batch was acknowledged on a full disk");
    assert!(proxy.try_wait()?.is_none(), "the proxy died:\n{}", proxy.log_text());

    std::fs::remove_file(&filler)?;
    ticks::wait_for(&proxy, stuck + 30, "ticks once there is space again")?;
    let status = agent.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{status}");
    ticks::assert_each_once(&proxy)?;
    ticks::wait_all_in_prometheus(&proxy, &prometheus, AGENT)?;
    Ok(())
}
