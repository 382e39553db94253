//! Self-observation: a built-in collector, `agent`, that reports the
//! agent's own health every [`INTERVAL`] through the same path as any other
//! collector's samples — per collector: state, calls, failures, timeouts,
//! call time and dropped values; for the agent: queue and spool depth,
//! drops, batches lost to spool damage, sessions and reconnects, batches
//! and bytes sent per path, and the proxy's round-trip time and clock offset.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use wasmtap_protocol::message::{FieldName, Sample, Value};

use crate::control::state_name;
use crate::health::{Registry, State};
use crate::spool::{Spool, SpoolStats};
use crate::stats::AgentStats;

/// The collector name the agent's own samples carry.
pub const COLLECTOR: &str = "agent";
/// How often the agent reports on itself.
pub const INTERVAL: Duration = Duration::from_secs(10);

fn field(name: &str, v: Value) -> (FieldName, Value) {
    (FieldName::from(name), v)
}

/// The agent's samples at `now_ms`.
pub fn samples(
    now_ms: u64,
    health: &Registry,
    stats: &AgentStats,
    spool: SpoolStats,
) -> Vec<Sample> {
    let mut out: Vec<Sample> = health
        .snapshot()
        .into_iter()
        .map(|(name, h)| Sample {
            collector: COLLECTOR.into(),
            time_ms: now_ms,
            labels: vec![("collector".into(), name)].into(),
            values: vec![
                field("state", Value::Text(state_name(&h.state).into())),
                field(
                    "quarantined",
                    Value::Gauge(f64::from(u8::from(matches!(h.state, State::Quarantined { .. })))),
                ),
                field("calls", Value::Counter(h.calls as f64)),
                field("failures", Value::Counter(h.failures as f64)),
                field("timeouts", Value::Counter(h.timeouts as f64)),
                field("call_time_ms", Value::Counter((h.call_time.as_secs_f64() * 1e3).round())),
                field("dropped_values", Value::Counter(h.dropped_values as f64)),
            ],
        })
        .collect();
    let c = |a: &std::sync::atomic::AtomicU64| Value::Counter(AgentStats::get(a) as f64);
    let g = |v: u64| Value::Gauge(v as f64);
    let mut values = vec![
        field("queued_samples", g(AgentStats::get(&stats.queued_samples))),
        field("spool_batches", g(spool.pending_batches)),
        field("spool_samples", g(spool.pending_samples)),
        field("spool_bytes", g(spool.bytes)),
        field("spool_dropped_samples", Value::Counter(spool.dropped_samples as f64)),
        field("spool_corrupt_batches", Value::Counter(spool.corrupt_batches as f64)),
        field("spool_corrupt_samples", Value::Counter(spool.corrupt_samples as f64)),
        field("spool_renumbered_batches", Value::Counter(spool.renumbered_batches as f64)),
        field("lost_samples", c(&stats.lost_samples)),
        field("connect_attempts", c(&stats.connect_attempts)),
        field("sessions", c(&stats.sessions)),
        field("session_failures", c(&stats.session_failures)),
        field("batches_sent", c(&stats.batches_sent)),
        field("batches_resent", c(&stats.batches_resent)),
        field("batches_acked", c(&stats.batches_acked)),
        field("bytes_sealed", c(&stats.bytes_sealed)),
        field("bytes_simple", c(&stats.bytes_simple)),
        field("numbers_sent", c(&stats.numbers_sent)),
        field("control_requests", c(&stats.control_requests)),
        field("identity_refusals", c(&stats.identity_refusals)),
        field("acks_refused", c(&stats.acks_refused)),
    ];
    let rtt = stats.rtt_ms.load(Ordering::Relaxed);
    if rtt >= 0 {
        values.push(field("rtt_ms", Value::Gauge(rtt as f64)));
        values.push(field(
            "clock_offset_ms",
            Value::Gauge(stats.clock_offset_ms.load(Ordering::Relaxed) as f64),
        ));
    }
    out.push(Sample {
        collector: COLLECTOR.into(),
        time_ms: now_ms,
        labels: vec![].into(),
        values,
    });
    out
}

/// Reports every [`INTERVAL`] until `shutdown` flips.
pub async fn run(
    health: Registry,
    stats: Arc<AgentStats>,
    spool: Arc<Mutex<Spool>>,
    out: mpsc::Sender<Vec<Sample>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let spool_stats = spool.lock().unwrap_or_else(PoisonError::into_inner).stats();
        let batch = samples(crate::clock::now_ms(), &health, &stats, spool_stats);
        if out.send(batch).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_collectors_and_the_agent() {
        let health = Registry::default();
        health.update("cpu", |h| {
            h.calls = 3;
            h.state = State::Quarantined { reason: "trap".into() };
        });
        let stats = AgentStats::new();
        AgentStats::add(&stats.bytes_simple, 42);
        let spool = SpoolStats {
            pending_batches: 2,
            dropped_samples: 7,
            corrupt_batches: 3,
            renumbered_batches: 4,
            ..SpoolStats::default()
        };
        let s = samples(5, &health, &stats, spool);
        assert_eq!(s.len(), 2);
        assert_eq!(*s[0].labels, [("collector".to_owned(), "cpu".to_owned())]);
        let get = |i: usize, name: &str| {
            s[i].values.iter().find(|(n, _)| &**n == name).map(|(_, v)| v.clone())
        };
        assert_eq!(get(0, "state"), Some(Value::Text("quarantined".into())));
        assert_eq!(get(0, "quarantined"), Some(Value::Gauge(1.0)));
        assert_eq!(get(1, "bytes_simple"), Some(Value::Counter(42.0)));
        assert_eq!(get(1, "spool_batches"), Some(Value::Gauge(2.0)));
        assert_eq!(get(1, "spool_dropped_samples"), Some(Value::Counter(7.0)));
        assert_eq!(get(1, "spool_corrupt_batches"), Some(Value::Counter(3.0)));
        assert_eq!(get(1, "spool_corrupt_samples"), Some(Value::Counter(0.0)));
        assert_eq!(get(1, "spool_renumbered_batches"), Some(Value::Counter(4.0)));
        assert_eq!(get(1, "rtt_ms"), None, "no probe yet");
    }
}
