//! Control requests from the proxy, answered by the agent: each command
//! returns a JSON document, or an error message.
//!
//! | command | answer |
//! |---|---|
//! | `info` | version, host, uptime, session, spool and collector summary |
//! | `collectors` | every collector with its state and counters |
//! | `reload` | rescans the plugins dir; the running collectors |
//! | `enable NAME`, `disable NAME` | schedules or stops a collector |
//! | `run NAME` | calls the collector now; its samples (not shipped) |
//! | `config` | the effective configuration, without the access key |
//! | `logs [N]` | the agent's newest `N` log lines (default 100) |
//! | `describe` | every collector's fields with kind, unit and help (the proxy asks, to name and explain series) |
//! | `fleet-state`, `fleet-put`, `fleet-apply` | managed collectors pushed by the proxy ([`crate::fleet`], [`wasmtap_protocol::fleet`]) |

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};
use wasmtap_protocol::message::{ControlRequest, ControlResponse, Sample, Value};

use wasmtap_protocol::fleet;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::health::{Registry, State};
use crate::logring::LogRing;
use crate::schema::{Kind, Schema};
use crate::selfwatch;
use crate::spool::Spool;
use crate::stats::AgentStats;
use crate::supervisor::Command;

fn to_json(value: impl serde::Serialize) -> Result<Json, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// The commands this agent knows.
pub const COMMANDS: [&str; 12] = [
    "info",
    "collectors",
    "reload",
    "enable",
    "disable",
    "run",
    "config",
    "logs",
    "describe",
    fleet::STATE,
    fleet::PUT,
    fleet::APPLY,
];
/// Log lines `logs` returns unless asked for another number.
pub const DEFAULT_LOG_LINES: usize = 100;

/// What the control requests can see and do.
#[derive(Debug)]
pub struct Control {
    /// When the agent started.
    pub started: Instant,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Collector health.
    pub health: Registry,
    /// The supervisor's command queue.
    pub supervisor: mpsc::Sender<Command>,
    /// Recent log lines.
    pub logs: LogRing,
    /// The agent's counters.
    pub stats: Arc<AgentStats>,
    /// The spool (for its counters).
    pub spool: Arc<Mutex<Spool>>,
    /// Managed collectors.
    pub fleet: Arc<Fleet>,
}

impl Control {
    /// Answers one request.
    pub async fn handle(&self, req: ControlRequest) -> ControlResponse {
        AgentStats::add(&self.stats.control_requests, 1);
        tracing::info!(id = req.id, command = %req.command, args = req.args.len(), "control request");
        let result = self.dispatch(&req.command, &req.args).await.map(|j| j.to_string());
        if let Err(e) = &result {
            tracing::info!(id = req.id, command = %req.command, error = %e, "control request failed");
        }
        ControlResponse { id: req.id, result }
    }

    async fn dispatch(&self, command: &str, args: &[String]) -> Result<Json, String> {
        let name = || match args {
            [name] => Ok(name.clone()),
            _ => Err(format!("usage: {command} NAME")),
        };
        match command {
            "info" => Ok(self.info()),
            "collectors" => Ok(self.collectors()),
            "config" => Ok(self.config()),
            "logs" => {
                let n = match args {
                    [] => DEFAULT_LOG_LINES,
                    [n] => n.parse().map_err(|_| format!("logs: `{n}` is not a number"))?,
                    _ => return Err("usage: logs [N]".into()),
                };
                Ok(json!(self.logs.tail(n)))
            }
            "describe" => {
                let schemas = self.ask(Command::Describe).await?;
                Ok(describe(&schemas))
            }
            "reload" => {
                let running = self.ask(Command::Reload).await?;
                Ok(json!({ "running": running }))
            }
            "enable" => {
                let name = name()?;
                self.ask(|tx| Command::Enable(name.clone(), tx)).await??;
                Ok(json!({ "enabled": name }))
            }
            "disable" => {
                let name = name()?;
                self.ask(|tx| Command::Disable(name.clone(), tx)).await??;
                Ok(json!({ "disabled": name }))
            }
            "run" => {
                let name = name()?;
                let samples = self.ask(|tx| Command::Run(name, tx)).await??;
                Ok(Json::Array(samples.iter().map(sample_json).collect()))
            }
            fleet::STATE => to_json(self.fleet.state().await?),
            fleet::PUT => to_json(self.fleet.put(args).await?),
            fleet::APPLY => to_json(self.fleet.apply(args).await?),
            other => Err(format!("unknown command `{other}`; known: {}", COMMANDS.join(", "))),
        }
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.supervisor.send(cmd(tx)).await.map_err(|_| "the agent is shutting down".to_owned())?;
        rx.await.map_err(|_| "the agent is shutting down".to_owned())
    }

