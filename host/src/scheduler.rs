//! Runs each collector on its own interval. A call is an async task with a
//! wall-clock deadline: guest code yields to other tasks every epoch tick
//! and host calls never block a thread, so a collector that spins or
//! blocks until its deadline delays nobody else, and is cut off on time.
//!
//! The first call comes at once; later ones fall on multiples of the
//! interval in wall-clock time, shifted by the agent's own phase, so
//! collectors of one interval run together: the agent wakes once per tick
//! for all of them (and its epoch ticker runs once), not once per
//! collector, and their samples share a batch. The phase is drawn at
//! random when the agent starts, so a fleet's agents do not all send at
//! the same instant of every second.
//!
//! A failed call (trap, timeout, limit breach, or an error the collector
//! reports) fails only that tick. The next attempt waits `interval × 2^(n-1)`
//! after the n-th consecutive failure (at most [`MAX_RESTART_BACKOFF`]), and
//! after `quarantine_after` consecutive failures the collector is quarantined:
//! no longer called, with the reason logged and kept in its [`Health`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, watch};
use tokio::time::MissedTickBehavior;
use wasmtap_protocol::message::Sample;

use crate::clock::now_ms;
use crate::health::{Health, Registry, State};
use crate::runtime::{CallError, Collector, Runtime};

/// Longest wait between attempts of a failing collector.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(300);
/// Consecutive failures before a collector is quarantined, unless configured.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 5;

/// How one collector is scheduled.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Time between calls.
    pub interval: Duration,
    /// Consecutive failures before quarantine.
    pub quarantine_after: u32,
}

/// The wait before the next attempt after `failures` consecutive failures.
pub fn restart_delay(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    interval.saturating_mul(factor).min(MAX_RESTART_BACKOFF).max(interval)
}

/// The wait from `now_ms` (when the first call was made, in Unix time
/// shifted by the agent's phase) to the second call: the next multiple of
/// `interval`, or the one after it when
/// that is less than half an interval away (a rate over a few milliseconds
/// would say little).
pub fn until_aligned(interval: Duration, now_ms: u64) -> Duration {
    let period = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut wait = period - now_ms % period;
    if wait < period / 2 {
        wait = wait.saturating_add(period);
    }
    Duration::from_millis(wait)
}

/// This agent's phase: where in every interval its ticks fall, the same
/// for all its collectors, random across agents.
fn phase_ms() -> u64 {
    static PHASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PHASE.get_or_init(rand::random)
}

