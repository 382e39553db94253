//! The author's tools (`wasmtap plugin check|run|keygen|sign`) and the
//! agent's signature policy, with real compiled collectors.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::{Agent, Proxy, new_key, paths, wait};

fn wasmtap(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(paths::bin_dir()?.join("wasmtap"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .context("running wasmtap")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_prints_fields_and_grants_and_refuses_garbage() -> anyhow::Result<()> {
    let (wasm, _) = paths::plugin("load")?;
    let out = wasmtap(&["plugin", "check", &wasm.to_string_lossy()])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "valid wasmtap:collector@0.1.0 component",
        "load1",
        "gauge",
        "read: /proc",
        "signature  none",
    ] {
        assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
    }
    let dir = tempfile::tempdir()?;
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm")?;
    let out = wasmtap(&["plugin", "check", &junk.to_string_lossy()])?;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a valid component"), "{}", text(&out.stderr));
    Ok(())
}

#[test]
fn run_once_prints_samples_as_a_table_and_as_json() -> anyhow::Result<()> {
    let (wasm, _) = paths::plugin("load")?;
    let out = wasmtap(&["plugin", "run", &wasm.to_string_lossy(), "--once"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("load1") && report.contains("call 1:") && report.contains("peak memory"),
        "{report}"
    );

    let out = wasmtap(&["plugin", "run", &wasm.to_string_lossy(), "--json"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|r| r["collector"] == "load" && r["value"].is_number()));

    // A misbehaving collector fails with its reason, under the same sandbox.
    let (spin, _) = paths::plugin("testing/spin")?;
    let out = wasmtap(&["plugin", "run", &spin.to_string_lossy()])?;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("timed out"), "{}", text(&out.stderr));
    Ok(())
}

#[test]
fn with_trusted_keys_only_validly_signed_collectors_load() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("publisher.key");
    let out = wasmtap(&["plugin", "keygen", "--out", &key_file.to_string_lossy()])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public = text(&out.stdout).trim().to_owned();
    assert!(public.starts_with("ed25519:"));

    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent_dir = dir.path().join("agent");
    // Install the collectors first, signing only `load`, and forge `memory`'s
    // signature by signing other bytes.
    let plugins = agent_dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for c in ["load", "cpu", "memory"] {
        let (wasm, manifest) = paths::plugin(c)?;
        std::fs::copy(&wasm, plugins.join(format!("{c}.wasm")))?;
        std::fs::copy(&manifest, plugins.join(format!("{c}.toml")))?;
    }
    let sign =
        |file: &str| wasmtap(&["plugin", "sign", file, "--key", &key_file.to_string_lossy()]);
    assert!(sign(&plugins.join("load.wasm").to_string_lossy())?.status.success());
    let (cpu, _) = paths::plugin("cpu")?;
    let other = dir.path().join("cpu-copy.wasm");
    std::fs::copy(cpu, &other)?;
    assert!(sign(&other.to_string_lossy())?.status.success());
    std::fs::copy(dir.path().join("cpu-copy.wasm.sig"), plugins.join("memory.wasm.sig"))?;

    let agent = Agent::start_with(
        &agent_dir,
        "web-01",
        proxy.addr.port(),
        &key,
        &[],
        &format!("trusted_keys = [\"{public}\"]"),
    )?;
    wait::until(Duration::from_secs(20), "signed load samples", || {
        Ok((!proxy.query(&["--collector", "load"])?.is_empty()).then_some(()))
    })
    .with_context(|| agent.log_text())?;
    let log = agent.log_text();
    assert!(log.contains("signature verified"), "{log}");
    assert!(log.contains("cpu.wasm.sig") && log.contains("no signature file"), "{log}");
    assert!(log.contains("signature does not match the collector"), "{log}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(proxy.query(&["--collector", "cpu"])?.is_empty());
    assert!(proxy.query(&["--collector", "memory"])?.is_empty());
    Ok(())
}
