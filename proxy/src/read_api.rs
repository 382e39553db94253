//! `GET /api/query` (admin token): what `wasmtap-proxy query --json`
//! prints, over HTTP, streamed as it is read: one JSON object per value
//! and line (`application/x-ndjson`).
//!
//! Parameters, all optional, each as the `query` flag of the same name:
//! `project`, `agent`, `collector`, `label` (`key=value`, repeatable),
//! `field`, `since` and `until` (RFC 3339, or a duration ago such as
//! `15m`), and `rate` (`true` or `false`: counters as per-second rates,
//! as `query --rate`). Values are percent-encoded (`+` is a space). An
//! unknown parameter is a 400. Only what the store has committed is read.
//!
//! The query runs on a blocking thread and hands the body over in pieces
//! of about [`PIECE`] bytes through a small queue, so a slow client slows
//! the reading instead of filling memory, and a client that goes away
//! stops it. At most [`MAX_QUERIES`] run at once (503 beyond). An error
//! after the answer started (a store file that cannot be read) ends the
//! body with a line `{"error": "…"}`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::{Semaphore, mpsc};
use wasmtap_protocol::access_key::ProjectId;

use crate::admin::percent_decode;
use crate::display;
use crate::http::{HttpResponse, HttpState, json_error};
use crate::query::{self, Filter, scan};
use crate::store::Store;

/// Queries running at once.
pub const MAX_QUERIES: usize = 4;
/// Bytes handed to the connection at a time.
pub const PIECE: usize = 64 << 10;
/// Pieces waiting for a slow client, at most.
const QUEUE: usize = 4;

/// What to read: the projects and the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Only this project (every one otherwise).
    pub project: Option<ProjectId>,
    /// The filter.
    pub filter: Filter,
    /// Counters as per-second rates ([`query::rate`]).
    pub rate: bool,
}

fn decode(text: &str) -> Option<String> {
    percent_decode(&text.replace('+', " "))
}

/// Reads the query string of `GET /api/query`; the error is the client's mistake.
pub fn parse(query_string: Option<&str>, now: std::time::SystemTime) -> Result<Request, String> {
    let mut r = Request { project: None, filter: Filter::default(), rate: false };
    for pair in query_string.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value).ok_or_else(|| format!("{key}: not valid UTF-8"))?;
        let time = |v: &str| query::parse_time(v, now).map_err(|e| e.to_string());
        let f = &mut r.filter;
        match key {
            "project" => {
                r.project = Some(ProjectId::new(&value).map_err(|e| format!("project: {e}"))?)
            }
            "agent" => f.agent = Some(value),
            "collector" => f.collector = Some(value),
            "label" => f.labels.push(query::parse_label(&value).map_err(|e| e.to_string())?),
            "field" => f.field = Some(value),
            "since" => f.since_ms = Some(time(&value)?),
            "until" => f.until_ms = Some(time(&value)?),
            "rate" => {
                r.rate = match value.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    v => return Err(format!("rate: {v:?} is neither true nor false")),
                }
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(r)
}

/// A body fed piece by piece from a queue.
struct Streamed(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

fn limiter() -> &'static Arc<Semaphore> {
    static LIMIT: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    LIMIT.get_or_init(|| Arc::new(Semaphore::new(MAX_QUERIES)))
}

/// Answers `GET /api/query` with `query_string`.
pub async fn handle(state: &HttpState, query_string: Option<&str>) -> HttpResponse {
    let request = match parse(query_string, std::time::SystemTime::now()) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let Ok(permit) = limiter().clone().try_acquire_owned() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{MAX_QUERIES} queries are running; try again"),
        );
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        run(&store, &request, &tx);
    });
    let mut r = HttpResponse::new(Streamed(rx).boxed());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r
}

