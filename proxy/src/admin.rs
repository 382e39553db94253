//! The admin API under `/api/`, behind `Authorization: Bearer <[http] token>`:
//!
//! - `GET /api/agents`: the connected agents, their projects, identities
//!   and session details.
//! - `POST /api/agents/{agent}/request` with `{"project": "...", "command":
//!   "...", "args": [...], "timeout_ms": 5000}` (`project` optional when the
//!   name is connected in one project only): a control request to that
//!   agent; answers `{"agent", "command", "ok": <the agent's JSON result>}`
//!   or `{"error": "..."}` with 404 (not connected), 409 (the name is
//!   connected in several projects), 502 (the agent failed or went away),
//!   503 (too many requests outstanding) or 504 (no answer in time).
//! - `GET /api/bindings[?project=P]`: which identity owns each agent name.
//! - `POST /api/projects/{project}/agents/{agent}/forget`: release a name
//!   (the next identity to prove itself under it gets it).
//! - `POST /api/projects/{project}/agents/{agent}/approve`: let a name that
//!   waits in a project with `enroll = "closed"` connect.
//! - `GET /api/query?…`: stored values as JSON lines, streamed
//!   ([`crate::read_api`]).
//! - `/api/projects/{project}/collectors…`: the collector catalog
//!   ([`crate::fleet::api`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::config::Token;
use crate::http::{HttpResponse, HttpState, json, json_error};
use crate::sessions::{DEFAULT_REQUEST_TIMEOUT, RequestError};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Time a client has to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `timeout_ms` a control request may ask for.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The body of `POST /api/agents/{agent}/request`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlBody {
    project: Option<String>,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    timeout_ms: Option<u64>,
}

/// Whether `headers` carry `Authorization: Bearer <token>` (the scheme is
/// case-insensitive; the token is compared in constant time).
pub fn authorized(token: &Token, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(AUTHORIZATION) else { return false };
    let bytes = value.as_bytes();
    match (bytes.get(..7), bytes.get(7..)) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            token.matches(rest.trim_ascii())
        }
        _ => false,
    }
}

/// Answers a request whose path is under `/api/`.
pub async fn handle(state: &HttpState, req: Request<Incoming>) -> HttpResponse {
    let Some(token) = &state.token else {
        return json_error(StatusCode::FORBIDDEN, "the admin API is off: [http] has no token");
    };
    if !authorized(token, req.headers()) {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> =
        path.trim_start_matches("/api").trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["agents"]) => {
            let agents = match &state.cluster {
                Some(cluster) => match crate::cluster::control::agents(cluster).await {
                    Ok(all) => all,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot ask the cluster's proxies for their agents; listing this proxy's");
                        state.sessions.agents()
                    }
                },
                None => state.sessions.agents(),
            };
            json(StatusCode::OK, &json!(agents))
        }
        (&Method::POST, ["agents", agent, "request"]) => control(state, agent, req).await,
        (_, ["projects", project, "collectors", rest @ ..]) => {
            crate::fleet::api::handle(state, project, rest, req).await
        }
        (&Method::GET, ["query"]) => crate::read_api::handle(state, req.uri().query()).await,
        (&Method::GET, ["bindings"]) => {
            let project = req.uri().query().and_then(|q| q.strip_prefix("project="));
            let project = project.and_then(percent_decode);
            json(StatusCode::OK, &json!(state.bindings.list(project.as_deref())))
        }
        (
            &Method::POST,
            ["projects", project, "agents", agent, action @ ("forget" | "approve")],
        ) => binding(state, project, agent, action),
        (_, ["agents"] | ["agents", _, "request"] | ["bindings"] | ["query"]) => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this endpoint")
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, HttpResponse> {
    read_body_up_to(req, MAX_BODY, BODY_TIMEOUT).await
}

/// The request's body, refused over `limit` bytes or when slower than `timeout`.
pub(crate) async fn read_body_up_to(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, HttpResponse> {
    let body = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, body).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over {limit} bytes"),
        )),
        Ok(Err(e)) => Err(json_error(StatusCode::BAD_REQUEST, &format!("request body: {e}"))),
        Err(_) => Err(json_error(StatusCode::REQUEST_TIMEOUT, "request body too slow")),
    }
}

