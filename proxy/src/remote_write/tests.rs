use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{Batch, Sample, Value};

use super::*;
use crate::store::StoredBatch;

/// What the test endpoint saw: per request, when it came and how many points it held.
type Seen = Arc<StdMutex<Vec<(Instant, usize)>>>;

/// Points in a remote-write body (one time series each).
fn points(body: &[u8]) -> usize {
    let raw = snap::raw::Decoder::new().decompress_vec(body).expect("snappy");
    let (mut at, mut n) = (0, 0);
    while at < raw.len() {
        assert_eq!(raw[at], 0x0a, "a TimeSeries field");
        let (mut len, mut shift) = (0usize, 0);
        at += 1;
        loop {
            let b = raw[at];
            at += 1;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        at += len;
        n += 1;
    }
    n
}

/// A plain HTTP endpoint answering with `script` in turn (then 503 while
/// `down`, else 204), noting each request.
async fn endpoint(
    script: Vec<(StatusCode, Option<&'static str>)>,
    down: Arc<AtomicBool>,
) -> (hyper::Uri, Seen) {
    let seen: Seen = Arc::default();
    let script = Arc::new(StdMutex::new(VecDeque::from(script)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, script, down) = (noted.clone(), script.clone(), down.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (seen, script, down) = (seen.clone(), script.clone(), down.clone());
                    async move {
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        seen.lock().expect("lock").push((Instant::now(), points(&body)));
                        let scripted = script.lock().expect("lock").pop_front();
                        let (status, retry) = scripted.unwrap_or(if down.load(Ordering::SeqCst) {
                            (StatusCode::SERVICE_UNAVAILABLE, None)
                        } else {
                            (StatusCode::NO_CONTENT, None)
                        });
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = status;
                        if let Some(v) = retry {
                            r.headers_mut().insert("retry-after", HeaderValue::from_static(v));
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/api/v1/write").parse().expect("uri"), seen)
}

fn config(url: hyper::Uri) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url,
        tls: None,
        headers: Vec::new(),
        batch_size: 10,
        batch_wait: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

/// Stores a batch of `values` gauges (plus a text value, never sent),
/// received 5 s ago.
async fn store_batch(store: &Store, seq: u64, values: usize) {
    let mut fields = vec![("state".into(), Value::Text("up".into()))];
    fields.extend((0..values).map(|i| (format!("f{i}").into(), Value::Gauge(i as f64))));
    let record = StoredBatch {
        agent: "a".into(),
        session: 1,
        received_ms: crate::now_ms() - 5_000,
        batch: Batch {
            seq,
            samples: vec![Sample {
                collector: "load".into(),
                time_ms: 1_700_000_000_000 + seq,
                labels: Vec::new().into(),
                values: fields,
            }],
        },
    };
    let project = ProjectId::new("p").expect("valid");
    let stored = store.submit(&project, Arc::new(record)).await.expect("answer");
    assert_eq!(stored.expect("stored"), crate::store::Appended::Stored);
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sizes(seen: &Seen) -> Vec<usize> {
    seen.lock().expect("lock").iter().map(|(_, n)| *n).collect()
}

#[tokio::test]
async fn retry_after_is_honoured_over_the_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let down = Arc::new(AtomicBool::new(false));
    let (url, seen) = endpoint(vec![(StatusCode::TOO_MANY_REQUESTS, Some("1"))], down).await;
    let (rw, follower) = RemoteWrite::open(&store, config(url), Default::default()).expect("open");
    let (_stop, stop) = watch::channel(false);
    tokio::spawn(follower.run(stop));
    store_batch(&store, 1, 1).await;
    until("the value to be sent", || rw.stats().sent.load(Ordering::Relaxed) == 1).await;
    let times: Vec<Instant> = seen.lock().expect("lock").iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 2, "one refusal, one success");
    let waited = times[1] - times[0];
    // The backoff alone would have retried within 20 ms.
    assert!(waited >= Duration::from_millis(900), "retried after {waited:?}");
    assert_eq!(rw.stats().retries.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn without_retry_after_the_backoff_applies_and_4xx_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let script = vec![(StatusCode::SERVICE_UNAVAILABLE, None), (StatusCode::BAD_REQUEST, None)];
    let (url, seen) = endpoint(script, Arc::default()).await;
    let (rw, follower) = RemoteWrite::open(&store, config(url), Default::default()).expect("open");
    let (_stop, stop) = watch::channel(false);
    tokio::spawn(follower.run(stop));
    store_batch(&store, 1, 1).await;
    until("the batch to be refused", || rw.stats().dropped_rejected.load(Ordering::Relaxed) == 1)
        .await;
    let times: Vec<Instant> = seen.lock().expect("lock").iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] < Duration::from_millis(900), "backoff, not a long wait");
    assert_eq!(rw.stats().sent.load(Ordering::Relaxed), 0);
    until("no lag once refused for good", || rw.progress().lag_values() == 0).await;
}

#[tokio::test]
async fn a_new_endpoint_starts_at_the_end_then_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (url, seen) = endpoint(Vec::new(), Arc::default()).await;
    store_batch(&store, 1, 3).await; // before the endpoint existed: not sent
    let (rw, follower) =
        RemoteWrite::open(&store, config(url.clone()), Default::default()).expect("open");
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(follower.run(stop));
    store_batch(&store, 2, 2).await;
    until("the new values sent", || rw.stats().sent.load(Ordering::Relaxed) == 2).await;
    stop_tx.send(true).expect("stop");
    running.await.expect("stopped");
    store_batch(&store, 3, 4).await; // while it was stopped
    let (rw, follower) =
        RemoteWrite::open(&store, config(url), Default::default()).expect("reopen");
    assert_eq!(rw.progress().lag_values(), 0, "counted once the follower runs");
    let (_stop, stop) = watch::channel(false);
    tokio::spawn(follower.run(stop));
    until("the values stored meanwhile sent", || rw.stats().sent.load(Ordering::Relaxed) == 4)
        .await;
    until("no lag", || rw.progress().lag_values() == 0).await;
    assert_eq!(sizes(&seen).iter().sum::<usize>(), 6, "nothing twice: {:?}", sizes(&seen));
}

#[tokio::test]
async fn a_batch_in_flight_when_the_proxy_died_is_resent_alone_then_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let down = Arc::new(AtomicBool::new(true));
    let (url, seen) = endpoint(Vec::new(), down.clone()).await;
    let (rw, follower) =
        RemoteWrite::open(&store, config(url.clone()), Default::default()).expect("open");
    let (_stop, stop) = watch::channel(false);
    let running = tokio::spawn(follower.run(stop));
    for seq in 1..=3 {
        store_batch(&store, seq, 4).await;
    }
    until("a batch of 10 tried", || sizes(&seen).contains(&10)).await;
    until("the lag counted", || rw.progress().lag_values() == 12).await;
    assert!(rw.progress().lag_seconds(crate::now_ms()) >= 5.0);
    running.abort(); // as kill -9 would
    let _ = running.await;
    store_batch(&store, 4, 4).await;
    let tried = sizes(&seen).len();
    down.store(false, Ordering::SeqCst);
    let (rw, follower) =
        RemoteWrite::open(&store, config(url), Default::default()).expect("reopen");
    let (_stop, stop) = watch::channel(false);
    tokio::spawn(follower.run(stop));
    until("everything sent", || rw.stats().sent.load(Ordering::Relaxed) == 16).await;
    assert_eq!(sizes(&seen)[tried..], [10, 6], "the batch in flight alone, then the rest");
    until("no lag", || rw.progress().lag_values() == 0).await;
}
