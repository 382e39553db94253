//! Proxies over a real three-node NATS JetStream cluster on loopback: a
//! batch is acknowledged once JetStream holds it, every proxy's store is
//! fed from the stream, and the `ticker` collector's counts (1, 2, 3, …
//! every 100 ms) show that each sample is stored exactly once, in either
//! proxy, whatever fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::ctl::{self, Ctl};
use wasmtap_tests::nats::stable_port;
use wasmtap_tests::ticks;
use wasmtap_tests::{Agent, NatsCluster, Prometheus, Proxy, http, new_key, plugin, wait};

/// The `[cluster]` section of proxy `name`.
fn cluster_section(nats: &NatsCluster, name: &str) -> String {
    format!(
        "[cluster]\nnats = {}\nname = \"{name}\"\nconfirm_timeout = \"2s\"\n\n{}",
        nats.toml_urls(),
        ctl::admin_section()
    )
}

/// An agent of project `shop` trying `hosts` on `port`, running `ticker`.
fn agent(dir: &Path, hosts: &[&str], port: u16, key: &str) -> anyhow::Result<Agent> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let (wasm, manifest) = plugin("testing/ticker")?;
    std::fs::copy(&wasm, plugins.join("ticker.wasm"))?;
    std::fs::copy(&manifest, plugins.join("ticker.toml"))?;
    agent_named(dir, hosts, port, key, "edge-1")
}

/// Agent `name` of project `shop` trying `hosts` on `port`, running what
/// is in `dir/plugins` (and what the fleet sends).
fn agent_named(
    dir: &Path,
    hosts: &[&str],
    port: u16,
    key: &str,
    name: &str,
) -> anyhow::Result<Agent> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhosts = [{}]\nport = {port}\naccess_key = \"{key}\"\nmax_backoff = \"1s\"\n\n[agent]\nname = \"{name}\"\ndata_dir = \"data\"\n\n[plugins]\ndir = \"plugins\"\n",
            hosts.join(", ")
        ),
    )?;
    Agent::start_with_config(dir, &config, plugins)
}

/// Two proxies, `a` on 127.0.0.1 and `b` on 127.0.0.2, one port, one identity.
struct Pair {
    dirs: [PathBuf; 2],
    listens: [String; 2],
    extras: [String; 2],
}

impl Pair {
    fn new(root: &Path, nats: &NatsCluster) -> anyhow::Result<Self> {
        let port = stable_port()?;
        let dirs = [root.join("a"), root.join("b")];
        std::fs::create_dir_all(&dirs[1])?;
        Ok(Self {
            listens: [format!("127.0.0.1:{port}"), format!("127.0.0.2:{port}")],
            extras: [cluster_section(nats, "proxy-a"), cluster_section(nats, "proxy-b")],
            dirs,
        })
    }

    fn port(&self) -> anyhow::Result<u16> {
        Ok(self.listens[0].rsplit_once(':').context("port")?.1.parse()?)
    }

    fn start(&self, i: usize, key: &str) -> anyhow::Result<Proxy> {
        if i == 1 && !self.dirs[1].join("identity.key").exists() {
            Proxy::share_identity(&self.dirs[0], &self.dirs[1])?;
        }
        Proxy::start_at(&self.dirs[i], &self.listens[i], &[("shop", key)], &self.extras[i])
    }
}

/// Waits until `proxy`'s `/metrics` says `value` for `name`.
fn wait_metric(proxy: &Proxy, name: &str, value: f64) -> anyhow::Result<()> {
    wait::until(Duration::from_secs(30), &format!("{name} {value}"), || {
        Ok((proxy.metric(name)? == Some(value)).then_some(()))
    })
    .with_context(|| proxy.log_text())
}

