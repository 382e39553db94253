//! Self-observation: a built-in collector, `agent`, that reports the
//! agent's own health every [`INTERVAL`] through the same path as any other
//! collector's samples — per collector: state, version, whether the proxy
//! published it, calls, failures, timeouts, call time and dropped values; for the agent: queue and spool depth,
//! drops, batches lost to spool damage, sessions and reconnects, batches
//! and bytes sent per path, and the proxy's round-trip time and clock offset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use wasmtap_protocol::fleet::Status;
use wasmtap_protocol::message::{FieldName, Sample, Value};

use crate::control::state_name;
use crate::fleet::Fleet;
use crate::health::{Registry, State};
use crate::schema::Kind;
use crate::spool::{Spool, SpoolStats};
use crate::stats::AgentStats;

/// The collector name the agent's own samples carry.
pub const COLLECTOR: &str = "agent";
/// How often the agent reports on itself.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// A field of the agent's own samples: name, kind, unit and help, as the
/// `describe` control command reports them.
pub type OwnField = (&'static str, Kind, &'static str, &'static str);

/// The fields of the agent's samples about each collector (label `collector`).
pub const COLLECTOR_FIELDS: [OwnField; 10] = [
    (
        "state",
        Kind::Text,
        "",
        "The collector's state: running, backoff, quarantined or disabled; for a published collector the agent does not run: refused, broken (it did not load) or installed (not loaded yet).",
    ),
    ("version", Kind::Text, "", "The version the collector declares."),
    ("managed", Kind::Gauge, "", "1 if the proxy published the collector, 0 if it is local."),
    (
        "refused",
        Kind::Gauge,
        "",
        "1 while the agent refuses the version the proxy published (its bounds, trusted keys or a damaged component), else 0.",
    ),
    ("quarantined", Kind::Gauge, "", "1 while the collector is quarantined, else 0."),
    ("calls", Kind::Counter, "", "Calls of the collector since it was loaded."),
    ("failures", Kind::Counter, "", "Calls that failed (trap, error, refused output)."),
    ("timeouts", Kind::Counter, "", "Calls stopped at their deadline."),
    ("call_time_seconds", Kind::Counter, "seconds", "Time spent in the collector's calls."),
    ("dropped_values", Kind::Counter, "", "Values dropped for not matching the declared fields."),
];

/// The fields of the agent's sample about itself (no labels).
pub const AGENT_FIELDS: [OwnField; 24] = [
    ("queued_samples", Kind::Gauge, "", "Samples waiting to be put into a batch."),
    ("spool_batches", Kind::Gauge, "", "Batches in the spool, not yet acknowledged."),
    ("spool_samples", Kind::Gauge, "", "Samples in the spool, not yet acknowledged."),
    ("spool_bytes", Kind::Gauge, "bytes", "Bytes of the spool's files."),
    ("spool_dropped_samples", Kind::Counter, "", "Samples dropped because the spool was full."),
    ("spool_corrupt_batches", Kind::Counter, "", "Batches lost to damaged spool files."),
    ("spool_corrupt_samples", Kind::Counter, "", "Samples lost to damaged spool files."),
    (
        "spool_renumbered_batches",
        Kind::Counter,
        "",
        "Batches given new sequence numbers the proxy accepts.",
    ),
    ("lost_samples", Kind::Counter, "", "Samples lost before reaching the spool."),
    ("connect_attempts", Kind::Counter, "", "Connections tried to a proxy."),
    ("sessions", Kind::Counter, "", "Sessions established with a proxy."),
    ("session_failures", Kind::Counter, "", "Sessions that ended in an error."),
    ("batches_sent", Kind::Counter, "", "Batches sent, resends included."),
    (
        "batches_resent",
        Kind::Counter,
        "",
        "Batches sent again after a session ended unacknowledged.",
    ),
    ("batches_acked", Kind::Counter, "", "Batches the proxy acknowledged as stored."),
    ("sealed_bytes", Kind::Counter, "bytes", "Bytes sent on the sealed (AES-256-GCM) path."),
    ("simple_bytes", Kind::Counter, "bytes", "Bytes sent on the simple-cipher path."),
    ("numbers_sent", Kind::Counter, "", "Numbers sent on the simple-cipher path."),
    ("control_requests", Kind::Counter, "", "Control requests answered."),
    ("identity_refusals", Kind::Counter, "", "Sessions a proxy refused for the agent's identity."),
    ("acks_refused", Kind::Counter, "", "Acknowledgements refused for naming unsent batches."),
    ("rtt_seconds", Kind::Gauge, "seconds", "Round-trip time to the proxy, from the last ping."),
    (
        "clock_offset_seconds",
        Kind::Gauge,
        "seconds",
        "The proxy's clock minus the agent's, from the last ping.",
    ),
    ("up", Kind::Gauge, "", "1: the agent is running (its samples arrive)."),
];

fn field(name: &str, v: Value) -> (FieldName, Value) {
    (FieldName::from(name), v)
}

/// The agent's samples at `now_ms`; `managed` is each published
/// collector the agent has or refused, with its status
/// ([`Fleet::summary`]).
pub fn samples(
    now_ms: u64,
    health: &Registry,
    managed: &[(String, Status)],
    stats: &AgentStats,
    spool: SpoolStats,
) -> Vec<Sample> {
    let flag = |b: bool| Value::Gauge(f64::from(u8::from(b)));
    let loaded = health.snapshot();
    let refused: BTreeSet<&str> =
        managed.iter().filter(|c| c.1 == Status::Refused).map(|c| c.0.as_str()).collect();
    // Published collectors the agent does not run: refused (with no earlier
    // version), failed to load, or not loaded yet. A version it has wins
    // over one it refused.
    let mut not_loaded: BTreeMap<&str, Status> = BTreeMap::new();
    for (name, status) in managed.iter().filter(|c| !loaded.iter().any(|(n, _)| *n == c.0)) {
        let entry = not_loaded.entry(name).or_insert(*status);
        if *entry == Status::Refused {
            *entry = *status;
        }
    }
    let refusals: Vec<Sample> = not_loaded
        .into_iter()
        .filter(|(_, status)| *status != Status::Shadowed)
        .map(|(name, status)| Sample {
            collector: COLLECTOR.into(),
            time_ms: now_ms,
            labels: vec![("collector".into(), name.to_owned())].into(),
            values: vec![
                field("state", Value::Text(status.name().into())),
                field("managed", flag(true)),
                field("refused", flag(refused.contains(name))),
            ],
        })
        .collect();
    let mut out: Vec<Sample> = loaded
        .into_iter()
        .map(|(name, h)| Sample {
            collector: COLLECTOR.into(),
            time_ms: now_ms,
            values: vec![
                field("state", Value::Text(state_name(&h.state).into())),
                field("version", Value::Text(h.version.clone())),
                field("managed", flag(h.managed)),
                field("refused", flag(h.managed && refused.contains(name.as_str()))),
                field(
                    "quarantined",
                    Value::Gauge(f64::from(u8::from(matches!(h.state, State::Quarantined { .. })))),
                ),
                field("calls", Value::Counter(h.calls as f64)),
                field("failures", Value::Counter(h.failures as f64)),
                field("timeouts", Value::Counter(h.timeouts as f64)),
                field(
                    "call_time_seconds",
                    Value::Counter((h.call_time.as_secs_f64() * 1e3).round() / 1e3),
                ),
                field("dropped_values", Value::Counter(h.dropped_values as f64)),
            ],
            labels: vec![("collector".into(), name)].into(),
        })
        .chain(refusals)
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
        field("sealed_bytes", c(&stats.bytes_sealed)),
        field("simple_bytes", c(&stats.bytes_simple)),
        field("numbers_sent", c(&stats.numbers_sent)),
        field("control_requests", c(&stats.control_requests)),
        field("identity_refusals", c(&stats.identity_refusals)),
        field("acks_refused", c(&stats.acks_refused)),
    ];
    let rtt = stats.rtt_ms.load(Ordering::Relaxed);
    if rtt >= 0 {
        values.push(field("rtt_seconds", Value::Gauge(rtt as f64 / 1e3)));
        let offset = stats.clock_offset_ms.load(Ordering::Relaxed) as f64 / 1e3;
        values.push(field("clock_offset_seconds", Value::Gauge(offset)));
    }
    values.push(field("up", g(1)));
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
    fleet: Arc<Fleet>,
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
        let managed = fleet.summary().await;
        let batch = samples(crate::clock::now_ms(), &health, &managed, &stats, spool_stats);
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
            h.version = "1.2.0".into();
            h.managed = true;
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
        let report = |name: &str, status| (name.to_owned(), status);
        let managed = [
            report("cpu", Status::Quarantined),
            report("cpu", Status::Refused),
            report("gone", Status::Refused),
            report("new", Status::Refused),
            report("new", Status::Installed),
            report("sick", Status::Broken),
            report("hidden", Status::Shadowed),
        ];
        let s = samples(5, &health, &managed, &stats, spool);
        assert_eq!(s.len(), 5);
        assert_eq!(*s[0].labels, [("collector".to_owned(), "cpu".to_owned())]);
        let get = |i: usize, name: &str| {
            s[i].values.iter().find(|(n, _)| &**n == name).map(|(_, v)| v.clone())
        };
        assert_eq!(get(0, "state"), Some(Value::Text("quarantined".into())));
        assert_eq!(get(0, "quarantined"), Some(Value::Gauge(1.0)));
        assert_eq!(get(0, "version"), Some(Value::Text("1.2.0".into())));
        assert_eq!(get(0, "managed"), Some(Value::Gauge(1.0)));
        assert_eq!(get(0, "refused"), Some(Value::Gauge(1.0)), "a newer version refused");
        // A refused collector the agent does not run at all.
        assert_eq!(*s[1].labels, [("collector".to_owned(), "gone".to_owned())]);
        assert_eq!(get(1, "state"), Some(Value::Text("refused".into())));
        assert_eq!(get(1, "refused"), Some(Value::Gauge(1.0)));
        // A newer version refused, the one it has not loaded yet; one that
        // failed to load. A shadowed one has the local collector's row.
        assert_eq!(*s[2].labels, [("collector".to_owned(), "new".to_owned())]);
        assert_eq!(get(2, "state"), Some(Value::Text("installed".into())));
        assert_eq!(get(2, "refused"), Some(Value::Gauge(1.0)));
        assert_eq!(*s[3].labels, [("collector".to_owned(), "sick".to_owned())]);
        assert_eq!(get(3, "state"), Some(Value::Text("broken".into())));
        assert_eq!(get(3, "refused"), Some(Value::Gauge(0.0)));
        assert_eq!(get(4, "simple_bytes"), Some(Value::Counter(42.0)));
        assert_eq!(get(4, "spool_batches"), Some(Value::Gauge(2.0)));
        assert_eq!(get(4, "spool_dropped_samples"), Some(Value::Counter(7.0)));
        assert_eq!(get(4, "spool_corrupt_batches"), Some(Value::Counter(3.0)));
        assert_eq!(get(4, "spool_corrupt_samples"), Some(Value::Counter(0.0)));
        assert_eq!(get(4, "spool_renumbered_batches"), Some(Value::Counter(4.0)));
        assert_eq!(get(4, "rtt_seconds"), None, "no probe yet");
        stats.rtt_ms.store(1500, Ordering::Relaxed);
        let s = samples(5, &health, &[], &stats, SpoolStats::default());
        // Every field reported is declared, with its kind.
        for (sample, declared) in s.iter().zip([&COLLECTOR_FIELDS[..], &AGENT_FIELDS[..]]) {
            for (name, value) in &sample.values {
                let kind = match value {
                    Value::Gauge(_) => Kind::Gauge,
                    Value::Counter(_) => Kind::Counter,
                    Value::Text(_) => Kind::Text,
                };
                assert!(
                    declared.iter().any(|f| f.0 == &**name && f.1 == kind),
                    "{name} undeclared"
                );
            }
        }
        assert_eq!(s[1].values.len(), AGENT_FIELDS.len(), "every agent field is reported");
        assert_eq!(
            s[1].values.iter().find(|(n, _)| &**n == "rtt_seconds").map(|(_, v)| v.clone()),
            Some(Value::Gauge(1.5))
        );
    }
}
