//! Polling with a deadline.

use std::time::{Duration, Instant};

use anyhow::bail;

/// Calls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
pub fn until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since the Unix epoch, the clock agents stamp samples with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Waits (up to `timeout`) until `proxy` stores a sample of `collector`
/// stamped after `after_ms`. An agent sends its batches in order and the
/// proxy stores them in order, so everything the agent collected before
/// `after_ms` that was ever going to arrive has arrived: the condition to
/// wait on before asserting that something did *not* arrive.
pub fn for_sample_after(
    proxy: &crate::Proxy,
    collector: &str,
    after_ms: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    until(timeout, &format!("a {collector} sample stamped after {after_ms}"), || {
        let rows = proxy.query(&["--collector", collector])?;
        Ok(rows.iter().filter_map(|r| r["time"].as_u64()).any(|t| t > after_ms).then_some(()))
    })
}
