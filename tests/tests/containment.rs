//! Hostile and broken collectors are contained: each fails only its own
//! ticks, is restarted with backoff and quarantined, while `load` keeps
//! reporting on time.

use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::{Agent, Proxy, new_key, wait};

const MISBEHAVING: [&str; 8] = [
    "testing/spin",
    "testing/membomb",
    "testing/recursion",
    "testing/panic",
    "testing/flood",
    "testing/smuggler",
    "testing/slow-init",
    "testing/schema-shift",
];

#[test]
fn misbehaving_collectors_are_contained_while_load_keeps_its_schedule() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let mut collectors = vec!["load"];
    collectors.extend(MISBEHAVING);
    let agent = Agent::start_with(
        &dir.path().join("agent"),
        "web-01",
        proxy.addr.port(),
        &key,
        &collectors,
        "quarantine_after = 3",
    )?;

    let quarantined = ["spin", "membomb", "recursion", "panic", "flood"];
    wait::until(Duration::from_secs(40), "every failing collector quarantined", || {
        let log = agent.log_text();
        let n = log.lines().filter(|l| l.contains("collector quarantined")).count();
        Ok((n >= quarantined.len()).then_some(()))
    })
    .with_context(|| agent.log_text())?;
    let log = agent.log_text();
    let line_of = |name: &str, needle: &str| {
        log.lines().any(|l| l.contains(&format!("collector={name}")) && l.contains(needle))
    };
    assert!(line_of("spin", "timed out"), "spin: {log}");
    assert!(line_of("membomb", "trapped"), "membomb: {log}");
    assert!(line_of("recursion", "trapped"), "recursion: {log}");
    assert!(line_of("panic", "trapped"), "panic: {log}");
    assert!(line_of("flood", "the limit is"), "flood: {log}");
    for name in quarantined {
        assert!(line_of(name, "collector quarantined"), "{name} not quarantined: {log}");
    }
    assert!(log.contains("init failed"), "slow-init must fail its init deadline: {log}");

    // `load` kept its 1 s schedule throughout.
    let mut times: Vec<u64> = wait::until(Duration::from_secs(20), "ten load samples", || {
        let times: Vec<u64> = proxy
            .query(&["--collector", "load"])?
            .iter()
            .filter(|r| r["field"] == "load1")
            .filter_map(|r| r["time"].as_u64())
            .collect();
        Ok((times.len() >= 10).then_some(times))
    })?;
    times.sort_unstable();
    let worst = times.windows(2).map(|w| (w[1] - w[0]).abs_diff(1_000)).max().unwrap_or(0);
    assert!(worst <= 20, "a load tick was {worst} ms off schedule: {times:?}");

    // The smuggler's values: only declared fields, each with its declared type.
    let rows = proxy.query(&["--collector", "smuggler"])?;
    assert!(!rows.is_empty(), "smuggler's legitimate values are stored");
    for r in &rows {
        match r["kind"].as_str() {
            Some("text") => assert!(r["value"].is_string(), "{r}"),
            Some("gauge" | "counter") => assert!(r["value"].is_number(), "{r}"),
            other => panic!("unexpected kind {other:?} in {r}"),
        }
    }
    assert!(line_of("smuggler", "dropped values that do not match the declared fields"), "{log}");

    // schema-shift's schema was read once (its first describe); every later
    // describe returns other fields, and none of them is ever stored.
    let rows = proxy.query(&["--collector", "schema-shift"])?;
    assert!(!rows.is_empty(), "schema-shift reports under its first schema");
    for r in &rows {
        match r["field"].as_str() {
            Some("describe_calls") => {
                assert_eq!(r["value"], 1.0, "describe ran more than once: {r}")
            }
            Some("note") => assert!(r["value"].is_string(), "{r}"),
            other => panic!("field {other:?} from a later schema was stored: {r}"),
        }
    }
    Ok(())
}
