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

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};
use wasmtap_protocol::message::{ControlRequest, ControlResponse, Sample, Value};

use crate::config::Config;
use crate::health::{Registry, State};
use crate::logring::LogRing;
use crate::spool::Spool;
use crate::stats::AgentStats;
use crate::supervisor::Command;

/// The commands this agent knows.
pub const COMMANDS: [&str; 8] =
    ["info", "collectors", "reload", "enable", "disable", "run", "config", "logs"];
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
