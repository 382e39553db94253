//! The plugins directory is followed while the agent runs: collectors added,
//! replaced (validated first) and removed take effect without a restart; a
//! restart loads them from the compile cache.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::wait::now_ms;
use wasmtap_tests::{Agent, Proxy, ctl, new_key, paths, wait};

/// Copies like an operator's deploy script should: write aside, then rename.
fn install(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let tmp = dest.with_extension("partial");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

fn latest_time(proxy: &Proxy) -> anyhow::Result<u64> {
    Ok(proxy
        .query(&["--collector", "load"])?
        .iter()
        .filter_map(|r| r["time"].as_u64())
        .max()
        .unwrap_or(0))
}

#[test]
fn a_collector_dropped_into_the_running_agent_reports_within_two_seconds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent = Agent::start(&dir.path().join("agent"), "web-01", proxy.addr.port(), &key, &[])?;
    wait::until(Duration::from_secs(20), "the agent's session", || {
        Ok(agent.log_text().contains("session established").then_some(()))
    })?;

    let (wasm, manifest) = paths::plugin("load")?;
    install(&manifest, &agent.plugins.join("load.toml"))?;
    let dropped_at = now_ms();
    install(&wasm, &agent.plugins.join("load.wasm"))?;

    let first = wait::until(Duration::from_secs(10), "the first load sample", || {
        let t = latest_time(&proxy)?;
        Ok((t > 0).then_some(t))
    })
    .with_context(|| agent.log_text())?;
    assert!(first >= dropped_at, "sample older than the file: {first} < {dropped_at}");
    assert!(first - dropped_at <= 2_000, "first sample {} ms after the drop", first - dropped_at);
    Ok(())
}

#[test]
fn a_broken_replacement_leaves_the_old_version_running_and_removal_stops_it() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent = Agent::start(
        &dir.path().join("agent"),
        "web-01",
        proxy.addr.port(),
        &key,
        &["load", "testing/ticker"],
    )?;
    wait::until(Duration::from_secs(20), "load samples", || {
        Ok((latest_time(&proxy)? > 0).then_some(()))
    })?;

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm this is not a component")?;
    install(&broken, &agent.plugins.join("load.wasm"))?;
    wait::until(Duration::from_secs(20), "the refusal in the log", || {
        Ok(agent.log_text().contains("broken upgrade refused").then_some(()))
    })?;
    let refused_at = now_ms();
    wait::until(Duration::from_secs(20), "samples from the old version after the refusal", || {
        Ok((latest_time(&proxy)? > refused_at + 500).then_some(()))
    })
    .with_context(|| agent.log_text())?;

    std::fs::remove_file(agent.plugins.join("load.wasm"))?;
    wait::until(Duration::from_secs(20), "the removal in the log", || {
        Ok(agent.log_text().contains("collector removed").then_some(()))
    })?;
    let removed_at = now_ms();
    // The ticker goes on: once its samples from a second later are stored,
    // every batch from before has arrived, and none may hold a load sample
    // taken after the removal.
    wait::for_sample_after(&proxy, "ticker", removed_at + 1_000, Duration::from_secs(20))?;
    let last = latest_time(&proxy)?;
    assert!(
        last <= removed_at,
        "a sample {} ms after the collector was removed",
        last - removed_at
    );
    Ok(())
}

#[test]
fn a_restarted_agent_loads_collectors_from_the_compile_cache() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent_dir = dir.path().join("agent");
    let agent = Agent::start(&agent_dir, "web-01", proxy.addr.port(), &key, &["load"])?;
    wait::until(Duration::from_secs(20), "load samples", || {
        Ok((latest_time(&proxy)? > 0).then_some(()))
    })?;
    assert!(agent.log_text().contains("from_cache=false"), "{}", agent.log_text());
    // The agent compiled it with `wasmtap-compile`, in a child process.
    let cache = agent_dir.join("data/cache");
    assert_eq!(std::fs::read_dir(&cache)?.count(), 1, "one entry in {}", cache.display());
    agent.stop()?;

    let config = agent_dir.join("agent.toml");
    let agent = Agent::start_with_config(&agent_dir, &config, agent_dir.join("plugins"))?;
    wait::until(Duration::from_secs(20), "the reload", || {
        Ok(agent.log_text().contains("collector loaded").then_some(()))
    })?;
    assert!(agent.log_text().contains("from_cache=true"), "{}", agent.log_text());
    Ok(())
}