fn binding(state: &HttpState, project: &str, agent: &str, action: &str) -> HttpResponse {
    let (Some(project), Some(agent)) = (percent_decode(project), percent_decode(agent)) else {
        return json_error(StatusCode::BAD_REQUEST, "names must be valid UTF-8");
    };
    let done = match action {
        "forget" => state.bindings.forget(&project, &agent),
        _ => state.bindings.approve(&project, &agent),
    };
    match done {
        Ok(true) => {
            tracing::info!(%project, %agent, action, "agent identity binding changed by the admin API");
            json(StatusCode::OK, &json!({ "project": project, "agent": agent, "done": action }))
        }
        Ok(false) => json_error(
            StatusCode::NOT_FOUND,
            &match action {
                "forget" => format!("agent `{agent}` has no binding in project `{project}`"),
                _ => format!("agent `{agent}` does not await approval in project `{project}`"),
            },
        ),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A control request as the admin API received it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlCall {
    /// The agent's project, when given.
    pub project: Option<String>,
    /// The agent, percent-decoded from the path.
    pub agent: String,
    /// The command.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// Checks the agent path segment and the JSON body of
/// `POST /api/agents/{agent}/request`; the error is the client's mistake.
pub fn parse_control(segment: &str, body: &[u8]) -> Result<ControlCall, String> {
    let agent = percent_decode(segment).ok_or("the agent name is not valid UTF-8")?;
    let body: ControlBody =
        serde_json::from_slice(body).map_err(|e| format!("request body: {e}"))?;
    let timeout = match body.timeout_ms.map(Duration::from_millis) {
        None => DEFAULT_REQUEST_TIMEOUT,
        Some(t) if t.is_zero() || t > MAX_REQUEST_TIMEOUT => {
            return Err(format!(
                "timeout_ms must be between 1 and {}",
                MAX_REQUEST_TIMEOUT.as_millis()
            ));
        }
        Some(t) => t,
    };
    Ok(ControlCall {
        project: body.project,
        agent,
        command: body.command,
        args: body.args,
        timeout,
    })
}

async fn control(state: &HttpState, segment: &str, req: Request<Incoming>) -> HttpResponse {
    let bytes = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ControlCall { project, agent, command, args, timeout } =
        match parse_control(segment, &bytes) {
            Ok(c) => c,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
        };
    let agent = agent.as_str();
    let project = project.as_deref();
    let result = match &state.cluster {
        Some(cluster) => {
            let sessions = &state.sessions;
            crate::cluster::control::request(
                cluster, sessions, project, agent, &command, args, timeout,
            )
            .await
        }
        None => state.sessions.request(project, agent, &command, args, timeout).await,
    };
    let (status, answer) = match result {
        Ok(Ok(text)) => {
            // The agent answers with a JSON document; anything else is passed on as a string.
            let ok = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            (StatusCode::OK, json!({ "agent": agent, "command": command, "ok": ok }))
        }
        Ok(Err(message)) => (
            StatusCode::BAD_GATEWAY,
            json!({ "agent": agent, "command": command, "error": message }),
        ),
        Err(e) => {
            let status = match &e {
                RequestError::NotConnected(_) => StatusCode::NOT_FOUND,
                RequestError::Ambiguous { .. } => StatusCode::CONFLICT,
                RequestError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                RequestError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                RequestError::SessionEnded(_) => StatusCode::BAD_GATEWAY,
            };
            (status, json!({ "agent": agent, "command": command, "error": e.to_string() }))
        }
    };
    tracing::info!(%agent, %command, %status, "admin control request");
    json(status, &answer)
}

/// `%XX`-decodes a path segment; `None` if the result is not UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("valid header"));
        h
    }

    #[test]
    fn bearer_token_check() {
        let token = Token::new("0123456789abcdef".into()).expect("valid");
        assert!(authorized(&token, &headers("Bearer 0123456789abcdef")));
        assert!(authorized(&token, &headers("bearer 0123456789abcdef")));
        assert!(!authorized(&token, &headers("Bearer 0123456789abcdeg")));
        assert!(!authorized(&token, &headers("Bearer 0123456789abcde")));
        assert!(!authorized(&token, &headers("Basic 0123456789abcdef")));
        assert!(!authorized(&token, &headers("0123456789abcdef")));
        assert!(!authorized(&token, &headers("Bearer")));
        assert!(!authorized(&token, &HeaderMap::new()));
    }

    #[test]
    fn control_calls_are_checked() {
        let call = parse_control(
            "web%2d01",
            br#"{"project":"shop","command":"run","args":["cpu"],"timeout_ms":500}"#,
        );
        assert_eq!(
            call,
            Ok(ControlCall {
                project: Some("shop".into()),
                agent: "web-01".into(),
                command: "run".into(),
                args: vec!["cpu".into()],
                timeout: Duration::from_millis(500),
            })
        );
        let defaults = parse_control("a", br#"{"command":"info"}"#).expect("valid");
        assert_eq!((defaults.args.len(), defaults.timeout), (0, DEFAULT_REQUEST_TIMEOUT));
        let err = |seg: &str, body: &[u8]| parse_control(seg, body).expect_err("refused");
        assert!(err("%ff", br#"{"command":"info"}"#).contains("UTF-8"));
        assert!(err("a", b"{").contains("request body"));
        assert!(err("a", br#"{"command":"info","colour":1}"#).contains("unknown field"));
        assert!(err("a", br#"{"args":[]}"#).contains("missing field `command`"));
        assert!(err("a", br#"{"command":"info","timeout_ms":0}"#).contains("timeout_ms"));
        assert!(err("a", br#"{"command":"info","timeout_ms":300001}"#).contains("timeout_ms"));
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("web-01").as_deref(), Some("web-01"));
        assert_eq!(percent_decode("a%20b%2f").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