    fn info(&self) -> Json {
        let spool = self.spool.lock().unwrap_or_else(PoisonError::into_inner).stats();
        let s = &self.stats;
        let get = AgentStats::get;
        let health = self.health.snapshot();
        let count = |f: fn(&State) -> bool| health.values().filter(|h| f(&h.state)).count();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "agent": self.config.name,
            "project": self.config.access_key.project().as_str(),
            "host": crate::config::host_name(),
            "pid": std::process::id(),
            "uptime_s": self.started.elapsed().as_secs(),
            "proxy": s.proxy(),
            "rtt_ms": s.rtt_ms.load(std::sync::atomic::Ordering::Relaxed),
            "clock_offset_ms": s.clock_offset_ms.load(std::sync::atomic::Ordering::Relaxed),
            "sessions": get(&s.sessions),
            "session_failures": get(&s.session_failures),
            "identity_refusals": get(&s.identity_refusals),
            "acks_refused": get(&s.acks_refused),
            "batches_sent": get(&s.batches_sent),
            "batches_acked": get(&s.batches_acked),
            "spool": {
                "pending_batches": spool.pending_batches,
                "pending_samples": spool.pending_samples,
                "bytes": spool.bytes,
                "dropped_batches": spool.dropped_batches,
                "dropped_samples": spool.dropped_samples,
                "corrupt_batches": spool.corrupt_batches,
                "corrupt_samples": spool.corrupt_samples,
                "renumbered_batches": spool.renumbered_batches,
            },
            "collectors": {
                "total": health.len(),
                "running": count(|s| matches!(s, State::Running)),
                "backoff": count(|s| matches!(s, State::Backoff)),
                "quarantined": count(|s| matches!(s, State::Quarantined { .. })),
                "disabled": count(|s| matches!(s, State::Disabled)),
            },
        })
    }

    fn collectors(&self) -> Json {
        let list: Vec<Json> = self
            .health
            .snapshot()
            .into_iter()
            .map(|(name, h)| {
                json!({
                    "name": name,
                    "state": state_name(&h.state),
                    "reason": match &h.state { State::Quarantined { reason } => Some(reason), _ => None },
                    "calls": h.calls,
                    "failures": h.failures,
                    "timeouts": h.timeouts,
                    "call_time_ms": h.call_time.as_secs_f64() * 1e3,
                    "dropped_values": h.dropped_values,
                    "last_error": h.last_error,
                })
            })
            .collect();
        Json::Array(list)
    }

    fn config(&self) -> Json {
        let c = &self.config;
        json!({
            "server": {
                "hosts": c.hosts,
                "port": c.port,
                "project": c.access_key.project().as_str(),
                "access_key": "[redacted]",
                "max_backoff": humantime::format_duration(c.max_backoff).to_string(),
            },
            "agent": {
                "name": c.name,
                "data_dir": c.data_dir,
                "batch_interval": humantime::format_duration(c.batch_interval).to_string(),
                "spool_cap_bytes": c.spool_cap,
                "log_format": c.log_format.to_string(),
            },
            "plugins": {
                "dir": c.plugins_dir,
                "quarantine_after": c.quarantine_after,
                "trusted_keys": c.trusted_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
        })
    }
}

/// The name a state has in answers and in the self-observation samples.
pub fn state_name(state: &State) -> &'static str {
    match state {
        State::Running => "running",
        State::Backoff => "backoff",
        State::Quarantined { .. } => "quarantined",
        State::Disabled => "disabled",
    }
}

fn sample_json(s: &Sample) -> Json {
    let values: serde_json::Map<String, Json> = s
        .values
        .iter()
        .map(|(name, v)| {
            let v = match v {
                Value::Gauge(x) | Value::Counter(x) => json!(x),
                Value::Text(t) => json!(t),
            };
            (name.to_string(), v)
        })
        .collect();
    let labels: serde_json::Map<String, Json> =
        s.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({ "collector": s.collector, "time_ms": s.time_ms, "labels": labels, "values": values })
}

/// Most bytes of a `describe` answer: well inside the proxy's largest
/// frame (1 MiB), whatever collectors are loaded.
pub const MAX_DESCRIBE: usize = 512 << 10;

/// One collector's entry of a `describe` answer; `help` false leaves the
/// help texts out.
fn collector_entry<'a>(
    name: &str,
    version: &str,
    fields: impl Iterator<Item = (&'a str, Kind, &'a str, &'a str)>,
    help: bool,
) -> Json {
    let fields: Vec<Json> = fields
        .map(|(name, kind, unit, text)| {
            let text = if help { text } else { "" };
            json!({ "name": name, "kind": kind.name(), "unit": unit, "help": text })
        })
        .collect();
    json!({ "name": name, "version": version, "fields": fields })
}

