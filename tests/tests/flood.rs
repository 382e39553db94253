//! The listener under a flood, while a real agent connects and delivers:
//! from another network, hundreds of connections that never speak and
//! hundreds that send junk, reconnecting as fast as they are dropped; and
//! 2,000 idle connections from 200 networks, more than the whole
//! unauthenticated table holds. What the admission gate did is read from
//! the proxy's own counters on `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use wasmtap_tests::{Agent, Proxy, new_key, wait};

/// Keeps `n` connections from `source` open to `target`: three in four
/// silent, the rest sending garbage, each reopened as soon as the proxy
/// drops it; counts the connections opened in `opened`.
async fn flood(
    source: &str,
    target: std::net::SocketAddr,
    n: usize,
    until: Instant,
    opened: Arc<AtomicU64>,
) {
    let source: std::net::SocketAddr = match format!("{source}:0").parse() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut tasks = Vec::new();
    for i in 0..n {
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(socket) = TcpSocket::new_v4() else { break };
                if socket.bind(source).is_err() {
                    break;
                }
                let Ok(mut stream) = socket.connect(target).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                if i % 4 != 0 {
                    // Silent: hold the connection until the proxy drops it.
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(
                        until.saturating_duration_since(Instant::now()),
                        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                    )
                    .await;
                } else {
                    let junk: Vec<u8> = (0..512).map(|b| (b * 7 + i) as u8).collect();
                    let _ = stream.write_all(&junk).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[test]
fn real_agents_connect_through_a_flood_of_junk_and_silent_connections() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(
        &dir.path().join("proxy"),
        &[("shop", &key)],
        &format!(
            "{HTTP}[limits]\nhandshake_timeout = \"5s\"\nmax_unauthenticated = 256\nmax_unauthenticated_per_source = 32\nhandshakes_per_source = 100\n"
        ),
    )?;
    let target = proxy.addr;
    let until = Instant::now() + Duration::from_secs(25);
    let opened = Arc::new(AtomicU64::new(0));
    let counter = opened.clone();
    let attacker = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        // Another /24 than the agent's 127.0.0.1: networks share quotas.
        rt.block_on(flood("127.0.1.2", target, 800, until, counter));
        Ok(())
    });
    // Let the flood build up first: the gate's limits are all in use.
    wait::until(Duration::from_secs(20), "the flood to build up", || {
        Ok((opened.load(Ordering::Relaxed) >= 300).then_some(()))
    })?;
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "edge-1",
        target.port(),
        &key,
        &["testing/ticker"],
    )?;
    wait::until(Duration::from_secs(20), "ticks through the flood", || {
        let rows = proxy.query(&["--collector", "ticker"])?;
        Ok((rows.len() >= 20).then_some(()))
    })
    .with_context(|| format!("proxy log tail:\n{}", tail(&proxy.log_text())))?;
    attacker.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    let opened = opened.load(Ordering::Relaxed);
    assert!(opened > 1_000, "the flood was real: {opened} connections");
    // The flooding network was turned away for its share or its rate.
    let refused = REFUSED
        .iter()
        .map(|series| Ok(proxy.metric(series)?.unwrap_or(0.0)))
        .sum::<anyhow::Result<f64>>()?;
    assert!(refused > 0.0, "the gate turned some away (refused {refused})");
    Ok(())
}

/// An `[http]` listener, for the gate's counters on `/metrics`.
const HTTP: &str = "[http]\nlisten = \"127.0.0.1:0\"\n";
const OPEN: &str = "wasmtap_proxy_unauthenticated_connections";
const MAX: &str = "wasmtap_proxy_unauthenticated_max";
const EVICTED: &str = "wasmtap_proxy_unauthenticated_evicted_total";
const REFUSED: [&str; 2] = [
    "wasmtap_proxy_unauthenticated_refused_total{reason=\"network_share\"}",
    "wasmtap_proxy_unauthenticated_refused_total{reason=\"network_rate\"}",
];

