use std::sync::Mutex as StdMutex;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use wasmtap_protocol::message::{Batch, Sample};

use super::*;

/// A plain HTTP endpoint answering with `script` in turn (then 204), noting when each request came.
async fn endpoint(
    script: Vec<(StatusCode, Option<&'static str>)>,
) -> (hyper::Uri, Arc<StdMutex<Vec<Instant>>>) {
    let arrivals = Arc::new(StdMutex::new(Vec::new()));
    let script = Arc::new(StdMutex::new(VecDeque::from(script)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, script) = (seen.clone(), script.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    seen.lock().expect("lock").push(Instant::now());
                    let (status, retry) = script
                        .lock()
                        .expect("lock")
                        .pop_front()
                        .unwrap_or((StatusCode::NO_CONTENT, None));
                    async move {
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
    (format!("http://{addr}/api/v1/write").parse().expect("uri"), arrivals)
}

fn config(url: hyper::Uri) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url,
        tls: None,
        headers: Vec::new(),
        queue_capacity: 100,
        batch_size: 10,
        batch_wait: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

fn record() -> StoredBatch {
    StoredBatch {
        agent: "a".into(),
        session: 1,
        received_ms: 0,
        batch: Batch {
            seq: 1,
            samples: vec![Sample {
                collector: "load".into(),
                time_ms: 1_700_000_000_000,
                labels: Vec::new().into(),
                values: vec![("load1".into(), Value::Gauge(0.5))],
            }],
        },
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured_over_the_backoff() {
    let (url, arrivals) = endpoint(vec![(StatusCode::TOO_MANY_REQUESTS, Some("1"))]).await;
    let rw = RemoteWrite::new(config(url));
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(rw.clone().run(shutdown));
    rw.accept("p", &record());
    until("the value to be sent", || rw.stats().sent.load(Ordering::Relaxed) == 1).await;
    let times = arrivals.lock().expect("lock").clone();
    assert_eq!(times.len(), 2, "one refusal, one success");
    let waited = times[1] - times[0];
    // The backoff alone would have retried within 20 ms.
    assert!(waited >= Duration::from_millis(900), "retried after {waited:?}");
    assert_eq!(rw.stats().retries.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn without_retry_after_the_backoff_applies_and_4xx_drops() {
    let (url, arrivals) =
        endpoint(vec![(StatusCode::SERVICE_UNAVAILABLE, None), (StatusCode::BAD_REQUEST, None)])
            .await;
    let rw = RemoteWrite::new(config(url));
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(rw.clone().run(shutdown));
    rw.accept("p", &record());
    until("the batch to be refused", || rw.stats().dropped_rejected.load(Ordering::Relaxed) == 1)
        .await;
    let times = arrivals.lock().expect("lock").clone();
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] < Duration::from_millis(900), "backoff, not a long wait");
    assert_eq!(rw.stats().sent.load(Ordering::Relaxed), 0);
}
