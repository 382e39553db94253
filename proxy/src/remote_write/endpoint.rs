//! One remote-write endpoint as a [`Deliver`] backend: a stored record's
//! numeric values become [`Point`]s, a batch of them one request. 2xx is
//! accepted; 5xx, 429 and network errors are retried (after the server's
//! `Retry-After` if it sent one); any other 4xx refuses the batch for good,
//! counted and logged.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{Sample, Value};

use super::{RemoteWrite, wire};
use crate::config::RemoteWriteConfig;
use crate::descriptors::{Descriptors, Names};
use crate::http_client::{Client, ClientError};
use crate::series;
use crate::store::StoredBatch;
use crate::tail::follow::{Deliver, Sent};

pub use wire::Point;

/// How much of an error response body is logged.
const LOGGED_BODY: usize = 256;

/// The backend of one endpoint's follower.
#[derive(Debug)]
pub struct Endpoint {
    pub(super) shared: Arc<RemoteWrite>,
    pub(super) config: RemoteWriteConfig,
    pub(super) client: Client,
    pub(super) descriptors: Arc<Descriptors>,
    /// Names worked out so far.
    pub(super) names: Mutex<Names>,
}

fn sorted_labels(project: &str, agent: &str, s: &Sample) -> Arc<[(String, String)]> {
    let mut labels = series::labels(project, agent, s);
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    labels.into()
}

impl Endpoint {
    fn request(&self, batch: &[Point]) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let path = self.config.url.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(USER_AGENT, concat!("wasmtap-proxy/", env!("CARGO_PKG_VERSION")))
            .header("X-Prometheus-Remote-Write-Version", HeaderValue::from_static("0.1.0"));
        for (name, value) in &self.config.headers {
            builder = builder.header(name, value.0.clone());
        }
        builder.body(Full::new(Bytes::from(wire::body(batch))))
    }

    fn refused(&self, status: StatusCode, body: &str, values: usize) -> Sent {
        self.shared.stats.dropped_rejected.fetch_add(values as u64, Ordering::Relaxed);
        let endpoint = &self.shared.origin;
        tracing::warn!(%endpoint, %status, response = %body, values, "remote write refused a batch; dropped");
        Sent::Refused
    }
}

impl Deliver for Endpoint {
    type Item = Point;

    fn items(&self, project: &ProjectId, record: &StoredBatch, out: &mut Vec<Point>) {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        for sample in &record.batch.samples {
            let labels = sorted_labels(project.as_str(), &record.agent, sample);
            let time_ms = i64::try_from(sample.time_ms).unwrap_or(i64::MAX);
            for (field, value) in &sample.values {
                let (counter, value) = match value {
                    Value::Gauge(v) => (false, *v),
                    Value::Counter(v) => (true, *v),
                    Value::Text(_) => continue,
                };
                let d = &self.descriptors;
                let (name, _) = names.get(d, project.as_str(), &sample.collector, field, counter);
                out.push(Point { name, labels: labels.clone(), value, time_ms });
            }
        }
    }

    async fn send(&mut self, batch: &[Point]) -> Sent {
        let request = match self.request(batch) {
            Ok(r) => r,
            Err(e) => return self.refused(StatusCode::BAD_REQUEST, &e.to_string(), batch.len()),
        };
        let retry = |why: String, after| {
            self.shared.stats.retries.fetch_add(1, Ordering::Relaxed);
            Sent::Retry(why, after)
        };
        match self.client.send(request, self.config.timeout).await {
            Ok(r) if r.status.is_success() => {
                self.shared.stats.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Sent::Accepted
            }
            Ok(r) => {
                let mut body = String::from_utf8_lossy(&r.body).into_owned();
                if let Some((cut, _)) = body.char_indices().nth(LOGGED_BODY) {
                    body.truncate(cut);
                }
                if r.status.is_server_error() || r.status == StatusCode::TOO_MANY_REQUESTS {
                    retry(format!("{}: {body}", r.status), r.retry_after)
                } else {
                    self.refused(r.status, &body, batch.len())
                }
            }
            Err(e @ (ClientError::Url(_) | ClientError::Body(_))) => {
                self.refused(StatusCode::BAD_REQUEST, &e.to_string(), batch.len())
            }
            Err(e) => retry(e.to_string(), None),
        }
    }
}