/// Spawns the task that calls `collector` on `schedule` until `shutdown` flips.
pub fn spawn(
    name: String,
    rt: Arc<Runtime>,
    collector: Arc<Mutex<Collector>>,
    schedule: Schedule,
    health: Registry,
    out: mpsc::Sender<Vec<Sample>>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // Counters start over; what the collector is (version, origin) stays.
    health.update(&name, |h| {
        *h = Health {
            version: std::mem::take(&mut h.version),
            managed: h.managed,
            ..Health::default()
        }
    });
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now()
                + until_aligned(schedule.interval, now_ms().wrapping_add(phase_ms())),
            schedule.interval,
        );
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = shutdown.changed() => break,
                }
            }
            let mut c = collector.lock().await;
            let started = Instant::now();
            // Stopping drops a call in progress (its instance is discarded).
            let result = tokio::select! {
                r = c.collect(&rt, now_ms()) => r,
                _ = shutdown.changed() => break,
            };
            let took = started.elapsed();
            match result {
                Ok(output) => {
                    let dropped = output.undeclared + output.wrong_kind;
                    health.update(&name, |h| {
                        h.calls += 1;
                        h.call_time += took;
                        h.dropped_values += dropped;
                        h.consecutive_failures = 0;
                        h.state = State::Running;
                    });
                    if dropped > 0 {
                        tracing::warn!(
                            collector = %name,
                            undeclared = output.undeclared,
                            wrong_kind = output.wrong_kind,
                            "dropped values that do not match the declared fields"
                        );
                    }
                    // The state is saved once the samples are handed on,
                    // never before: stopped in between, the agent keeps the
                    // state that matches what it delivered.
                    if !output.samples.is_empty() && out.send(output.samples).await.is_err() {
                        break;
                    }
                    c.save_state().await;
                    drop(c);
                }
                Err(e) => {
                    c.save_state().await;
                    drop(c);
                    let failures = health.update(&name, |h| {
                        h.calls += 1;
                        h.call_time += took;
                        h.failures += 1;
                        h.timeouts += u64::from(e == CallError::Timeout);
                        h.consecutive_failures += 1;
                        h.last_error = Some(e.to_string());
                        h.consecutive_failures
                    });
                    if failures >= schedule.quarantine_after {
                        tracing::error!(collector = %name, failures, error = %e, "collector quarantined after repeated failures");
                        health.update(&name, |h| {
                            h.state = State::Quarantined { reason: e.to_string() }
                        });
                        break;
                    }
                    let delay = restart_delay(schedule.interval, failures);
                    tracing::warn!(collector = %name, error = %e, failures, retry_in_ms = delay.as_millis() as u64, "collect failed");
                    health.update(&name, |h| h.state = State::Backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(delay.saturating_sub(schedule.interval)) => {}
                        _ = shutdown.changed() => break,
                    }
                    ticks.reset();
                }
            }
        }
        tracing::debug!(collector = %name, "collector stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use wasmtap_protocol::message::Value;

    /// The `ticker` test collector (built by `cargo xtask plugins`), whose
    /// persisted counter goes up by one per collect.
    async fn ticker(rt: &Runtime) -> Collector {
        let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/plugins/testing/ticker.wasm");
        assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
        let manifest = Manifest::load(&wasm.with_extension("toml")).expect("ticker manifest");
        Collector::load(rt, &wasm, manifest).await.expect("ticker loads")
    }

    fn counts(samples: &[Sample]) -> Vec<f64> {
        let count = |v: &Value| match v {
            Value::Counter(n) => Some(*n),
            _ => None,
        };
        samples.iter().flat_map(|s| s.values.iter().filter_map(|(_, v)| count(v))).collect()
    }

    #[tokio::test]
    async fn the_state_is_saved_only_once_the_samples_are_handed_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = Arc::new(Runtime::new(dir.path()).expect("runtime"));
        let schedule = Schedule { interval: Duration::from_secs(3600), quarantine_after: 5 };
        let (stop, stopped) = watch::channel(false);
        let run = |c, out| {
            let c = Arc::new(Mutex::new(c));
            spawn(
                "ticker".into(),
                rt.clone(),
                c,
                schedule,
                Registry::default(),
                out,
                stopped.clone(),
            )
        };
        // Nobody takes the first count: the task ends without keeping it.
        let (out, gone) = mpsc::channel(1);
        drop(gone);
        run(ticker(&rt).await, out).await.expect("task ends");
        // So the next agent counts 1 again, and keeps it once it is taken.
        let (out, mut taken) = mpsc::channel(1);
        let task = run(ticker(&rt).await, out);
        assert_eq!(counts(&taken.recv().await.expect("a sample")), [1.0]);
        stop.send(true).expect("the task listens");
        task.await.expect("task ends");
        let mut after = ticker(&rt).await;
        let output = after.collect(&rt, 0).await.expect("collects");
        assert_eq!(counts(&output.samples), [2.0], "the delivered count was kept");
    }

    #[test]
    fn ticks_fall_on_multiples_of_the_interval() {
        let s = Duration::from_secs(1);
        assert_eq!(until_aligned(s, 10_250), Duration::from_millis(750));
        assert_eq!(until_aligned(s, 10_000), s, "on a multiple: the next one");
        assert_eq!(until_aligned(s, 10_900), Duration::from_millis(1_100), "not 100 ms later");
        assert_eq!(until_aligned(Duration::from_secs(10), 12_345), Duration::from_millis(7_655));
        assert_eq!(until_aligned(Duration::ZERO, 5), Duration::from_millis(1));
    }

    #[test]
    fn restart_delay_doubles_and_is_capped() {
        let s = Duration::from_secs(1);
        let delays: Vec<u64> = (1..=4).map(|n| restart_delay(s, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(restart_delay(s, 30), MAX_RESTART_BACKOFF);
        assert_eq!(restart_delay(Duration::from_secs(600), 1), Duration::from_secs(600));
    }
}
