//! Collector runtime costs, with the real compiled collectors from
//! `target/plugins` (run `cargo xtask plugins` first):
//!
//! - `collect/values`: one `collect` returning 10,000 numbers, host side
//!   included (lifting, schema checks, conversion); `collect/empty` is the
//!   same collector returning nothing, the per-call baseline of the same run.
//! - `stall/flood`: the longest time one call of the `flood` test collector
//!   (a million samples, far over the caps) holds the executor's thread,
//!   which is what every other collector waits for; `stall/values` is the
//!   same for the well-behaved 10,000-number call.
//! - `compile/<name>`: cold compilation of each standard collector.
//! - `load_cached/<name>`: compile-cache hit, instantiate, describe, init.
//! - `agent_start/six_collectors`: a fresh runtime with a warm cache loads
//!   the six standard collectors in parallel and takes one sample from each.
//!
//! Calls are futures, driven here as in the agent by a tokio executor.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtap_host::manifest::Manifest;
use wasmtap_host::runtime::{Collector, Runtime};

fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor")
}

const STANDARD: [&str; 6] = ["cpu", "memory", "disk", "net", "load", "process"];

fn plugin(name: &str) -> (PathBuf, Manifest) {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins` first", wasm.display());
    let manifest = Manifest::load(&wasm.with_extension("toml")).expect("valid manifest");
    (wasm, manifest)
}

fn bulk(values: u32) -> (PathBuf, Manifest) {
    let (wasm, mut manifest) = plugin("testing/bulk");
    manifest.config = vec![("values".into(), values.to_string())];
    (wasm, manifest)
}

fn collect(c: &mut Criterion) {
    let exec = executor();
    let rt = Runtime::without_storage().expect("runtime");
    let (wasm, m) = bulk(10_000);
    let mut full = exec.block_on(Collector::load(&rt, &wasm, m)).expect("loads");
    let (wasm, m) = bulk(0);
    let mut empty = exec.block_on(Collector::load(&rt, &wasm, m)).expect("loads");
    let mut g = c.benchmark_group("collect");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("values", |b| {
        b.iter(|| black_box(exec.block_on(full.collect(&rt, 0)).expect("collects")))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("empty", |b| {
        b.iter(|| black_box(exec.block_on(empty.collect(&rt, 0)).expect("collects")))
    });
    g.finish();
}

/// The longest gap between the ticks of a 1 ms timer task while `call`
/// runs on the same current-thread executor.
fn stall<F: std::future::Future>(exec: &tokio::runtime::Runtime, call: F) -> Duration {
    exec.block_on(async {
        let worst = Arc::new(AtomicU64::new(0));
        let seen = worst.clone();
        let probe = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let now = Instant::now();
                let gap = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
                seen.fetch_max(gap, Ordering::Relaxed);
                last = now;
            }
        });
        tokio::task::yield_now().await;
        black_box(call.await);
        // One more wake of the probe closes the gap the call may have left open.
        tokio::time::sleep(Duration::from_millis(2)).await;
        probe.abort();
        Duration::from_nanos(worst.load(Ordering::Relaxed))
    })
}

fn stalls(c: &mut Criterion) {
    let exec = executor();
    let rt = Runtime::without_storage().expect("runtime");
    let (wasm, m) = plugin("testing/flood");
    let mut flood = exec.block_on(Collector::load(&rt, &wasm, m)).expect("loads");
    let (wasm, m) = bulk(10_000);
    let mut full = exec.block_on(Collector::load(&rt, &wasm, m)).expect("loads");
    let mut g = c.benchmark_group("stall");
    g.sample_size(10);
    g.bench_function("flood", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    stall(&exec, async {
                        let refused = flood.collect(&rt, 0).await;
                        assert!(refused.is_err(), "the flood is over the caps");
                    })
                })
                .sum()
        })
    });
    g.bench_function("values", |b| {
        b.iter_custom(|iters| {
            (0..iters).map(|_| stall(&exec, async { full.collect(&rt, 0).await.is_ok() })).sum()
        })
    });
    g.finish();
}

fn compile(c: &mut Criterion) {
    let rt = Runtime::without_storage().expect("runtime");
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for name in STANDARD {
        let bytes = std::fs::read(plugin(name).0).expect("read");
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    wasmtime::component::Component::new(rt.engine(), &bytes).expect("compiles"),
                )
            })
        });
    }
    g.finish();
}

fn load_cached(c: &mut Criterion) {
    let exec = executor();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(dir.path()).expect("runtime");
    let load = |wasm: &Path, m: &Manifest| {
        exec.block_on(Collector::load(&rt, wasm, m.clone())).expect("loads")
    };
    let mut g = c.benchmark_group("load_cached");
    for name in STANDARD {
        let (wasm, m) = plugin(name);
        assert!(!load(&wasm, &m).from_cache(), "cold first");
        g.bench_function(name, |b| {
            b.iter(|| {
                let c = load(&wasm, &m);
                assert!(c.from_cache());
                black_box(c)
            })
        });
    }
    g.finish();
}

fn agent_start(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins: Vec<(PathBuf, Manifest)> = STANDARD.iter().map(|n| plugin(n)).collect();
    let exec = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("executor");
    {
        let rt = Runtime::new(dir.path()).expect("runtime");
        for (wasm, m) in &plugins {
            exec.block_on(Collector::load(&rt, wasm, m.clone())).expect("warms the cache");
        }
    }
    let mut g = c.benchmark_group("agent_start");
    g.sample_size(20);
    g.bench_function("six_collectors", |b| {
        b.iter(|| {
            exec.block_on(async {
                let rt = Arc::new(Runtime::new(dir.path()).expect("runtime"));
                let mut tasks = tokio::task::JoinSet::new();
                for (wasm, m) in plugins.iter().cloned() {
                    let rt = rt.clone();
                    tasks.spawn(async move {
                        // As the agent does: compile (here a cache hit) on a blocking thread.
                        let (blocking, path) = (rt.clone(), wasm.clone());
                        let prepared = tokio::task::spawn_blocking(move || {
                            let bytes = std::fs::read(&path).expect("read");
                            Collector::prepare(&blocking, &path, &bytes, m)
                        })
                        .await
                        .expect("task")
                        .expect("prepares");
                        let mut c = Collector::start(&rt, prepared).await.expect("starts");
                        c.collect(&rt, 0).await.expect("collects")
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    black_box(done.expect("task"));
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, collect, stalls, compile, load_cached, agent_start);
criterion_main!(benches);
