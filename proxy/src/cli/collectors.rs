//! `wasmtap-proxy collectors …`: the collector catalog of a running proxy,
//! through its admin API.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{Value, json};
use wasmtap_proxy::ctl::{AdminApi, CtlError};

#[derive(Subcommand)]
pub enum Action {
    /// Validate a collector as an agent would and publish it to every agent
    /// of the project (or first to a canary share of them).
    Publish {
        /// The project.
        #[arg(long)]
        project: String,
        /// The component.
        file: PathBuf,
        /// Its manifest (default: FILE with `.toml`, if there is one).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Its signature (default: FILE with `.wasm.sig`, if there is one).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// Run it first on about this share of the connected agents (`10%`).
        #[arg(long, value_parser = parse_percent)]
        canary: Option<u8>,
        /// How long canary agents are watched for failures (default 60s).
        #[arg(long, value_parser = humantime::parse_duration, requires = "canary")]
        watch: Option<Duration>,
        /// After a clean watch, wait for `promote` instead of promoting.
        #[arg(long, requires = "canary")]
        hold: bool,
    },
    /// List the project's releases and the agents on each.
    List {
        /// The project.
        #[arg(long)]
        project: String,
    },
    /// Where each agent stands with a collector.
    Status {
        /// The project.
        #[arg(long)]
        project: String,
        /// The collector.
        name: String,
    },
    /// Promote a canary or held release to every agent.
    Promote {
        /// The project.
        #[arg(long)]
        project: String,
        /// The collector.
        name: String,
    },
    /// Roll back a canary, or the promoted release (the one before it runs again).
    Rollback {
        /// The project.
        #[arg(long)]
        project: String,
        /// The collector.
        name: String,
    },
    /// Remove a collector from every agent of the project.
    Remove {
        /// The project.
        #[arg(long)]
        project: String,
        /// The collector.
        name: String,
    },
}

fn parse_percent(text: &str) -> Result<u8, String> {
    let n = text.trim().trim_end_matches('%');
    match n.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a share between 1% and 100%")),
    }
}

