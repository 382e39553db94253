//! The catalog's admin API, behind the same bearer token as the rest of
//! `/api/`:
//!
//! - `POST /api/projects/{project}/collectors` with `{"wasm": "<base64>",
//!   "file": "name.wasm", "manifest": "<toml>", "signature": "<text>",
//!   "canary_percent": 10, "watch_ms": 60000, "hold": false}` (all but
//!   `wasm` optional): validates and publishes; answers the release (201),
//!   or `{"error"}` with 422 (not a valid collector), 409 (refused: a
//!   candidate under watch, the same release again, no agent for a canary),
//!   404 (no such project) or 413 (too large).
//! - `GET /api/projects/{project}/collectors`: every release, with the
//!   agents that have it by status.
//! - `GET /api/projects/{project}/collectors/{name}`: each agent and where
//!   it stands with that collector.
//! - `POST /api/projects/{project}/collectors/{name}/{promote|rollback|remove}`.

use std::time::Duration;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::catalog::{CanaryPlan, CatalogError};
use super::{Action, FleetError};
use crate::admin::{percent_decode, read_body_up_to};
use crate::http::{HttpResponse, HttpState, json, json_error};

/// Time a client has to send a component.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Shortest watch window: long enough for canary agents to apply a release
/// and report on it a few times ([`super::deliver::CANARY_POLL`]).
const MIN_WATCH: Duration = Duration::from_secs(5);
/// Longest watch window.
pub const MAX_WATCH: Duration = Duration::from_secs(7 * 24 * 3600);
/// Watch window when none is given.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    wasm: String,
    file: Option<String>,
    manifest: Option<String>,
    signature: Option<String>,
    canary_percent: Option<u8>,
    watch_ms: Option<u64>,
    #[serde(default)]
    hold: bool,
}

