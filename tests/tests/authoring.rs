//! The author's tools (`wasmtap plugin new|build|check|run|keygen|sign`),
//! with real compiled collectors in Rust, Python and JavaScript, and the
//! agent's signature policy.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context as _, bail};
use wasmtap_tests::{Agent, Proxy, component, new_key, paths, wait};

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
fn the_agent_runs_the_authoring_binary_and_says_how_to_get_it_when_missing() -> anyhow::Result<()> {
    // Beside the agent (target/debug), `wasmtap plugin` runs `wasmtap-plugin`.
    let out = wasmtap(&["plugin", "--help"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Usage: wasmtap plugin"), "{}", text(&out.stdout));
    // An agent installed alone, with nothing on PATH: a clear error naming
    // the missing binary and how to install it, and a failing exit status.
    let dir = tempfile::tempdir()?;
    let alone = dir.path().join("wasmtap");
    std::fs::copy(paths::bin_dir()?.join("wasmtap"), &alone)?;
    let out = Command::new(&alone)
        .args(["plugin", "check", "x.wasm"])
        .env("PATH", dir.path().join("empty"))
        .env("RUST_BACKTRACE", "0")
        .output()?;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("wasmtap-plugin") && err.contains("cargo install --path authoring"),
        "{err}"
    );
    Ok(())
}

#[test]
fn the_agent_does_not_link_the_component_toolchain() -> anyhow::Result<()> {
    // What the agent binary links: its normal dependencies (not build, dev
    // or proc-macro ones, which run only at compile time).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "wasmtap-host", "-e", "normal,no-proc-macro", "--prefix", "none"])
        .current_dir(paths::root())
        .output()
        .context("running cargo tree")?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    assert!(tree.contains("wasmtime "), "the tree is the agent's:\n{tree}");
    for crate_name in ["wac-graph", "wit-component", "wasmtap-authoring"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{crate_name} "))),
            "the agent links {crate_name}"
        );
    }
    Ok(())
}

#[test]
fn check_prints_fields_and_grants_and_refuses_garbage() -> anyhow::Result<()> {
    let (wasm, _) = paths::plugin("load")?;
    let out = wasmtap(&["plugin", "check", &wasm.to_string_lossy()])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "valid wasmtap:collector@0.2.1 component",
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

    // A collector of the 0.1.0 world says so; one of a world version this
    // agent does not know is refused, naming it and the versions it loads.
    for (version, ok) in [("0.1.0", true), ("0.3.0", false)] {
        let wasm = dir.path().join(format!("v{version}.wasm"));
        std::fs::write(&wasm, component::from_wat_as("two-memories", version)?)?;
        std::fs::write(wasm.with_extension("toml"), "memory = \"64MiB\"\n")?;
        let out = wasmtap(&["plugin", "check", &wasm.to_string_lossy()])?;
        assert_eq!(out.status.success(), ok, "{version}: {}", text(&out.stderr));
        let said = if ok { text(&out.stdout) } else { text(&out.stderr) };
        let needle = if ok {
            format!("valid wasmtap:collector@{version} component")
        } else {
            "targets wasmtap:collector@0.3.0; this agent loads versions 0.2.1, 0.2.0 and 0.1.0"
                .to_owned()
        };
        assert!(said.contains(&needle), "{version}: {said}");
    }
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
    // Every batch from a second past the refusals on has arrived.
    wait::for_sample_after(&proxy, "load", wait::now_ms() + 1_000, Duration::from_secs(20))?;
    assert!(proxy.query(&["--collector", "cpu"])?.is_empty());
    assert!(proxy.query(&["--collector", "memory"])?.is_empty());
    Ok(())
}

// ---- Projects in Rust, Python and JavaScript: `plugin new` to samples ----

fn wasmtap_env(args: &[&str], env: &[(&str, PathBuf)]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(paths::bin_dir()?.join("wasmtap"));
    cmd.args(args).env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().context("running wasmtap")
}

/// What `plugin build` runs, as `cargo xtask examples` (and `test`) installs it.
fn authoring_tools() -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let root = paths::root();
    let tools = [
        ("WASMTAP_COMPONENTIZE_PY", root.join("target/authoring-tools/python/bin/componentize-py")),
        ("WASMTAP_JCO", root.join("target/authoring-tools/js/node_modules/.bin/jco")),
        ("WASMTAP_DENY_SOCKETS", root.join("target/plugins/support/deny-sockets.wasm")),
    ];
    for (_, path) in &tools {
        if !path.is_file() {
            bail!(
                "{} is missing: run `cargo xtask examples` (or `cargo xtask test`), which installs the pinned authoring tools",
                path.display()
            );
        }
    }
    Ok(tools.into())
}

fn uptime() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/uptime")?;
    Ok(text.split_whitespace().next().context("empty /proc/uptime")?.parse()?)
}

/// What `df` calls Avail on the filesystem holding `/`, and its size, in bytes.
fn root_available() -> anyhow::Result<(f64, f64)> {
    let s = rustix::fs::statvfs("/")?;
    Ok(((s.f_bavail * s.f_frsize) as f64, (s.f_blocks * s.f_frsize) as f64))
}

/// The value a `plugin run --once` report shows for `field`.
fn reported(report: &str, field: &str) -> anyhow::Result<f64> {
    let line = report.lines().find_map(|l| l.trim().strip_prefix(field));
    let value = line.with_context(|| format!("no {field} value in:\n{report}"))?;
    Ok(value.trim().parse()?)
}

