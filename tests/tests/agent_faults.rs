//! The agent under faults, end to end: killed with SIGKILL during ingest
//! again and again, and its spool damaged on disk. The `ticker` collector
//! counts 1, 2, 3, … every 100 ms across restarts, so the store shows
//! exactly which of its samples arrived and how often.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_tests::ticks::{free_port, gaps, highest_in, in_batch, ticks, wait_for_tick};
use wasmtap_tests::{Agent, Proxy, new_key, spool, wait};

/// Ticks in three batch intervals (1 s each, a tick every 100 ms): far
/// more than one kill may cost, far less than losing spooled batches would.
const SANITY: u64 = 30;

#[test]
fn five_kills_of_the_agent_during_ingest_store_every_tick_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let home = dir.path().join("agent");
    let mut agent = Agent::start(&home, "edge-1", proxy.addr.port(), &key, &["testing/ticker"])?;
    let (config, plugins) = (home.join("agent.toml"), home.join("plugins"));
    let mut top = 0;
    // Per kill: the highest tick stored or spooled when the agent died.
    // Only the ticks after it, never batched, may be lost.
    let mut batched_at_kill = Vec::new();
    for kill in 1..=5 {
        // Each run delivers new ticks before it is killed.
        top = wait_for_tick(&[&proxy], top + 15, &format!("ticks before kill {kill}"))
            .with_context(|| agent.log_text())?;
        // Fault injection, not a wait: the kill lands anywhere in the
        // batch interval, not just after a batch was stored.
        std::thread::sleep(Duration::from_millis(rand::random_range(0..1_000)));
        agent.stop()?; // SIGKILL
        let spooled = spool::batches(&home.join("data"))?;
        let spooled_top = spooled.iter().flat_map(|b| in_batch(&b.batch)).max().unwrap_or(0);
        batched_at_kill.push(spooled_top.max(highest_in(&[&proxy])?));
        agent = Agent::start_with_config(&home, &config, plugins.clone())?;
    }
    top = wait_for_tick(&[&proxy], top + 15, "ticks after the last restart")?;
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");

    let all = ticks(&[&proxy])?;
    assert!(all.keys().next_back().is_some_and(|t| *t >= top));
    for (n, places) in &all {
        assert_eq!(places.len(), 1, "tick {n} stored more than once: {places:?}");
    }
    let runs = gaps(&all);
    eprintln!("ticks 1..={top}: kills after {batched_at_kill:?} cost {runs:?}");
    for (first, last) in &runs {
        assert!(
            batched_at_kill.contains(&(first - 1)),
            "ticks {first}..={last} were lost although batched (batched at each kill: {batched_at_kill:?})"
        );
        assert!(last - first < SANITY, "a kill cost {first}..={last}");
    }
    assert!(all.contains_key(&1), "the first tick arrived");
    Ok(())
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_spool_costs_only_its_batch() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let port = free_port()?;
    let home = dir.path().join("agent");
    let data = home.join("data");
    // No proxy yet: everything stays in the spool.
    let agent = Agent::start(&home, "edge-1", port, &key, &["testing/ticker"])?;
    wait::until(Duration::from_secs(40), "ten spooled batches", || {
        Ok((spool::batches(&data)?.len() >= 10).then_some(()))
    })?;
    agent.stop()?; // SIGKILL: the spool stays as it is on disk
    let spooled = spool::batches(&data)?;
    assert!(spooled.len() >= 10);
    let tick_values =
        |b: &spool::Spooled| -> BTreeSet<u64> { in_batch(&b.batch).into_iter().collect() };
    // One byte in the middle of the fourth batch record.
    let victim = &spooled[3];
    let lost = tick_values(victim);
    assert!(!lost.is_empty(), "the damaged batch holds ticks");
    let mut bytes = std::fs::read(&victim.segment)?;
    bytes[victim.offset + victim.len / 2] ^= 0x10;
    std::fs::write(&victim.segment, &bytes)?;
    let kept: BTreeSet<u64> = spooled
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .flat_map(|(_, b)| tick_values(b))
        .collect();
    let last_spooled = kept.iter().next_back().copied().context("spooled ticks")?;

    let proxy = Proxy::start_at(
        &dir.path().join("proxy"),
        &format!("127.0.0.1:{port}"),
        &[("shop", &key)],
        "",
    )?;
    let agent = Agent::start_with_config(&home, &home.join("agent.toml"), home.join("plugins"))?;
    wait_for_tick(&[&proxy], last_spooled + 10, "the spool's later batches and new ticks")
        .with_context(|| agent.log_text())?;
    let stored = ticks(&[&proxy])?;
    let missing: Vec<u64> = kept.iter().filter(|n| !stored.contains_key(n)).copied().collect();
    assert!(missing.is_empty(), "spooled ticks after the damage were lost: {missing:?}");
    let resurrected: Vec<u64> = lost.iter().filter(|n| stored.contains_key(n)).copied().collect();
    assert!(resurrected.is_empty(), "the damaged batch cannot have been read: {resurrected:?}");
    assert!(highest_in(&[&proxy])? > last_spooled);
    // The agent counts the loss in its own metrics, and logs it.
    let corrupt = wait::until(Duration::from_secs(30), "spool_corrupt_batches", || {
        let rows = proxy.query(&["--collector", "agent"])?;
        Ok(rows
            .iter()
            .filter(|r| r["field"] == "spool_corrupt_batches")
            .filter_map(|r| r["value"].as_f64())
            .find(|v| *v > 0.0))
    })?;
    assert_eq!(corrupt, 1.0, "one batch lost");
    let log = agent.log_text();
    assert!(log.contains("damaged records skipped"), "{log}");
    let status = agent.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "agent exit {status:?}");
    Ok(())
}