/// The answer to `describe`: the agent's own collector, then every loaded
/// one, within [`MAX_DESCRIBE`] bytes: a collector that does not fit with
/// its help texts comes without them, and one that does not fit even so
/// is left out (the proxy names its series from their kinds alone).
fn describe(schemas: &[Arc<Schema>]) -> Json {
    let own = selfwatch::COLLECTOR_FIELDS.iter().chain(&selfwatch::AGENT_FIELDS);
    let own = own.map(|(name, kind, unit, help)| (*name, *kind, *unit, *help));
    let mut collectors =
        vec![collector_entry(selfwatch::COLLECTOR, env!("CARGO_PKG_VERSION"), own, true)];
    let mut used = collectors[0].to_string().len();
    for s in schemas {
        let fields =
            || s.fields.iter().map(|f| (&*f.name, f.kind, f.unit.as_str(), f.help.as_str()));
        let entry = [true, false].into_iter().find_map(|help| {
            let e = collector_entry(&s.name, &s.version, fields(), help);
            let len = e.to_string().len() + 1;
            (used + len <= MAX_DESCRIBE).then_some((e, len))
        });
        match entry {
            Some((e, len)) => {
                used += len;
                collectors.push(e);
            }
            None => {
                tracing::warn!(collector = %s.name, "collector left out of the describe answer: too many fields to fit")
            }
        }
    }
    json!({ "collectors": collectors })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::schema::FieldSpec;

    fn small() -> Arc<Schema> {
        Arc::new(Schema {
            name: "net".into(),
            version: "1.2.0".into(),
            default_interval: Duration::from_secs(1),
            fields: vec![FieldSpec {
                name: "rx_bytes".into(),
                kind: Kind::Counter,
                unit: "bytes".into(),
                help: "Bytes received.".into(),
                precision: None,
            }],
        })
    }

    #[test]
    fn describe_lists_every_field_and_the_agents_own() {
        let json = describe(&[small()]);
        let collectors = json["collectors"].as_array().expect("a list");
        assert_eq!(collectors.len(), 2);
        assert_eq!(
            collectors[1],
            json!({ "name": "net", "version": "1.2.0", "fields": [
                { "name": "rx_bytes", "kind": "counter", "unit": "bytes", "help": "Bytes received." }
            ]})
        );
        assert_eq!(collectors[0]["name"], "agent");
        let own = collectors[0]["fields"].as_array().expect("fields");
        assert_eq!(own.len(), selfwatch::COLLECTOR_FIELDS.len() + selfwatch::AGENT_FIELDS.len());
        assert!(own.iter().all(|f| !f["help"].as_str().unwrap_or("").is_empty()));
    }

    /// Collectors at the schema's limits: 1024 fields with 64-byte names and
    /// 256-byte units and help each.
    fn largest(name: &str) -> Arc<Schema> {
        let fields = (0..crate::schema::MAX_FIELDS)
            .map(|i| FieldSpec {
                name: format!("{i:0>64}").into(),
                kind: Kind::Gauge,
                unit: "u".repeat(crate::schema::MAX_DOC),
                help: "h".repeat(crate::schema::MAX_DOC),
                precision: None,
            })
            .collect();
        Arc::new(Schema {
            name: name.into(),
            version: "1".into(),
            default_interval: Duration::from_secs(1),
            fields,
        })
    }

    #[test]
    fn a_describe_answer_fits_a_frame_whatever_is_loaded() {
        let schemas: Vec<Arc<Schema>> = (0..4).map(|i| largest(&format!("big{i}"))).collect();
        let json = describe(&schemas);
        assert!(json.to_string().len() <= MAX_DESCRIBE);
        let collectors = json["collectors"].as_array().expect("a list");
        assert_eq!(collectors[0]["name"], "agent", "the agent's own always fits");
        // One such collector is about 640 KB with its help: the first comes
        // without help texts, the others do not fit at all.
        assert_eq!(collectors.len(), 2);
        assert_eq!(collectors[1]["name"], "big0");
        assert_eq!(collectors[1]["fields"][1023]["help"], "");
        assert_eq!(collectors[1]["fields"][1023]["unit"].as_str().map(str::len), Some(256));
        // Small collectors keep their help.
        let json = describe(&[largest("big"), small()]);
        let collectors = json["collectors"].as_array().expect("a list");
        assert_eq!(collectors[2]["fields"][0]["help"], "Bytes received.");
    }
}