/// Answers a request under `/api/projects/{project}/collectors`.
pub async fn handle(
    state: &HttpState,
    project: &str,
    rest: &[&str],
    req: Request<Incoming>,
) -> HttpResponse {
    let Some(project) = percent_decode(project) else {
        return json_error(StatusCode::BAD_REQUEST, "the project name is not valid UTF-8");
    };
    let fleet = state.fleet.clone();
    let connected = |sessions: &crate::sessions::Sessions| -> Vec<String> {
        let mut v: Vec<String> = sessions
            .agents()
            .into_iter()
            .filter(|a| a.project == project)
            .map(|a| a.agent)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let now = crate::now_ms();
    match (req.method(), rest) {
        (&Method::POST, []) => {
            // Base64 takes 4 bytes for 3; the texts beside it are small.
            let limit = usize::try_from(fleet.max_size() / 3 * 4 + (1 << 20)).unwrap_or(usize::MAX);
            let bytes = match read_body_up_to(req, limit, UPLOAD_TIMEOUT).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (wasm, label, manifest, signature, canary) = match parse_publish(&bytes) {
                Ok(p) => p,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
            };
            let agents = connected(&state.sessions);
            let published = tokio::task::spawn_blocking(move || {
                fleet.publish(&project, &label, &wasm, manifest, signature, canary, &agents, now)
            })
            .await;
            match published {
                Ok(Ok(release)) => json(StatusCode::CREATED, &json!(release)),
                Ok(Err(e)) => failed(&e),
                Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("publish: {e}")),
            }
        }
        (&Method::GET, []) => match fleet.list(&project) {
            Ok(list) => json(StatusCode::OK, &json!(list)),
            Err(e) => failed(&e),
        },
        (&Method::GET, [name]) => {
            let Some(name) = percent_decode(name) else {
                return json_error(StatusCode::BAD_REQUEST, "the name is not valid UTF-8");
            };
            match fleet.status(&project, &name, &connected(&state.sessions)) {
                Ok(agents) => json(StatusCode::OK, &json!(agents)),
                Err(e) => failed(&e),
            }
        }
        (&Method::POST, [name, action @ ("promote" | "rollback" | "remove")]) => {
            let Some(name) = percent_decode(name) else {
                return json_error(StatusCode::BAD_REQUEST, "the name is not valid UTF-8");
            };
            let action = match *action {
                "promote" => Action::Promote,
                "rollback" => Action::Rollback,
                _ => Action::Remove,
            };
            let done =
                tokio::task::spawn_blocking(move || fleet.act(&project, &name, action, now)).await;
            match done {
                Ok(Ok(releases)) => json(StatusCode::OK, &json!(releases)),
                Ok(Err(e)) => failed(&e),
                Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (_, [] | [_] | [_, "promote" | "rollback" | "remove"]) => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this endpoint")
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

type Parsed = (Vec<u8>, String, Option<String>, Option<String>, Option<CanaryPlan>);

/// Checks the body of a publish request; the error is the client's mistake.
fn parse_publish(bytes: &[u8]) -> Result<Parsed, String> {
    let body: PublishBody =
        serde_json::from_slice(bytes).map_err(|e| format!("request body: {e}"))?;
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(body.wasm.as_bytes())
        .map_err(|e| format!("wasm: not base64: {e}"))?;
    let canary = match (body.canary_percent, body.watch_ms) {
        (None, None) if !body.hold => None,
        (None, _) => return Err("watch_ms and hold need canary_percent".into()),
        (Some(p), _) if !(1..=100).contains(&p) => {
            return Err(format!("canary_percent must be between 1 and 100, not {p}"));
        }
        (Some(percent), watch) => {
            let watch = watch.map_or(DEFAULT_WATCH, Duration::from_millis);
            if watch < MIN_WATCH || watch > MAX_WATCH {
                return Err(format!(
                    "watch_ms must be between {} and {} (canary agents report every {} s)",
                    MIN_WATCH.as_millis(),
                    MAX_WATCH.as_millis(),
                    super::deliver::CANARY_POLL.as_secs()
                ));
            }
            Some(CanaryPlan {
                percent,
                watch_ms: u64::try_from(watch.as_millis()).unwrap_or(u64::MAX),
                hold: body.hold,
            })
        }
    };
    let label = body.file.unwrap_or_else(|| "component".into());
    Ok((wasm, label, body.manifest, body.signature, canary))
}

fn failed(e: &FleetError) -> HttpResponse {
    use crate::cluster::catalog::SharedError;
    let status = match e {
        FleetError::UnknownProject(_) | FleetError::Catalog(CatalogError::NotFound(_)) => {
            StatusCode::NOT_FOUND
        }
        FleetError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        FleetError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        FleetError::Catalog(CatalogError::Refused(_)) => StatusCode::CONFLICT,
        FleetError::Catalog(_) => StatusCode::INTERNAL_SERVER_ERROR,
        FleetError::Shared(SharedError::Conflict) => StatusCode::CONFLICT,
        FleetError::Shared(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_error(status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_bodies_are_checked() {
        let ok =
            parse_publish(br#"{"wasm":"AAEC","canary_percent":10,"watch_ms":5000,"hold":true}"#)
                .expect("valid");
        assert_eq!(ok.0, vec![0, 1, 2]);
        assert_eq!(ok.4, Some(CanaryPlan { percent: 10, watch_ms: 5000, hold: true }));
        let plain = parse_publish(br#"{"wasm":""}"#).expect("valid");
        assert_eq!(plain.4, None);
        for (bad, says) in [
            (r#"{"wasm":"%%%"}"#, "base64"),
            (r#"{"wasm":"","canary_percent":0}"#, "between 1 and 100"),
            (r#"{"wasm":"","canary_percent":101}"#, "between 1 and 100"),
            (r#"{"wasm":"","watch_ms":100}"#, "need canary_percent"),
            (r#"{"wasm":"","hold":true}"#, "need canary_percent"),
            (r#"{"wasm":"","canary_percent":5,"watch_ms":0}"#, "watch_ms"),
            (r#"{"wasm":"","canary_percent":5,"watch_ms":4999}"#, "between 5000 and"),
            (r#"{"wasm":"","colour":1}"#, "unknown field"),
            ("nonsense", "request body"),
        ] {
            let err = parse_publish(bad.as_bytes()).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