/// A gauge or counter of the gate that must be on `/metrics`.
fn gate_metric(proxy: &Proxy, series: &str) -> anyhow::Result<f64> {
    proxy.metric(series)?.with_context(|| format!("{series} missing from /metrics"))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Holds `per_network` silent connections from each of `networks` source
/// addresses, reopening each as soon as the proxy drops it, until `until`.
/// Returns the connections opened and the most held open at once.
async fn hold_idle(
    networks: Vec<std::net::SocketAddr>,
    per_network: usize,
    target: std::net::SocketAddr,
    until: Instant,
) -> (u64, usize) {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for source in networks {
        for _ in 0..per_network {
            let (open, peak) = (open.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let mut opened = 0u64;
                while Instant::now() < until {
                    let Ok(socket) = TcpSocket::new_v4() else { break };
                    if socket.bind(source).is_err() {
                        break;
                    }
                    let Ok(mut stream) = socket.connect(target).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    opened += 1;
                    let now_open = open.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    peak.fetch_max(now_open, std::sync::atomic::Ordering::Relaxed);
                    let mut buf = [0u8; 16];
                    let _ = tokio::time::timeout(
                        until.saturating_duration_since(Instant::now()),
                        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                    )
                    .await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
                opened
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    (total, peak.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn idle_connections_from_200_networks_do_not_lock_a_fresh_agent_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    // Default limits: 1,024 unauthenticated in all, 64 per network, the
    // first frame within 2 s.
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], HTTP)?;
    let max = gate_metric(&proxy, MAX)?;
    assert_eq!(max, 1_024.0, "the default table size");
    let target = proxy.addr;
    let until = Instant::now() + Duration::from_secs(20);
    // 127.1.0.1 .. 127.1.219.1: 220 different /24s of 127.0.0.0/8.
    let networks: Vec<std::net::SocketAddr> =
        (0..220u8).map(|n| std::net::SocketAddr::from(([127, 1, n, 1], 0))).collect();
    let attacker = std::thread::spawn(move || -> anyhow::Result<(u64, usize)> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        Ok(rt.block_on(hold_idle(networks, 10, target, until)))
    });
    // Let the idle connections build up: the table is full and the gate has
    // begun to drop its oldest entries.
    let evicted_before = wait::until(Duration::from_secs(15), "the table full", || {
        let evicted = gate_metric(&proxy, EVICTED)?;
        Ok((evicted > 0.0).then_some(evicted))
    })
    .with_context(|| format!("proxy log tail:\n{}", tail(&proxy.log_text())))?;
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "edge-1",
        target.port(),
        &key,
        &["testing/ticker"],
    )?;
    wait::until(Duration::from_secs(15), "ticks through 2,000 idle connections", || {
        let rows = proxy.query(&["--collector", "ticker"])?;
        Ok((rows.len() >= 5).then_some(()))
    })
    .with_context(|| format!("proxy log tail:\n{}", tail(&proxy.log_text())))?;
    // The agent got in while the gate was still dropping the oldest
    // unauthenticated connections for newer ones, and the table never held
    // more than its size.
    let (evicted, open) = (gate_metric(&proxy, EVICTED)?, gate_metric(&proxy, OPEN)?);
    assert!(
        evicted > evicted_before,
        "evictions went on while the agent connected ({evicted_before} before, {evicted} after)"
    );
    assert!(open <= max, "{open} unauthenticated connections held, more than {max}");
    eprintln!("evicted: {evicted_before} before the agent started, {evicted} once it delivered");
    let (opened, peak) = attacker.join().map_err(|_| anyhow::anyhow!("attacker panicked"))??;
    // Every attacker socket connected at least once, and more were held at
    // once than the proxy admits before the handshake (1,024), so the gate had
    // to choose whom to drop while the agent was connecting.
    assert!(opened >= 2_200, "every attacker socket connected (opened {opened})");
    assert!(
        peak > 1_024,
        "more idle connections were held at once than the proxy admits (peak {peak})"
    );
    Ok(())
}
