//! Black-box: record every byte between a real agent and a real proxy, and
//! look for what must never cross the wire in clear.

use std::time::Duration;

use anyhow::Context as _;
use wasmtap_protocol::access_key::AccessKey;
use wasmtap_tests::relay::{Relay, contains};
use wasmtap_tests::{Agent, Proxy, new_key, wait};

#[test]
fn neither_the_key_nor_any_collector_text_appears_on_the_wire() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_text = new_key("shop")?;
    let key: AccessKey = key_text.parse()?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key_text)])?;
    let relay = Relay::start(proxy.addr)?;
    let collectors = ["load", "testing/smuggler"];
    let _agent = Agent::start(
        &dir.path().join("agent"),
        "web-01-secret-host",
        relay.addr.port(),
        &key_text,
        &collectors,
    )?;

    let rows = wait::until(Duration::from_secs(20), "three rounds of samples", || {
        let rows = proxy.query(&["--collector", "load"])?;
        Ok((rows.len() >= 15).then_some(rows))
    })
    .with_context(|| proxy.log_text())?;
    let captured = relay.captured();
    assert!(captured.len() > 500, "capture too small to mean anything: {} bytes", captured.len());

    let body = key_text.rsplit('_').next().context("key body")?;
    let mut forbidden: Vec<(&str, Vec<u8>)> = vec![
        ("the access key", key_text.as_bytes().to_vec()),
        ("the key's encoded secret", body.as_bytes().to_vec()),
        ("the raw secret", key.secret().expose().to_vec()),
        ("the secret's first half", key.secret().expose()[..16].to_vec()),
        ("the agent name", b"web-01-secret-host".to_vec()),
        ("a field name", b"load15".to_vec()),
        ("a collector name", b"load".to_vec()),
    ];
    // A stored value, as the bytes of its f64: numbers are encrypted too.
    let value = rows
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .find(|v| *v > 1.0)
        .context("a value above 1")?;
    forbidden.push(("a numeric value", value.to_le_bytes().to_vec()));
    // The smuggler emits this text and tries to push text through the numeric path.
    let smuggled = wait::until(Duration::from_secs(10), "smuggler samples", || {
        let rows = proxy.query(&["--collector", "smuggler"])?;
        Ok((!rows.is_empty()).then_some(rows))
    })?;
    assert!(
        smuggled.iter().any(|r| r["value"] == "smuggled-secret-XYZ"),
        "the smuggler's text field is stored (sealed path): {smuggled:?}"
    );
    forbidden.push(("collector text", b"smuggled-secret-XYZ".to_vec()));
    let captured = relay.captured();
    for (what, bytes) in &forbidden {
        assert!(!contains(&captured, bytes), "{what} appears in clear on the wire");
    }
    // The only clear text is the project name in the hello (documented).
    assert!(contains(&captured, b"shop"));
    Ok(())
}
