//! How fast the sinks read the store back (the proxy's library, release
//! build, one process):
//!
//! - `tail`: stored batches read back and decoded, values per second.
//! - `remote write catch-up`: a backlog delivered by a remote-write
//!   follower to a local endpoint that answers 204 to everything (reading,
//!   encoding, snappy, HTTP, position saves): values per second of wall time
//!   and per CPU-second of this process (the endpoint included).
//!
//! Run: `cargo bench -p wasmtap-proxy --bench sink`
//! (`BENCH_BATCHES` changes the 2,000 stored batches of 1,000 values).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{Batch, Sample, Value};
use wasmtap_proxy::config::RemoteWriteConfig;
use wasmtap_proxy::remote_write::RemoteWrite;
use wasmtap_proxy::store::{Fsync, Store, StoreConfig, StoredBatch};
use wasmtap_proxy::tail::Tail;

/// Samples per batch, and fields per sample.
const SAMPLES: usize = 100;
const FIELDS: usize = 10;

/// This process's CPU time (user + system), from `/proc/self/stat`.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat.rsplit(')').next().expect("fields").split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

fn batch(seq: u64) -> StoredBatch {
    let samples = (0..SAMPLES)
        .map(|i| Sample {
            collector: "cpu".into(),
            time_ms: 1_700_000_000_000 + seq * 1000,
            labels: vec![("cpu".to_owned(), i.to_string())].into(),
            values: (0..FIELDS)
                .map(|f| (format!("f{f}").into(), Value::Gauge(seq as f64 + f as f64)))
                .collect(),
        })
        .collect();
    StoredBatch { agent: "bench".into(), session: 1, received_ms: 1, batch: Batch { seq, samples } }
}

async fn fill(store: &Store, batches: u64) {
    let project = ProjectId::new("bench").expect("valid");
    let receipts: Vec<_> =
        (1..=batches).map(|s| store.submit(&project, Arc::new(batch(s)))).collect();
    for r in receipts {
        r.await.expect("answer").expect("stored");
    }
}

/// A local remote-write endpoint that reads each body and answers 204.
async fn endpoint() -> hyper::Uri {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/api/v1/write").parse().expect("uri")
}

fn main() {
    let batches: u64 =
        std::env::var("BENCH_BATCHES").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let values = batches * (SAMPLES * FIELDS) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig { fsync: Fsync::Off, ..StoreConfig::default() };
    let store = Store::open_with(dir.path(), config).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = endpoint().await;
        let rw_config = RemoteWriteConfig {
            url,
            tls: None,
            headers: Vec::new(),
            batch_size: wasmtap_proxy::config::DEFAULT_BATCH_SIZE,
            batch_wait: Duration::from_millis(10),
            timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        };
        // Opened on the empty store: its position is the start of what follows.
        let (rw, follower) = RemoteWrite::open(&store, rw_config, Default::default()).expect("remote write");
        fill(&store, batches).await;

        let (t0, c0) = (Instant::now(), cpu());
        let mut tail = Tail::new(&store, BTreeMap::new());
        let mut read = 0u64;
        loop {
            let r = tail.read(4 << 20).expect("read");
            read += r.entries.iter().map(|e| wasmtap_proxy::store::numeric_values(&e.record)).sum::<u64>();
            if r.complete && r.entries.is_empty() {
                break;
            }
        }
        assert_eq!(read, values);
        let (wall, busy) = (t0.elapsed(), cpu() - c0);
        println!(
            "tail: {values} values read back in {wall:.2?} ({:.1} M values/s wall, {:.1} M per CPU-second)",
            values as f64 / wall.as_secs_f64() / 1e6,
            values as f64 / busy.as_secs_f64().max(1e-3) / 1e6
        );

        let (t0, c0) = (Instant::now(), cpu());
        let (_stop, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(follower.run(stop));
        while rw.stats().sent.load(Ordering::Relaxed) < values {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (wall, busy) = (t0.elapsed(), cpu() - c0);
        println!(
            "remote write catch-up: {values} values in {wall:.2?} ({:.2} M values/s wall, {:.2} M per CPU-second, endpoint included)",
            values as f64 / wall.as_secs_f64() / 1e6,
            values as f64 / busy.as_secs_f64().max(1e-3) / 1e6
        );
    });
}