#[test]
fn failover_across_proxies_and_a_nats_node_stores_each_tick_once_in_both() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nats = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let key = new_key("shop")?;
    let pair = Pair::new(dir.path(), &nats)?;
    let a = pair.start(0, &key)?;
    let b = pair.start(1, &key)?;
    let agent = agent(&dir.path().join("agent"), &["127.0.0.1", "127.0.0.2"], pair.port()?, &key)?;

    let first = ticks::wait_for(&b, 15, "ticks in proxy b, sent through either")
        .with_context(|| nats.log_text())?;
    // One NATS node and the proxy the agent uses die together.
    nats.kill(0)?;
    a.kill()?;
    let second = ticks::wait_for(&b, first + 20, "ticks after proxy a and a NATS node died")?;
    nats.restart(0)?;
    let a = pair.start(0, &key)?;
    b.kill()?;
    ticks::wait_for(&a, second + 20, "ticks after proxy b died")?;
    let b = pair.start(1, &key)?;

    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");
    let top = ticks::highest(&a)?;
    // Both stores converge on every tick, each once.
    ticks::wait_for(&b, top, "proxy b caught up")?;
    let in_a = ticks::assert_each_once(&a).with_context(|| a.log_text())?;
    let in_b = ticks::assert_each_once(&b).with_context(|| b.log_text())?;
    assert_eq!((in_a, in_b), (top, top));
    assert!(top >= second + 20, "top {top}");
    Ok(())
}

#[test]
fn a_full_nats_outage_stops_acknowledgements_and_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nats = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let key = new_key("shop")?;
    let pair = Pair::new(dir.path(), &nats)?;
    let a = pair.start(0, &key)?;
    let agent = agent(&dir.path().join("agent"), &["127.0.0.1"], pair.port()?, &key)?;
    let first = ticks::wait_for(&a, 10, "ticks before the outage")?;

    nats.kill_all()?;
    // Ticks go on in the agent; none can be confirmed, so none is stored,
    // and `/metrics` says so.
    wait_metric(&a, "wasmtap_proxy_cluster_confirming", 0.0)?;
    let during = ticks::highest(&a)?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ticks::highest(&a)?, during, "stored while JetStream was down");
    assert!(during < first + 15, "{during} vs {first}");

    nats.start_all()?;
    ticks::wait_for(&a, during + 30, "ticks after the outage").with_context(|| nats.log_text())?;
    wait_metric(&a, "wasmtap_proxy_cluster_confirming", 1.0)?;
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");
    let top = ticks::highest(&a)?;
    assert_eq!(ticks::assert_each_once(&a).with_context(|| a.log_text())?, top);
    Ok(())
}

#[test]
fn any_proxy_lists_every_agent_and_reaches_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let key = new_key("shop")?;
    let pair = Pair::new(dir.path(), &nats)?;
    let a = pair.start(0, &key)?;
    let b = pair.start(1, &key)?;
    // The agent knows proxy a only.
    let agent = agent(&dir.path().join("agent"), &["127.0.0.1"], pair.port()?, &key)?;
    ticks::wait_for(&a, 3, "the agent's first ticks")?;

    let listed = b.ctl(&["agents"])?;
    assert!(listed.ok, "{}", listed.stderr);
    let agents = listed.json.as_array().context("an array")?;
    assert_eq!(agents.len(), 1, "{listed:?}");
    assert_eq!(
        (agents[0]["agent"].as_str(), agents[0]["proxy"].as_str()),
        (Some("edge-1"), Some("proxy-a"))
    );

    // Through proxy b, which holds no session of it.
    let info = Ctl::new(&b, "edge-1").request(&["info"])?;
    assert_eq!(info["agent"].as_str(), Some("edge-1"), "{info}");
    let missing = b.ctl(&["request", "nobody", "info"])?;
    assert!(!missing.ok && missing.stderr.contains("not connected"), "{missing:?}");

    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");
    Ok(())
}

