//! The proxy's `/metrics` with every standard collector running in a real
//! agent: `promtool check metrics` (Debian's prometheus package) finds no
//! problem, every series is explained by its collector's description, and
//! a real Prometheus scraping it in OpenMetrics gets the families with
//! their types and units.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::prometheus::promtool_problems;
use wasmtap_tests::{Agent, Prometheus, Proxy, http, new_key, wait};

const STANDARD: [&str; 13] = [
    "cpu", "disk", "entropy", "filefd", "hwmon", "load", "memory", "net", "pressure", "process",
    "sockets", "uptime", "vmstat",
];

/// The collectors whose samples must show on this machine: every standard
/// one but `hwmon` without sensors and `pressure` without PSI, and the
/// agent's own.
fn expected() -> Vec<&'static str> {
    let hwmon = std::fs::read_dir("/sys/class/hwmon").is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("hwmon")))
    });
    let psi = Path::new("/proc/pressure/cpu").exists();
    STANDARD
        .iter()
        .copied()
        .filter(|c| (*c != "hwmon" || hwmon) && (*c != "pressure" || psi))
        .chain(["agent"])
        .collect()
}

fn metrics(addr: SocketAddr, accept: Option<&str>) -> anyhow::Result<http::Response> {
    let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
    let r = http::get(addr, "/metrics", &headers)?;
    anyhow::ensure!(r.status == 200, "GET /metrics: {}", r.status);
    Ok(r)
}

#[test]
fn every_standard_collector_passes_promtool_and_prometheus_scrapes_openmetrics()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let http_section = "[http]\nlisten = \"127.0.0.1:0\"\n";
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], http_section)?;
    let addr = proxy.http.context("no [http] address")?;
    let agent =
        Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &STANDARD)?;
    let expected = expected();
    let body =
        wait::until(Duration::from_secs(60), "every collector on /metrics, described", || {
            let body = metrics(addr, None)?.body;
            let all = expected.iter().all(|c| body.contains(&format!("collector=\"{c}\"")));
            let described = !body.contains("(not described)");
            Ok((all && described).then_some(body))
        })
        .with_context(|| {
            format!("agent log:\n{}\nproxy log:\n{}", agent.log_text(), proxy.log_text())
        })?;

    // docs/collectors.md lists every family a collector shows.
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/collectors.md"),
    )?;
    let undocumented: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !name.starts_with("wasmtap_proxy_"))
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(undocumented.is_empty(), "not in docs/collectors.md: {undocumented:?}");

    let problems = promtool_problems(&body)?;
    assert!(problems.is_empty(), "promtool check metrics:\n{}\n\n{body}", problems.join("\n"));
    // Counters end in `_total`, with their unit before it.
    for family in ["wasmtap_cpu_user_seconds_total", "wasmtap_disk_read_bytes_total"] {
        assert!(body.contains(&format!("# TYPE {family} counter\n")), "{family} in\n{body}");
    }
    assert!(body.contains("# TYPE wasmtap_memory_total_bytes gauge\n"), "{body}");

    // /metrics/proxy: the proxy's own families alone, as promtool likes them.
    let own = http::get(addr, "/metrics/proxy", &[])?;
    anyhow::ensure!(own.status == 200, "GET /metrics/proxy: {}", own.status);
    let families: Vec<&str> = own
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for family in ["wasmtap_proxy_unauthenticated_connections", "wasmtap_proxy_latest_series"] {
        assert!(families.contains(&family), "{family} not in {families:?}");
    }
    assert!(families.iter().all(|f| f.starts_with("wasmtap_proxy_")), "{families:?}");
    assert!(!own.body.contains("collector=\""), "{}", own.body);
    let problems = promtool_problems(&own.body)?;
    assert!(problems.is_empty(), "promtool check metrics:\n{}", problems.join("\n"));

    let om = metrics(addr, Some("application/openmetrics-text; version=1.0.0"))?;
    assert!(om.body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(om.body.contains(
        "# TYPE wasmtap_cpu_user_seconds counter\n# UNIT wasmtap_cpu_user_seconds seconds\n"
    ));

    // A real Prometheus scrapes it (asking for OpenMetrics first) and keeps
    // each family's type and unit.
    let prometheus = Prometheus::start_scraping(&dir.path().join("prometheus"), addr)?;
    let context = || format!("prometheus log:\n{}", prometheus.log_text());
    wait::until(Duration::from_secs(30), "a scrape with samples", || {
        let up = prometheus.query("up{job=\"wasmtap\"} == 1")?;
        let user = prometheus.query("wasmtap_cpu_user_seconds_total{job=\"wasmtap\"}")?;
        Ok((!up.is_empty() && !user.is_empty()).then_some(()))
    })
    .with_context(context)?;
    let meta = wait::until(Duration::from_secs(15), "metadata of wasmtap_cpu_user_seconds", || {
        let m = prometheus.metadata("wasmtap_cpu_user_seconds")?;
        Ok((!m.is_empty()).then_some(m))
    })
    .with_context(context)?;
    assert_eq!(meta[0]["type"], "counter", "{meta:?}");
    assert_eq!(meta[0]["unit"], "seconds", "{meta:?}");
    Ok(())
}

/// `query --rate` turns the stored cpu counters into shares of a CPU: each
/// core's states add up to one second per second, within the kernel's
/// rounding to ticks.
#[test]
fn query_rate_gives_per_second_rates_of_stored_counters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent_dir = dir.path().join("agent");
    let (config, plugins) =
        Agent::prepare(&agent_dir, "web-01", proxy.addr.port(), &key, &["cpu"], "")?;
    std::fs::write(plugins.join("cpu.toml"), "interval = \"1s\"\n[grants]\nread = [\"/proc\"]\n")?;
    let agent = Agent::start_with_config(&agent_dir, &config, plugins)?;
    let rates = wait::until(Duration::from_secs(20), "rates of three collects", || {
        let rows = proxy.query(&["--rate", "--collector", "cpu", "--label", "cpu=0"])?;
        let times: std::collections::BTreeSet<u64> =
            rows.iter().filter_map(|r| r["time"].as_u64()).collect();
        Ok((times.len() >= 2).then_some(rows))
    })
    .with_context(|| agent.log_text())?;
    let mut per_time: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    for r in &rates {
        let field = r["field"].as_str().context("field")?;
        if field.ends_with("_seconds_per_second") {
            assert_eq!(r["kind"], "gauge", "{r}");
            *per_time.entry(r["time"].as_u64().context("time")?).or_default() +=
                r["value"].as_f64().context("value")?;
        }
    }
    assert!(per_time.len() >= 2, "{rates:?}");
    for (time, busy) in per_time {
        // Ticks of 10 ms over a second, and a collect's own jitter.
        assert!((0.8..=1.2).contains(&busy), "at {time}: {busy} s/s");
    }
    // Without --rate the same rows are counters.
    let raw = proxy.query(&["--collector", "cpu", "--field", "user_seconds"])?;
    assert!(!raw.is_empty() && raw.iter().all(|r| r["kind"] == "counter"));
    Ok(())
}