#[test]
fn an_agent_without_its_compiler_says_so_and_loads_once_it_is_installed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy =
        Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key)], &ctl::admin_section())?;
    // The agent installed alone, without `wasmtap-compile` beside it.
    let installed = dir.path().join("bin");
    std::fs::create_dir_all(&installed)?;
    let exe = installed.join("wasmtap");
    std::fs::copy(paths::bin_dir()?.join("wasmtap"), &exe)?;
    let agent_dir = dir.path().join("agent");
    let (config, plugins) = Agent::prepare(&agent_dir, "web-01", proxy.addr.port(), &key, &[], "")?;
    let agent = Agent::start_exe(&exe, &agent_dir, &config, plugins, &[])?;
    wait::until(Duration::from_secs(20), "the agent's session", || {
        Ok(agent.log_text().contains("session established").then_some(()))
    })?;
    let (wasm, manifest) = paths::plugin("load")?;
    install(&manifest, &agent.plugins.join("load.toml"))?;
    install(&wasm, &agent.plugins.join("load.wasm"))?;
    let missing = installed.join("wasmtap-compile").display().to_string();
    wait::until(Duration::from_secs(20), "the load error naming the compiler", || {
        let log = agent.log_text();
        let said = log.lines().any(|l| {
            l.contains("cannot compile") && l.contains(&missing) && l.contains("No such file")
        });
        Ok(said.then_some(()))
    })
    .with_context(|| agent.log_text())?;
    assert_eq!(latest_time(&proxy)?, 0, "nothing loaded");

    // Installed, then `reload` retries what failed.
    std::fs::copy(paths::bin_dir()?.join("wasmtap-compile"), installed.join("wasmtap-compile"))?;
    let running = ctl::Ctl::new(&proxy, "web-01").request(&["reload"])?;
    assert!(running["running"].to_string().contains("load"), "{running}");
    wait::until(Duration::from_secs(20), "load samples once the compiler is there", || {
        Ok((latest_time(&proxy)? > 0).then_some(()))
    })
    .with_context(|| agent.log_text())?;
    Ok(())
}

#[test]
fn collector_state_survives_an_agent_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent_dir = dir.path().join("agent");
    let agent = Agent::start(&agent_dir, "web-01", proxy.addr.port(), &key, &[])?;
    agent.stop()?;
    // cpu computes rates from the previous reading kept in its state; make it tick every second.
    let (wasm, _) = paths::plugin("cpu")?;
    let plugins = agent_dir.join("plugins");
    std::fs::copy(wasm, plugins.join("cpu.wasm"))?;
    std::fs::write(
        plugins.join("cpu.toml"),
        "interval = \"1s\"\n[grants]\nread = [\"/proc\"]\n[config]\npercent = \"true\"\n",
    )?;
    let busy_times = |proxy: &Proxy| -> anyhow::Result<Vec<u64>> {
        Ok(proxy
            .query(&["--collector", "cpu"])?
            .iter()
            .filter(|r| r["field"] == "busy_percent")
            .filter_map(|r| r["time"].as_u64())
            .collect())
    };
    let config = agent_dir.join("agent.toml");
    let agent = Agent::start_with_config(&agent_dir, &config, plugins.clone())?;
    wait::until(Duration::from_secs(20), "cpu rates", || {
        Ok((!busy_times(&proxy)?.is_empty()).then_some(()))
    })
    .with_context(|| agent.log_text())?;
    agent.stop()?;
    assert!(agent_dir.join("data/state/cpu.state").is_file(), "cpu's state is on disk");

    let restarted_at = now_ms();
    let agent = Agent::start_with_config(&agent_dir, &config, plugins)?;
    let first_after =
        wait::until(Duration::from_secs(20), "a cpu sample after the restart", || {
            let times: Vec<u64> = proxy
                .query(&["--collector", "cpu"])?
                .iter()
                .filter_map(|r| r["time"].as_u64())
                .filter(|t| *t >= restarted_at)
                .collect();
            Ok(times.into_iter().min())
        })
        .with_context(|| agent.log_text())?;
    // Rates need a previous reading: present at the very first collect only if
    // the state came back from disk.
    wait::until(Duration::from_secs(20), "rates in the first sample after the restart", || {
        Ok(busy_times(&proxy)?.contains(&first_after).then_some(()))
    })
    .with_context(|| agent.log_text())?;
    Ok(())
}
