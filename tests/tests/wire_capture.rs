//! Black-box: record every byte between a real agent and a real proxy, and
//! look for what must never cross the wire in clear, numbers included: the
//! plaintext the compact codec makes of a known run of values (the ticker's
//! steady count) must never appear.

use std::time::Duration;

use anyhow::Context as _;
use wasmtap_protocol::access_key::AccessKey;
use wasmtap_protocol::compact::Encoder;
use wasmtap_protocol::frame::{Frame, FrameKind};
use wasmtap_protocol::message::{Batch, Sample, Value};
use wasmtap_protocol::simple::NumericPayload;
use wasmtap_tests::relay::{Relay, contains};
use wasmtap_tests::{Agent, Proxy, new_key, wait};

/// The bytes of `payload` as the simple path would carry them in clear:
/// its numbers as LEB128 words.
fn plaintext(payload: &NumericPayload) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = payload.reader();
    while !r.is_done() {
        let mut v = r.u64().map_err(|e| anyhow::anyhow!("{e}"))?;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    Ok(out)
}

/// Batches of ten ticker samples counting on from `first`, one per 100 ms.
fn ticker_batch(seq: u64, first: u64) -> Batch {
    Batch {
        seq,
        samples: (first..first + 10)
            .map(|n| Sample {
                collector: "ticker".into(),
                time_ms: 1_700_000_000_000 + n * 100,
                labels: vec![].into(),
                values: vec![("n".into(), Value::Counter(n as f64))],
            })
            .collect(),
    }
}

/// The numbers of a steady ticker batch (after the first), in clear, as
/// the real encoder makes them: eight of them, a run no ciphertext holds
/// by chance.
fn steady_ticker_plaintext() -> anyhow::Result<Vec<u8>> {
    let mut enc = Encoder::new();
    enc.encode(&ticker_batch(1, 1));
    let (_, numbers) = enc.encode(&ticker_batch(2, 11));
    let bytes = plaintext(numbers.first().context("numbers")?)?;
    anyhow::ensure!(bytes.len() == 10, "one byte per steady value: {bytes:?}");
    Ok(bytes[..8].to_vec())
}

/// The check can fail: were the simple path sent in clear, the compact
/// plaintext of a steady run would be found, while looking for the values
/// as 8-byte floats (which the compact codec never sends) would not.
#[test]
fn the_plaintext_check_finds_numbers_sent_in_clear() -> anyhow::Result<()> {
    let needle = steady_ticker_plaintext()?;
    let mut enc = Encoder::new();
    let mut clear = Vec::new();
    for (seq, first) in [(1, 1), (2, 11), (3, 21)] {
        let (_, numbers) = enc.encode(&ticker_batch(seq, first));
        for payload in &numbers {
            let frame = Frame { kind: FrameKind::Simple, payload: plaintext(payload)? };
            clear.extend_from_slice(&frame.to_bytes());
        }
    }
    assert!(contains(&clear, &needle), "the compact plaintext is found");
    assert!(!contains(&clear, &15.0f64.to_le_bytes()), "a float search misses it");
    Ok(())
}

#[test]
fn neither_the_key_nor_any_collector_text_nor_numbers_appear_on_the_wire() -> anyhow::Result<()> {
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
    // A second agent with the ticker alone, so that its batches are steady
    // runs: the run below would be on the wire many times over if numbers
    // went in clear.
    let _ticker = Agent::start(
        &dir.path().join("ticker"),
        "edge-2",
        relay.addr.port(),
        &key_text,
        &["testing/ticker"],
    )?;
    wait::until(Duration::from_secs(40), "four seconds of ticks", || {
        let rows = proxy.query(&["--collector", "ticker"])?;
        Ok((rows.len() >= 40).then_some(()))
    })
    .with_context(|| proxy.log_text())?;
    // The smuggler emits this text and tries to push text through the numeric path.
    let smuggled = wait::until(Duration::from_secs(10), "smuggler samples", || {
        let rows = proxy.query(&["--collector", "smuggler"])?;
        Ok((!rows.is_empty()).then_some(rows))
    })?;
    assert!(
        smuggled.iter().any(|r| r["value"] == "smuggled-secret-XYZ"),
        "the smuggler's text field is stored (sealed path): {smuggled:?}"
    );
    let captured = relay.captured();
    assert!(captured.len() > 500, "capture too small to mean anything: {} bytes", captured.len());

    // The body is base64url, which may itself hold `_`.
    let body = key_text.strip_prefix("wtap1_shop_").context("key body")?;
    let forbidden: Vec<(&str, Vec<u8>)> = vec![
        ("the access key", key_text.as_bytes().to_vec()),
        ("the key's encoded secret", body.as_bytes().to_vec()),
        ("the raw secret", key.secret().expose().to_vec()),
        ("the secret's first half", key.secret().expose()[..16].to_vec()),
        ("the agent name", b"web-01-secret-host".to_vec()),
        ("a field name", b"load15".to_vec()),
        ("a collector name", b"load".to_vec()),
        ("collector text", b"smuggled-secret-XYZ".to_vec()),
        ("the compact plaintext of a steady run of numbers", steady_ticker_plaintext()?),
    ];
    for (what, bytes) in &forbidden {
        assert!(!contains(&captured, bytes), "{what} appears in clear on the wire");
    }
    // The only clear text is the project name in the hello (documented).
    assert!(contains(&captured, b"shop"));
    Ok(())
}