/// Runs `action` against the admin API; prints text, or JSON with `json`.
pub async fn run(api: &AdminApi<'_>, action: Action, json: bool) -> anyhow::Result<()> {
    let answer = match &action {
        Action::Publish { project, file, manifest, signature, canary, watch, hold } => {
            let body = publish_body(
                file,
                manifest.as_deref(),
                signature.as_deref(),
                *canary,
                *watch,
                *hold,
            )?;
            api.publish(project, body)
                .await
                .with_context(|| format!("publishing {}", file.display()))?
        }
        Action::List { project } => api
            .collectors(project, None)
            .await
            .with_context(|| format!("listing project `{project}`"))?,
        Action::Status { project, name } => api
            .collectors(project, Some(name))
            .await
            .with_context(|| format!("status of `{name}` in project `{project}`"))?,
        Action::Promote { project, name } => act(api, project, name, "promote").await?,
        Action::Rollback { project, name } => act(api, project, name, "rollback").await?,
        Action::Remove { project, name } => act(api, project, name, "remove").await?,
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
        return Ok(());
    }
    let text = match action {
        Action::Publish { .. } => release_line(&answer),
        Action::List { .. } => list_text(&answer),
        Action::Status { .. } => status_text(&answer),
        _ => answer.as_array().map(|a| a.iter().map(release_line).collect()).unwrap_or_default(),
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

async fn act(
    api: &AdminApi<'_>,
    project: &str,
    name: &str,
    action: &str,
) -> Result<Value, anyhow::Error> {
    let answer: Result<Value, CtlError> = api.collector_action(project, name, action).await;
    answer.with_context(|| format!("{action} `{name}` in project `{project}`"))
}

/// The JSON body of a publish, from the files.
fn publish_body(
    file: &Path,
    manifest: Option<&Path>,
    signature: Option<&Path>,
    canary: Option<u8>,
    watch: Option<Duration>,
    hold: bool,
) -> anyhow::Result<Value> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let beside = |given: Option<&Path>, default: PathBuf| -> anyhow::Result<Option<String>> {
        match given {
            Some(p) => Ok(Some(
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )),
            None => match std::fs::read_to_string(&default) {
                Ok(text) => {
                    eprintln!("using {}", default.display());
                    Ok(Some(text))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", default.display())),
            },
        }
    };
    let manifest = beside(manifest, file.with_extension("toml"))?;
    let mut sig_default = file.as_os_str().to_owned();
    sig_default.push(".sig");
    let signature = beside(signature, PathBuf::from(sig_default))?;
    let label = file.file_name().map(|n| n.to_string_lossy().into_owned());
    if wasm.is_empty() {
        bail!("{} is empty", file.display());
    }
    let mut body = json!({
        "wasm": base64::engine::general_purpose::STANDARD.encode(&wasm),
        "file": label,
        "hold": hold,
    });
    if let Some(m) = manifest {
        body["manifest"] = m.into();
    }
    if let Some(s) = signature {
        body["signature"] = s.into();
    }
    if let Some(p) = canary {
        body["canary_percent"] = p.into();
        if let Some(w) = watch {
            body["watch_ms"] = u64::try_from(w.as_millis()).unwrap_or(u64::MAX).into();
        }
    }
    Ok(body)
}

fn release_line(r: &Value) -> String {
    let mut line = format!(
        "release {} of {} {}: {}",
        r["id"],
        r["name"].as_str().unwrap_or("?"),
        r["version"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?")
    );
    if let Some(agents) = r["canary"]["agents"].as_array().filter(|_| r["state"] == "canary") {
        let names: Vec<&str> = agents.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(
            " on {} for {} s",
            names.join(", "),
            r["canary"]["watch_ms"].as_u64().unwrap_or(0) / 1000
        ));
    }
    if let Some(reason) = r["reason"].as_str() {
        line.push_str(&format!(" ({reason})"));
    }
    line.push_str(&format!("\n  sha256 {}\n", r["sha256"].as_str().unwrap_or("?")));
    line
}

fn list_text(list: &Value) -> String {
    let mut out =
        format!("{:<4} {:<20} {:<12} {:<12} agents\n", "id", "collector", "version", "state");
    for r in list.as_array().into_iter().flatten() {
        let mut agents: Vec<String> = r["agents"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        agents.sort();
        let mut state = r["state"].as_str().unwrap_or("?").to_owned();
        if let Some(reason) = r["reason"].as_str() {
            state = format!("{state} ({reason})");
        }
        out.push_str(&format!(
            "{:<4} {:<20} {:<12} {:<12} {}\n",
            r["id"],
            r["name"].as_str().unwrap_or("?"),
            r["version"].as_str().unwrap_or("?"),
            state,
            if agents.is_empty() { "-".to_owned() } else { agents.join(", ") }
        ));
    }
    out
}

fn status_text(agents: &Value) -> String {
    let mut out = format!(
        "{:<24} {:<9} {:<7} {:<7} {:<10} {:<12} reason\n",
        "agent", "connected", "wanted", "has", "version", "status"
    );
    let release = |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
    for a in agents.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<24} {:<9} {:<7} {:<7} {:<10} {:<12} {}\n",
            a["agent"].as_str().unwrap_or("?"),
            if a["connected"] == true { "yes" } else { "no" },
            release(&a["wanted"]),
            release(&a["release"]),
            a["version"].as_str().unwrap_or("-"),
            a["status"].as_str().unwrap_or("-"),
            match (a["reason"].as_str(), a["error"].as_str()) {
                (Some(r), Some(e)) => format!("{r}; delivery: {e}"),
                (Some(r), None) => r.to_owned(),
                (None, Some(e)) => format!("delivery: {e}"),
                (None, None) => String::new(),
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_print_as_text() {
        let release = json!({
            "id": 2, "name": "fleet", "version": "2.0.0", "state": "canary",
            "sha256": "ab", "canary": {"agents": ["web-01"], "watch_ms": 60000},
        });
        let line = release_line(&release);
        assert!(line.starts_with("release 2 of fleet 2.0.0: canary on web-01 for 60 s"), "{line}");
        let list = json!([{
            "id": 1, "name": "fleet", "version": "1.0.0", "state": "rolled_back",
            "reason": "agent web-02: quarantined", "agents": {"running": 2, "failing": 1},
        }]);
        let text = list_text(&list);
        assert!(text.contains("rolled_back (agent web-02: quarantined)"), "{text}");
        assert!(text.contains("1 failing, 2 running"), "{text}");
        let status = json!([{
            "agent": "web-01", "connected": true, "wanted": 2, "release": 1, "version": "1.0.0",
            "status": "refused", "reason": "grants /etc", "error": "fleet 2.0.0: not sent",
        }]);
        let text = status_text(&status);
        let (head, row) = text.split_once('\n').expect("a header and a row");
        // Every column under its heading.
        for (heading, cell) in
            [("wanted", "2"), ("has", "1"), ("version", "1.0.0"), ("status", "refused")]
        {
            assert_eq!(head.find(heading), row.find(&format!(" {cell} ")).map(|i| i + 1), "{text}");
        }
        assert!(text.contains("grants /etc; delivery: fleet 2.0.0: not sent"), "{text}");
        assert_eq!(parse_percent("10%"), Ok(10));
        assert!(parse_percent("0%").is_err() && parse_percent("101").is_err());
    }
}
