//! Prometheus integration end to end: a real agent's samples pushed by the
//! proxy's remote-write sink into a real Prometheus server and read back
//! through its query API; `/metrics` scraped; the admin API's bearer token.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::pki::Pki;
use wasmtap_tests::{Agent, Prometheus, Proxy, http, new_key, paths, wait};

const TOKEN: &str = "test-token-0123456789abcdef";

fn http_section() -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

/// The stored `load1` values of `agent`, as (time, value) pairs.
fn stored_load1(proxy: &Proxy) -> anyhow::Result<Vec<(u64, f64)>> {
    Ok(proxy
        .query(&["--collector", "load"])?
        .iter()
        .filter(|r| r["field"] == "load1")
        .filter_map(|r| Some((r["time"].as_u64()?, r["value"].as_f64()?)))
        .collect())
}

fn http_addr(proxy: &Proxy) -> anyhow::Result<SocketAddr> {
    proxy.http.context("the proxy printed no http address")
}

#[test]
fn remote_write_reaches_a_real_prometheus() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let prometheus = Prometheus::start(&dir.path().join("prometheus"))?;
    let key = new_key("shop")?;
    let extra = format!(
        "{}\n[[remote_write]]\nurl = \"http://{}/api/v1/write\"\nbatch_wait = \"200ms\"\n",
        http_section(),
        prometheus.addr
    );
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &extra)?;
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "web-01",
        proxy.addr.port(),
        &key,
        &["load", "net"],
    )?;
    let context =
        || format!("proxy log:\n{}\nprometheus log:\n{}", proxy.log_text(), prometheus.log_text());

    let load1 = r#"wasmtap_load_load1{project="shop",agent="web-01"}"#;
    let result = wait::until(Duration::from_secs(30), "load1 in Prometheus", || {
        let r = prometheus.query(load1)?;
        Ok((!r.is_empty()).then_some(r))
    })
    .with_context(context)?;
    assert_eq!(result.len(), 1, "{result:?}");
    let metric = &result[0]["metric"];
    assert_eq!(metric["__name__"], "wasmtap_load_load1");
    assert_eq!(metric["collector"], "load");
    assert_eq!(
        metric.as_object().map(|m| m.len()),
        Some(4),
        "exactly name, project, agent, collector: {metric}"
    );
    // Counters arrive under the same names as on /metrics: `_total`, unit first.
    let sent = r#"wasmtap_agent_sealed_bytes_total{project="shop",agent="web-01"}"#;
    wait::until(Duration::from_secs(30), "an agent counter in Prometheus", || {
        Ok((!prometheus.query(sent)?.is_empty()).then_some(()))
    })
    .with_context(context)?;
    // [time in seconds, "value"]: the value is one the proxy stored.
    let value: f64 = result[0]["value"][1].as_str().context("value")?.parse()?;
    let stored = stored_load1(&proxy)?;
    assert!(stored.iter().any(|(_, v)| *v == value), "{value} not among stored {stored:?}");

    // Every stored load1 sample arrives, at its own timestamp: Prometheus
    // returns them all for a range selector over the run.
    let range = wait::until(Duration::from_secs(15), "stored load1 samples in Prometheus", || {
        let stored = stored_load1(&proxy)?;
        let r = prometheus.query(&format!("{load1}[5m]"))?;
        let got: Vec<(u64, f64)> = r
            .first()
            .and_then(|s| s["values"].as_array())
            .map(|vs| {
                vs.iter()
                    .filter_map(|p| {
                        let t = (p[0].as_f64()? * 1000.0).round() as u64;
                        Some((t, p[1].as_str()?.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let all_there = stored.len() >= 3 && stored.iter().all(|s| got.contains(s));
        Ok(all_there.then_some(got))
    })
    .with_context(context)?;
    assert!(range.len() >= 3);

    // Counters with the series' own labels: the `net` collector's byte totals per interface.
    let rx = wait::until(Duration::from_secs(40), "net rx_bytes in Prometheus", || {
        let r = prometheus.query(
            r#"wasmtap_net_rx_bytes_total{project="shop",agent="web-01",collector="net"}"#,
        )?;
        Ok((!r.is_empty()).then_some(r))
    })
    .with_context(context)?;
    assert!(
        rx.iter().all(|s| s["metric"]["interface"].as_str().is_some_and(|i| !i.is_empty())),
        "{rx:?}"
    );

    // The sink's own counters show on /metrics: values sent, none dropped.
    let metrics = http::get(http_addr(&proxy)?, "/metrics", &[])?.body;
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("wasmtap_proxy_remote_write_sent_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .context("sent_total on /metrics")?;
    assert!(sent >= 3.0, "{metrics}");
    assert!(
        metrics
            .lines()
            .filter(|l| l.starts_with("wasmtap_proxy_remote_write_dropped_total{"))
            .all(|l| l.ends_with(" 0.0")),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn remote_write_to_a_dead_endpoint_retries_and_says_so() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let key = new_key("shop")?;
    let extra = format!(
        "{}\n[[remote_write]]\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\nbatch_wait = \"100ms\"\nmin_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n",
        http_section()
    );
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &extra)?;
    let _agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &["load"])?;
    let addr = http_addr(&proxy)?;
    wait::until(Duration::from_secs(20), "retries counted on /metrics", || {
        let m = http::get(addr, "/metrics", &[])?.body;
        let retries = m
            .lines()
            .find(|l| l.starts_with("wasmtap_proxy_remote_write_retries_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        Ok((retries >= 3.0).then_some(()))
    })
    .with_context(|| proxy.log_text())?;
    let log = proxy.log_text();
    assert!(
        log.contains("delivery failed; retrying") && log.contains("remote write http:"),
        "{log}"
    );
    Ok(())
}

/// The value of the `/metrics` line of `family` for `endpoint`.
fn endpoint_counter(metrics: &str, family: &str, endpoint: &str) -> f64 {
    let prefix = format!("{family}{{endpoint=\"{endpoint}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn remote_write_over_https_verifies_the_server_and_delivers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create(&dir.path().join("pki"), "prometheus")?;
    let stranger = Pki::create(&dir.path().join("pki"), "stranger")?;
    let prometheus = Prometheus::start_tls(&dir.path().join("prometheus"), &pki)?;
    let port = prometheus.addr.port();
    let key = new_key("shop")?;
    // One endpoint trusts Prometheus's CA; the other trusts another CA and
    // must refuse the connection.
    let extra = format!(
        "{}\n[[remote_write]]\nurl = \"https://localhost:{port}/api/v1/write\"\ntls_ca_file = \"{}\"\nbatch_wait = \"200ms\"\n\
         [[remote_write]]\nurl = \"https://127.0.0.1:{port}/api/v1/write\"\ntls_ca_file = \"{}\"\nbatch_wait = \"200ms\"\nmin_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n",
        http_section(),
        pki.ca.display(),
        stranger.ca.display()
    );
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &extra)?;
    let _agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &["load"])?;
    let context =
        || format!("proxy log:\n{}\nprometheus log:\n{}", proxy.log_text(), prometheus.log_text());
    let load1 = r#"wasmtap_load_load1{project="shop",agent="web-01"}"#;
    let result = wait::until(Duration::from_secs(30), "load1 in Prometheus over https", || {
        let r = prometheus.query(load1)?;
        Ok((!r.is_empty()).then_some(r))
    })
    .with_context(context)?;
    let value: f64 = result[0]["value"][1].as_str().context("value")?.parse()?;
    let stored = stored_load1(&proxy)?;
    assert!(stored.iter().any(|(_, v)| *v == value), "{value} not among stored {stored:?}");

    let addr = http_addr(&proxy)?;
    let (trusted, untrusted) =
        (format!("https://localhost:{port}"), format!("https://127.0.0.1:{port}"));
    wait::until(Duration::from_secs(20), "the untrusted endpoint retried", || {
        let m = http::get(addr, "/metrics", &[])?.body;
        let retries = endpoint_counter(&m, "wasmtap_proxy_remote_write_retries_total", &untrusted);
        Ok((retries >= 3.0).then_some(()))
    })
    .with_context(context)?;
    let m = http::get(addr, "/metrics", &[])?.body;
    assert!(endpoint_counter(&m, "wasmtap_proxy_remote_write_sent_total", &trusted) >= 1.0, "{m}");
    assert_eq!(endpoint_counter(&m, "wasmtap_proxy_remote_write_sent_total", &untrusted), 0.0);
    let log = proxy.log_text();
    assert!(log.contains("invalid peer certificate"), "{log}");
    Ok(())
}

/// Parses `name{labels} value timestamp` into (value, timestamp).
fn exposition_point(line: &str) -> Option<(f64, u64)> {
    let mut parts = line.rsplitn(3, ' ');
    let time = parts.next()?.parse().ok()?;
    let value = parts.next()?.parse().ok()?;
    Some((value, time))
}

#[test]
fn metrics_shows_the_latest_values_and_the_admin_api_wants_the_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &http_section())?;
    let addr = http_addr(&proxy)?;
    let agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &["load"])?;

    let series = r#"wasmtap_load_load1{project="shop",agent="web-01",collector="load"} "#;
    let (body, line) = wait::until(Duration::from_secs(20), "load1 on /metrics", || {
        let r = http::get(addr, "/metrics", &[])?;
        anyhow::ensure!(r.status == 200, "GET /metrics: {}", r.status);
        let line = r.body.lines().find(|l| l.starts_with(series)).map(str::to_owned);
        Ok(line.map(|l| (r.body.clone(), l)))
    })
    .with_context(|| proxy.log_text())?;
    assert!(body.contains("# TYPE wasmtap_load_load1 gauge\n"), "{body}");
    assert_eq!(body.matches("# TYPE wasmtap_load_load1 ").count(), 1);
    let (value, time) = exposition_point(&line).with_context(|| format!("bad line {line:?}"))?;
    // The exposed point is one the proxy stored, with its sample time.
    let stored = stored_load1(&proxy)?;
    assert!(stored.contains(&(time, value)), "({time}, {value}) not among stored {stored:?}");
    assert_eq!(http::get(addr, "/healthz", &[])?.status, 200);

    // The admin API: no token, a wrong token, a wrong scheme → 401.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-token-0123456789abcdef")],
        vec![("Authorization", &*format!("Basic {TOKEN}"))],
    ] {
        let r = http::get(addr, "/api/agents", &headers)?;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
        assert!(r.json()?["error"].is_string());
        let r = http::request(
            addr,
            "POST",
            "/api/agents/web-01/request",
            &headers,
            br#"{"command":"info"}"#,
        )?;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
    }
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let r = http::get(addr, "/api/agents", &auth)?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()?.is_array());
    // A request to an agent that is not connected.
    let r =
        http::request(addr, "POST", "/api/agents/nobody/request", &auth, br#"{"command":"info"}"#)?;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.json()?["error"].as_str().is_some_and(|e| e.contains("not connected")), "{}", r.body);
    let r = http::request(addr, "POST", "/api/agents/web-01/request", &auth, b"{not json")?;
    assert_eq!(r.status, 400, "{}", r.body);
    let big = vec![b' '; 100 * 1024];
    let r = http::request(addr, "POST", "/api/agents/web-01/request", &auth, &big)?;
    assert_eq!(r.status, 413, "{}", r.body);

    // `ctl` wraps the same API.
    let ctl = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        Ok(Command::new(paths::bin_dir()?.join("wasmtap-proxy"))
            .args(["ctl", "--config"])
            .arg(&proxy.config)
            .args(["--addr", &addr.to_string()])
            .args(args)
            .output()?)
    };
    let out = ctl(&["agents"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(listed.is_array(), "{listed}");
    let out = ctl(&["request", "nobody", "info"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not connected") && stderr.contains("404"), "{stderr}");
    assert!(out.stdout.is_empty());

    // The token never reaches the log.
    assert!(!proxy.log_text().contains(TOKEN));

    // After a kill -9 and a restart, with the agent gone, /metrics is
    // rebuilt from the store: the newest stored value is back.
    agent.stop()?;
    let newest = stored_load1(&proxy)?.into_iter().max_by_key(|(t, _)| *t).context("stored")?;
    proxy.kill()?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &http_section())?;
    let addr = http_addr(&proxy)?;
    let line = wait::until(Duration::from_secs(20), "load1 on /metrics after a restart", || {
        let body = http::get(addr, "/metrics", &[])?.body;
        Ok(body.lines().find(|l| l.starts_with(series)).map(str::to_owned))
    })
    .with_context(|| proxy.log_text())?;
    assert_eq!(exposition_point(&line), Some((newest.1, newest.0)), "{line}");
    Ok(())
}

/// Needs the session registry wired into the server (`Sessions::register`).
#[test]
fn admin_api_lists_the_connected_agent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &http_section())?;
    let addr = http_addr(&proxy)?;
    let _agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &["load"])?;
    let bearer = format!("Bearer {TOKEN}");
    let agents = wait::until(Duration::from_secs(20), "web-01 in /api/agents", || {
        let v = http::get(addr, "/api/agents", &[("Authorization", &bearer)])?.json()?;
        let listed = v.as_array().is_some_and(|a| a.iter().any(|x| x["agent"] == "web-01"));
        Ok(listed.then_some(v))
    })
    .with_context(|| proxy.log_text())?;
    let me = agents.as_array().and_then(|a| a.first()).context("one agent")?;
    assert_eq!(me["project"], "shop");
    assert!(me["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{me}");
    assert!(me["connected_ms"].as_u64().is_some_and(|t| t > 0), "{me}");
    Ok(())
}
