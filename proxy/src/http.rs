//! The HTTP listener (`[http] listen`): `/metrics`, `/metrics/proxy` and `/healthz` for
//! anyone, the admin API under `/api/` (see [`crate::admin`]) for holders of
//! the bearer token. HTTP/1.1 only, bounded: connections, header read time,
//! request body size.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Token;
use crate::exposition;
use crate::latest::Latest;
use crate::remote_write::{self, RemoteWrite};
use crate::sessions::Sessions;
use crate::store::Store;

/// Connections served at once; further ones are closed at accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener serves.
#[derive(Debug)]
pub struct HttpState {
    /// The admin API's bearer token; `None` turns `/api/` off.
    pub token: Option<Token>,
    /// Connected agents, for the admin API.
    pub sessions: Arc<Sessions>,
    /// Which identity owns which agent name, for the admin API.
    pub bindings: Arc<crate::bindings::Bindings>,
    /// The latest values, for `/metrics`.
    pub latest: Arc<Latest>,
    /// Remote-write endpoints, whose counters `/metrics` shows.
    pub remote_write: Vec<Arc<RemoteWrite>>,
    /// The store, whose damage counters `/metrics` shows.
    pub store: Arc<Store>,
    /// The admission gate, whose counters `/metrics` shows.
    pub gate: crate::gate::Gate,
    /// Collector distribution, for the admin API.
    pub fleet: Arc<crate::fleet::Fleet>,
    /// Under `[cluster]`: its counters for `/metrics`, and the other
    /// proxies' agents for the admin API.
    pub cluster: Option<crate::cluster::Cluster>,
}

/// A response body: held in memory, or streamed.
pub type Body = BoxBody<Bytes, Infallible>;
/// A response.
pub type HttpResponse = Response<Body>;

/// A response with `status`, `content_type` and `body`.
pub fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    response(status, "application/json", Bytes::from(format!("{value}\n")))
}

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message }))
}

/// Serves HTTP on `listener` until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_CONNECTIONS, "too many http connections; closing");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
}

async fn route(state: &Arc<HttpState>, req: Request<Incoming>) -> HttpResponse {
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return crate::admin::handle(state, req).await;
    }
    let get = req.method() == Method::GET;
    match path {
        "/healthz" if get => response(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/metrics" | "/metrics/proxy" if get => {
            let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
            let agents = path == "/metrics";
            metrics(state, exposition::Format::negotiate(accept), agents).await
        }
        "/healthz" | "/metrics" | "/metrics/proxy" => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
            r
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `/metrics`: the agents' latest values (with `agents`) and the proxy's
/// own families; `/metrics/proxy` has only the latter, cheap to scrape
/// often whatever the size of the fleet.
async fn metrics(state: &Arc<HttpState>, format: exposition::Format, agents: bool) -> HttpResponse {
    let state = state.clone();
    // Rendering a large table is CPU work; keep it off the async workers.
    let text = tokio::task::spawn_blocking(move || {
        let mut text = exposition::Exposition::new(format);
        if agents {
            state.latest.render(&mut text);
        } else {
            state.latest.render_own(&mut text);
        }
        remote_write::render_families(&state.remote_write, &mut text);
        state.store.damage().render(&mut text);
        state.store.usage().render(&mut text);
        state.gate.render(&mut text);
        state.fleet.render(&mut text);
        if let Some(cluster) = &state.cluster {
            cluster.stats().render(&mut text);
        }
        text.finish()
    })
    .await;
    match text {
        Ok(text) => response(StatusCode::OK, format.content_type(), Bytes::from(text)),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
