//! Reading what the `ticker` test collector delivered: it counts 1, 2, 3,
//! … (every 100 ms, across restarts), so a store shows exactly which of its
//! samples arrived, and how often.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

use crate::{Proxy, wait};

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
pub fn highest(proxies: &[&Proxy]) -> anyhow::Result<u64> {
    Ok(ticks(proxies)?.keys().next_back().copied().unwrap_or(0))
}

/// Waits (up to 30 s) until a tick of at least `at_least` is stored; returns the highest.
pub fn wait_for_tick(proxies: &[&Proxy], at_least: u64, what: &str) -> anyhow::Result<u64> {
    wait::until(Duration::from_secs(30), what, || {
        let h = highest(proxies)?;
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