/// Runs `request` over `store`, sending the lines in pieces to `tx`.
fn run(store: &Store, request: &Request, tx: &mpsc::Sender<Bytes>) {
    let projects = match &request.project {
        Some(p) => Ok(vec![p.clone()]),
        None => store.projects(),
    };
    let marks = store.commits().snapshot().marks;
    let mut piece = Vec::with_capacity(PIECE);
    let mut write = |found: &scan::Found<'_>| {
        display::write_json_lines(found, &mut piece);
        if piece.len() >= PIECE {
            let full = std::mem::replace(&mut piece, Vec::with_capacity(PIECE));
            tx.blocking_send(Bytes::from(full)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        }
        Ok(())
    };
    let mut rates = query::rate::Rates::default();
    let mut emit = |found: &scan::Found<'_>| {
        if request.rate { rates.emit(found, &mut write) } else { write(found) }
    };
    let done = projects
        .map_err(scan::QueryError::from)
        .and_then(|p| scan::projects(store.dir(), &p, &request.filter, Some(&marks), &mut emit));
    match done {
        Ok(_) => {}
        Err(scan::QueryError::Output(_)) => return,
        Err(e) => {
            tracing::warn!(error = %e, "a query over HTTP failed");
            let line = serde_json::json!({ "error": e.to_string() });
            piece.extend_from_slice(format!("{line}\n").as_bytes());
        }
    }
    if !piece.is_empty() {
        let _ = tx.blocking_send(Bytes::from(piece));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn parameters_are_the_query_flags() {
        let now = UNIX_EPOCH + Duration::from_secs(3_600);
        let r = parse(
            Some("project=shop&agent=web+1&label=cpu%3D0&label=mode=all&field=user&since=15m&until=1970-01-01T00:59:00Z"),
            now,
        )
        .expect("valid");
        assert_eq!(r.project, Some(ProjectId::new("shop").expect("valid")));
        let f = r.filter.clone();
        assert_eq!(f.agent.as_deref(), Some("web 1"));
        assert_eq!(f.labels, [("cpu".into(), "0".into()), ("mode".into(), "all".into())]);
        assert_eq!((f.since_ms, f.until_ms), (Some(2_700_000), Some(3_540_000)));
        assert_eq!(parse(None, now).expect("valid").filter, Filter::default());
        assert!(!r.rate && parse(Some("rate=true"), now).expect("valid").rate);
        assert!(parse(Some("rate"), now).expect("valid").rate);
        assert!(!parse(Some("rate=0"), now).expect("valid").rate);
        for bad in [
            "colour=red",
            "label=nokey",
            "since=yesterday",
            "project=Bad_Name",
            "agent=%ff",
            "rate=x",
        ] {
            assert!(parse(Some(bad), now).is_err(), "{bad}");
        }
    }

    use std::time::Duration as D;

    use hyper::Request as HttpRequest;
    use hyper::header::AUTHORIZATION;
    use wasmtap_protocol::message::{Batch, Sample, Value};

    use crate::config::Token;
    use crate::http_client::Client;
    use crate::store::{StoreConfig, StoredBatch};

    const TOKEN: &str = "0123456789abcdef0123";

    fn batch(seq: u64) -> StoredBatch {
        let sample = |cpu: u64| Sample {
            collector: "cpu".into(),
            time_ms: 1_795_651_200_000 + seq * 1_000,
            labels: vec![("cpu".into(), cpu.to_string())].into(),
            // cpu 0's value counts up one a second, the others are gauges.
            values: vec![(
                "user".into(),
                if cpu == 0 {
                    Value::Counter(seq as f64)
                } else {
                    Value::Gauge(seq as f64 + cpu as f64 / 10.0)
                },
            )],
        };
        StoredBatch {
            agent: "web-1".into(),
            session: 1,
            received_ms: 1,
            batch: Batch { seq, samples: (0..50).map(sample).collect() },
        }
    }

    async fn get(
        client: &mut Client,
        path: &str,
        token: Option<&str>,
    ) -> crate::http_client::Response {
        let mut req = HttpRequest::get(path);
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(http_body_util::Full::new(Bytes::new())).expect("request");
        client.send(req, D::from_secs(30)).await.expect("answer")
    }

    #[tokio::test]
    async fn the_token_holder_gets_the_lines_of_query_streamed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            StoreConfig { segment_bytes: 4_000, retention: None, ..StoreConfig::default() };
        let store = Arc::new(Store::open_with(dir.path(), config).expect("open"));
        let shop = ProjectId::new("shop").expect("valid");
        let writer = store.clone();
        tokio::task::spawn_blocking(move || {
            for seq in 1..=100 {
                writer.append(&shop, batch(seq)).expect("append");
            }
            writer.settle();
        })
        .await
        .expect("written");
        let state = Arc::new(HttpState {
            token: Some(Token::new(TOKEN.into()).expect("token")),
            sessions: Arc::default(),
            bindings: Arc::new(crate::bindings::Bindings::open(dir.path()).expect("bindings")),
            latest: Arc::new(crate::latest::Latest::new(10, D::from_secs(60), Arc::default())),
            remote_write: Vec::new(),
            store: store.clone(),
            gate: crate::gate::Gate::new(crate::config::Limits::default()),
            fleet: Arc::new(crate::fleet::Fleet::new(dir.path(), vec!["shop".into()], 1 << 20)),
            cluster: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::http::serve(listener, state, shutdown));
        let uri: hyper::Uri = format!("http://{addr}/").parse().expect("uri");
        let mut client = Client::new(&uri, None).expect("client");

        let all = get(&mut client, "/api/query?project=shop", Some(TOKEN)).await;
        assert_eq!(all.status, StatusCode::OK);
        let lines = String::from_utf8(all.body.to_vec()).expect("utf-8");
        assert_eq!(lines.lines().count(), 100 * 50);
        assert!(all.body.len() > 2 * PIECE, "sent in several pieces");
        // The same lines as the query command prints.
        let mut expected = Vec::new();
        let mut emit = |f: &scan::Found<'_>| {
            display::write_json_lines(f, &mut expected);
            Ok(())
        };
        let shop = ProjectId::new("shop").expect("valid");
        scan::projects(dir.path(), &[shop], &Filter::default(), None, &mut emit).expect("query");
        assert_eq!(all.body.as_ref(), &expected[..]);

        // Rates: cpu 0's counter went up one a second; its first value has none.
        let rated = get(&mut client, "/api/query?label=cpu%3D0&rate=true", Some(TOKEN)).await;
        let rows: Vec<serde_json::Value> = String::from_utf8(rated.body.to_vec())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(rows.len(), 99);
        assert!(rows.iter().all(|r| r["field"] == "user_per_second" && r["value"] == 1.0));

        let path = "/api/query?label=cpu%3D7&since=2026-11-26T00:00:11Z&until=2026-11-26T00:00:21Z";
        let some = get(&mut client, path, Some(TOKEN)).await;
        let values: Vec<serde_json::Value> = String::from_utf8(some.body.to_vec())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let seqs: Vec<u64> = values.iter().map(|v| v["seq"].as_u64().expect("seq")).collect();
        assert_eq!(seqs, (11..21).collect::<Vec<_>>());
        assert!(values.iter().all(|v| v["labels"]["cpu"] == "7"));

        assert_eq!(get(&mut client, "/api/query", None).await.status, StatusCode::UNAUTHORIZED);
        let bad = get(&mut client, "/api/query?colour=red", Some(TOKEN)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        store.close();
    }
}