/// The values `proxy` sent to remote write so far (0 before its first).
fn sent(proxy: &Proxy) -> anyhow::Result<f64> {
    let addr = proxy.http.context("[http] listener")?;
    let body = http::get(addr, "/metrics", &[])?.body;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("wasmtap_proxy_remote_write_sent_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

#[test]
fn remote_write_is_fed_once_for_the_cluster_and_fails_over() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let prometheus = Prometheus::start(&dir.path().join("prometheus"))?;
    let key = new_key("shop")?;
    let mut pair = Pair::new(dir.path(), &nats)?;
    let rw = format!(
        "\n[[remote_write]]\nurl = \"http://{}/api/v1/write\"\nbatch_wait = \"200ms\"\n",
        prometheus.addr
    );
    for extra in &mut pair.extras {
        extra.push_str(&rw);
    }
    let a = pair.start(0, &key)?;
    let b = pair.start(1, &key)?;
    let agent = agent(&dir.path().join("agent"), &["127.0.0.1", "127.0.0.2"], pair.port()?, &key)?;
    ticks::wait_for(&a, 20, "ticks before the failover")?;
    ticks::wait_all_in_prometheus(&a, &prometheus, "edge-1")?;
    // One proxy holds the endpoint's lease: the other sent nothing.
    let (sent_a, sent_b) = (sent(&a)?, sent(&b)?);
    assert!((sent_a > 0.0) != (sent_b > 0.0), "a sent {sent_a}, b sent {sent_b}");
    let (holder, other, other_index) = if sent_a > 0.0 { (a, b, 1) } else { (b, a, 0) };
    holder.kill()?;
    let top = ticks::highest(&other)?;
    ticks::wait_for(&other, top + 30, "ticks after the lease holder died")?;
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");
    // The other proxy took the lease over: every tick reaches Prometheus.
    ticks::wait_all_in_prometheus(&other, &prometheus, "edge-1")?;
    assert!(sent(&other)? > 0.0, "proxy {other_index} never took the lease over");
    Ok(())
}

/// Agent `name` of project `shop` connected to `host` only, with no
/// collector of its own (it runs what the fleet sends), once its session is up.
fn fleet_agent(dir: &Path, host: &str, port: u16, key: &str, name: &str) -> anyhow::Result<Agent> {
    let agent = agent_named(dir, &[host], port, key, name)?;
    wait::until(Duration::from_secs(60), "the agent's session", || {
        Ok(agent.log_text().contains("session established").then_some(()))
    })?;
    Ok(agent)
}

/// `collectors ARGS --project shop …` through `proxy`, which must succeed.
fn collectors(proxy: &Proxy, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = proxy.collectors(args)?;
    anyhow::ensure!(out.ok, "collectors {args:?}: {}\n{}", out.stderr, proxy.log_text());
    Ok(out.json)
}

/// Waits until `proxy`'s `status` of `fleet` says `agent` has `release`
/// (`None`: none) with `want` as its status.
fn until_agent(proxy: &Proxy, agent: &str, release: Option<u64>, want: &str) -> anyhow::Result<()> {
    let what = format!("{agent} on release {release:?} {want}");
    wait::until(Duration::from_secs(120), &what, || {
        // Until the proxy has the shared catalog, it knows no `fleet`.
        let s = proxy.collectors(&["status", "--project", "shop", "fleet"])?;
        let row = s.json.as_array().into_iter().flatten().find(|r| r["agent"] == agent);
        let done = row.is_some_and(|r| {
            r["release"].as_u64() == release && r["status"].as_str().unwrap_or("") == want
        });
        Ok(done.then_some(()))
    })
    .with_context(|| proxy.log_text())
}

/// The state of release `id` in `proxy`'s `list` ("" while it has none).
fn release_state(proxy: &Proxy, id: u64) -> anyhow::Result<String> {
    let list = collectors(proxy, &["list", "--project", "shop"])?;
    let r = list.as_array().into_iter().flatten().find(|r| r["id"] == id);
    Ok(r.and_then(|r| r["state"].as_str()).unwrap_or("").to_owned())
}

#[test]
fn every_proxy_serves_the_collectors_published_through_any() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let key = new_key("shop")?;
    let pair = Pair::new(dir.path(), &nats)?;
    let a = pair.start(0, &key)?;
    let b = pair.start(1, &key)?;
    let port = pair.port()?;
    let _one = fleet_agent(&dir.path().join("one"), "127.0.0.1", port, &key, "web-01")?;
    let _two = fleet_agent(&dir.path().join("two"), "127.0.0.2", port, &key, "web-02")?;
    // JetStream answers (the agents' own reports are confirmed).
    wait_metric(&a, "wasmtap_proxy_cluster_confirming", 1.0)?;
    wait_metric(&b, "wasmtap_proxy_cluster_confirming", 1.0)?;

    // Published through proxy a: proxy b serves it to its agent too.
    let (v1, _) = plugin("testing/fleet-v1")?;
    let r1 = collectors(&a, &["publish", "--project", "shop", v1.to_str().context("path")?])?;
    assert_eq!((r1["id"].as_u64(), r1["state"].as_str()), (Some(1), Some("promoted")), "{r1}");
    until_agent(&b, "web-02", Some(1), "running")?;
    until_agent(&a, "web-01", Some(1), "running")?;
    assert_eq!(release_state(&b, 1)?, "promoted");

    // A broken version under a canary through proxy b: its agent is the
    // canary, b judges it and rolls it back; a's catalog says so too.
    let (v2, _) = plugin("testing/fleet-v2")?;
    let v2 = v2.to_str().context("path")?;
    let args = ["publish", "--project", "shop", v2, "--canary", "100%", "--watch", "10m"];
    let r2 = collectors(&b, &args)?;
    assert_eq!(r2["canary"]["agents"], serde_json::json!(["web-02"]), "{r2}");
    wait::until(Duration::from_secs(120), "the rollback, seen through proxy a", || {
        Ok((release_state(&a, 2)? == "rolled_back").then_some(()))
    })
    .with_context(|| b.log_text())?;
    until_agent(&b, "web-02", Some(1), "running")?;
    assert_eq!(release_state(&a, 1)?, "promoted");

    // Two proxies changing the catalog one after the other both count.
    let promote = b.collectors(&["promote", "--project", "shop", "fleet"])?;
    assert!(!promote.ok, "nothing to promote: {promote:?}");
    collectors(&a, &["remove", "--project", "shop", "fleet"])?;
    until_agent(&b, "web-02", None, "")?;
    until_agent(&a, "web-01", None, "")?;
    assert_eq!(release_state(&b, 1)?, "removed");

    // Two publishes at once, through each proxy: neither is lost (the
    // second is made again to the catalog the first left, or refused for
    // the candidate the first made), and both proxies end with one catalog.
    let (v1, v2) = (v1.to_str().context("path")?, v2);
    let args = ["publish", "--project", "shop", v2, "--canary", "100%", "--hold"];
    let (through_a, through_b) = std::thread::scope(|s| {
        let one = s.spawn(|| a.collectors(&["publish", "--project", "shop", v1]));
        let two = s.spawn(|| b.collectors(&args));
        (one.join(), two.join())
    });
    let (through_a, through_b) = (
        through_a.map_err(|_| anyhow::anyhow!("panicked"))??,
        through_b.map_err(|_| anyhow::anyhow!("panicked"))??,
    );
    let published: Vec<u64> = [&through_a, &through_b]
        .iter()
        .filter(|o| o.ok)
        .filter_map(|o| o.json["id"].as_u64())
        .collect();
    assert!(!published.is_empty(), "{through_a:?} {through_b:?}");
    for refused in [&through_a, &through_b].iter().filter(|o| !o.ok) {
        assert!(refused.stderr.contains("candidate"), "{refused:?}");
    }
    let again = |p: &Proxy| p.log_text().contains("making the change again");
    eprintln!("made again after a conflict: {}", again(&a) || again(&b));
    let mut ids = published.clone();
    ids.dedup();
    assert_eq!(ids.len(), published.len(), "one id each: {published:?}");
    let releases = |proxy: &Proxy| -> anyhow::Result<serde_json::Value> {
        let mut list = collectors(proxy, &["list", "--project", "shop"])?;
        // How many agents have each is per proxy.
        for r in list.as_array_mut().into_iter().flatten() {
            r.as_object_mut().map(|o| o.remove("agents"));
        }
        Ok(list)
    };
    wait::until(Duration::from_secs(30), "one catalog on both proxies", || {
        let (in_a, in_b) = (releases(&a)?, releases(&b)?);
        let all = published.iter().all(|id| in_a.to_string().contains(&format!("\"id\":{id}")));
        Ok((all && in_a == in_b).then_some(()))
    })
    .with_context(|| format!("{:?}\n{:?}", releases(&a).ok(), releases(&b).ok()))?;

    // Without JetStream a change is refused, clearly, and changes nothing;
    // the proxies keep serving the catalog they have.
    let before = releases(&a)?;
    let mut nats = nats;
    nats.kill_all()?;
    let refused = a.collectors(&["rollback", "--project", "shop", "fleet"])?;
    assert!(!refused.ok && refused.stderr.contains("cannot be reached"), "{refused:?}");
    assert_eq!(releases(&a)?, before);
    assert_eq!(releases(&b)?, before);
    Ok(())
}