/// `plugin new`, `plugin build`, `plugin check` and `plugin run --once` of
/// the template of `lang`, which reports `uptime_seconds` from /proc/uptime and
/// `root_available_bytes` through the agent's `filesystem` import.
fn new_build_check_run(lang: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let name = format!("my-{lang}");
    let parent = dir.path().to_string_lossy().into_owned();
    let out = wasmtap(&["plugin", "new", &name, "--lang", lang, "--dir", &parent])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let project = dir.path().join(&name);
    for file in ["README.md", "manifest.toml"] {
        assert!(project.join(file).is_file(), "{file} missing from the {lang} project");
    }
    let again = wasmtap(&["plugin", "new", &name, "--lang", lang, "--dir", &parent])?;
    assert!(!again.status.success(), "an existing project must not be overwritten");

    let mut env = authoring_tools()?;
    // Rust template builds share a target dir, so wit-bindgen compiles once.
    env.push(("CARGO_TARGET_DIR", paths::root().join("target/authoring-tools/rust-target")));
    let out = wasmtap_env(&["plugin", "build", &project.to_string_lossy()], &env)?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let wasm = PathBuf::from(stdout.lines().last().context("no output")?);
    assert_eq!(wasm, project.join(format!("target/wasmtap/{name}.wasm")));
    assert!(wasm.is_file() && wasm.with_extension("toml").is_file());
    let wasm = wasm.to_string_lossy().into_owned();

    let out = wasmtap(&["plugin", "check", &wasm])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "valid wasmtap:collector@0.2.1 component",
        "uptime_seconds",
        "root_available_bytes",
        "gauge",
        "read: /proc",
        "usage: /",
    ] {
        assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
    }

    let before = uptime()?;
    let out = wasmtap(&["plugin", "run", &wasm, "--once"])?;
    let after = uptime()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains(&format!("{name} {{}}")) && report.contains("call 1:"), "{report}");
    let value = reported(&report, "uptime_seconds")?;
    assert!(value >= before - 0.01 && value <= after + 0.01, "{value} not in {before}..{after}");
    // As `df` sees it, give or take what others wrote meanwhile (1 % of the disk).
    let (available, size) = root_available()?;
    let value = reported(&report, "root_available_bytes")?;
    assert!((value - available).abs() <= size / 100.0, "{value} against df's {available}");
    Ok(())
}

#[test]
fn rust_project_from_new_to_samples() -> anyhow::Result<()> {
    new_build_check_run("rust")
}

#[test]
fn python_project_from_new_to_samples() -> anyhow::Result<()> {
    new_build_check_run("python")
}

#[test]
fn js_project_from_new_to_samples() -> anyhow::Result<()> {
    new_build_check_run("js")
}

#[test]
fn build_names_a_missing_tool_and_how_to_install_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let parent = dir.path().to_string_lossy().into_owned();
    for (lang, var, needle) in [
        ("python", "WASMTAP_COMPONENTIZE_PY", "pip install componentize-py=="),
        ("js", "WASMTAP_JCO", "npm install"),
    ] {
        let out = wasmtap(&["plugin", "new", lang, "--lang", lang, "--dir", &parent])?;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let project = dir.path().join(lang).to_string_lossy().into_owned();
        let out =
            wasmtap_env(&["plugin", "build", &project], &[(var, "/nonexistent/tool".into())])?;
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("is not available") && err.contains(needle), "{err}");
    }
    let out = wasmtap(&["plugin", "build", &parent])?;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a collector project"), "{}", text(&out.stderr));
    Ok(())
}

/// The Python and JavaScript examples under the real agent: their samples
/// reach the proxy's store. They carry copies of the 0.2.0 WIT, so they are
/// also the check that collectors built against 0.2.0 run on an agent of
/// 0.2.1.
#[test]
fn python_and_js_examples_reach_the_store() -> anyhow::Result<()> {
    for name in ["python-vmstat", "js-meminfo"] {
        let (wasm, _) = paths::plugin(&format!("examples/{name}"))
            .context("the examples are built by `cargo xtask examples` (or `cargo xtask test`)")?;
        let out = wasmtap(&["plugin", "check", &wasm.to_string_lossy()])?;
        let report = text(&out.stdout);
        assert!(report.contains("valid wasmtap:collector@0.2.0 component"), "{name}: {report}");
    }
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent = Agent::start(
        &dir.path().join("agent"),
        "web-01",
        proxy.addr.port(),
        &key,
        &["examples/python-vmstat", "examples/js-meminfo"],
    )?;
    // Rates need two readings a second apart; compiling each example takes a while.
    let rows = wait::until(Duration::from_secs(180), "samples of both examples", || {
        let py = proxy.query(&["--collector", "python-vmstat"])?;
        let js = proxy.query(&["--collector", "js-meminfo"])?;
        let rated = py.iter().any(|r| r["field"] == "pgfault_rate");
        Ok((rated && !js.is_empty()).then_some((py, js)))
    })
    .with_context(|| agent.log_text())?;
    let (py, js) = rows;
    let value = |rows: &[serde_json::Value], field: &str| {
        rows.iter().filter(|r| r["field"] == field).filter_map(|r| r["value"].as_f64()).next_back()
    };
    assert!(value(&py, "pgfault").is_some_and(|v| v > 0.0), "{py:?}");
    assert!(value(&py, "pgfault_rate").is_some_and(|v| v >= 0.0 && v.is_finite()), "{py:?}");
    let total = value(&js, "total").context("js-meminfo total")?;
    let used = value(&js, "used").context("js-meminfo used")?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .context("MemTotal")?
        .parse()?;
    assert_eq!(total, kib * 1024.0, "total RAM as /proc/meminfo says");
    assert!(used > 0.0 && used <= total, "{js:?}");
    for r in py.iter().chain(&js) {
        assert_eq!(r["agent"], "web-01");
    }
    Ok(())
}
