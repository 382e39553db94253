//! What the `ticker` collector's counts tell about delivery: the collector
//! counts 1, 2, 3, … (every 100 ms, across restarts), so a store or a
//! Prometheus shows exactly which samples arrived, and how often.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::{Prometheus, Proxy, wait};

/// Ticker values in `proxy`'s store: value → the batch sequence numbers holding it.
pub fn stored(proxy: &Proxy) -> anyhow::Result<BTreeMap<u64, Vec<u64>>> {
    let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for row in proxy.query(&["--collector", "ticker"])? {
        let n = row["value"].as_f64().context("value")? as u64;
        out.entry(n).or_default().push(row["seq"].as_u64().context("seq")?);
    }
    Ok(out)
}

/// The stored ticker samples as (time in ms, value).
pub fn stored_points(proxy: &Proxy) -> anyhow::Result<BTreeSet<(u64, u64)>> {
    stored_points_at(&proxy.config)
}

/// Like [`stored_points`], for the proxy configured by `config`, running or not.
pub fn stored_points_at(config: &Path) -> anyhow::Result<BTreeSet<(u64, u64)>> {
    crate::proxy::query(config, &["--collector", "ticker"])?
        .iter()
        .map(|r| {
            Ok((r["time"].as_u64().context("time")?, r["value"].as_f64().context("value")? as u64))
        })
        .collect()
}

/// The highest stored tick (0 when none).
pub fn highest(proxy: &Proxy) -> anyhow::Result<u64> {
    Ok(stored(proxy)?.keys().next_back().copied().unwrap_or(0))
}

/// Waits until `proxy` stored a tick of at least `at_least`; returns the highest.
pub fn wait_for(proxy: &Proxy, at_least: u64, what: &str) -> anyhow::Result<u64> {
    wait::until(Duration::from_secs(60), what, || {
        let h = highest(proxy)?;
        Ok((h >= at_least).then_some(h))
    })
    .with_context(|| proxy.log_text())
}

/// Every tick from 1 to the highest is stored, each exactly once; returns the highest.
pub fn assert_each_once(proxy: &Proxy) -> anyhow::Result<u64> {
    let all = stored(proxy)?;
    let top = all.keys().next_back().copied().unwrap_or(0);
    let missing: Vec<u64> = (1..=top).filter(|n| !all.contains_key(n)).collect();
    anyhow::ensure!(missing.is_empty(), "lost ticks: {missing:?}");
    let twice: Vec<(&u64, &Vec<u64>)> = all.iter().filter(|(_, seqs)| seqs.len() > 1).collect();
    anyhow::ensure!(twice.is_empty(), "ticks stored more than once (tick, seqs): {twice:?}");
    Ok(top)
}

/// The ticker samples of `agent` in `prometheus`, as (time in ms, value).
pub fn in_prometheus(prometheus: &Prometheus, agent: &str) -> anyhow::Result<BTreeSet<(u64, u64)>> {
    let r = prometheus
        .query(&format!("wasmtap_ticker_n_total{{project=\"shop\",agent=\"{agent}\"}}[1h]"))?;
    let mut out = BTreeSet::new();
    for series in &r {
        for p in series["values"].as_array().context("values")? {
            let t = (p[0].as_f64().context("time")? * 1000.0).round() as u64;
            let v: f64 = p[1].as_str().context("value")?.parse()?;
            out.insert((t, v as u64));
        }
    }
    Ok(out)
}

/// Waits until every stored ticker sample of `agent` is in `prometheus`.
pub fn wait_all_in_prometheus(
    proxy: &Proxy,
    prometheus: &Prometheus,
    agent: &str,
) -> anyhow::Result<usize> {
    let stored = stored_points(proxy)?;
    let mut missing = stored.len();
    wait::until(Duration::from_secs(60), "every stored tick in Prometheus", || {
        let got = in_prometheus(prometheus, agent)?;
        missing = stored.difference(&got).count();
        Ok((missing == 0).then_some(()))
    })
    .with_context(|| {
        format!(
            "{missing} of the {} stored ticks are not in Prometheus\nproxy log:\n{}",
            stored.len(),
            proxy.log_text()
        )
    })?;
    Ok(stored.len())
}

// Across several proxies (failover), and what a kill may cost.

/// Ticker values in `proxies`' stores: value → the (store, seq) pairs holding it.
pub fn ticks(proxies: &[&Proxy]) -> anyhow::Result<BTreeMap<u64, Vec<(usize, u64)>>> {
    let mut out: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
    for (i, p) in proxies.iter().enumerate() {
        for row in p.query(&["--collector", "ticker"])? {
            let n = row["value"].as_f64().context("value")? as u64;
            let seq = row["seq"].as_u64().context("seq")?;
            out.entry(n).or_default().push((i, seq));
        }
    }
    Ok(out)
}

/// The highest tick stored in `proxies` (0 for none).
pub fn highest_in(proxies: &[&Proxy]) -> anyhow::Result<u64> {
    Ok(ticks(proxies)?.keys().next_back().copied().unwrap_or(0))
}

/// Waits (up to 30 s) until a tick of at least `at_least` is stored; returns the highest.
pub fn wait_for_tick(proxies: &[&Proxy], at_least: u64, what: &str) -> anyhow::Result<u64> {
    wait::until(Duration::from_secs(30), what, || {
        let h = highest_in(proxies)?;
        Ok((h >= at_least).then_some(h))
    })
}

/// The runs of ticks missing from 1 to the highest, as (first, last).
pub fn gaps(ticks: &BTreeMap<u64, Vec<(usize, u64)>>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let top = ticks.keys().next_back().copied().unwrap_or(0);
    for n in (1..=top).filter(|n| !ticks.contains_key(n)) {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// A port free on 127.0.0.1 right now (nothing listens on it yet).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The ticker values a batch holds.
pub fn in_batch(batch: &wasmtap_protocol::message::Batch) -> Vec<u64> {
    batch
        .samples
        .iter()
        .filter(|s| &*s.collector == "ticker")
        .flat_map(|s| s.values.iter())
        .filter_map(|(_, v)| match v {
            wasmtap_protocol::message::Value::Counter(x) => Some(*x as u64),
            _ => None,
        })
        .collect()
}
