//! Protocol costs: the handshake per side, sealing a frame on the sealed
//! (AES-256-GCM) and simple (ChaCha8 + POLYVAL checkpoint) paths, and the
//! compact batch codec per sample (with plain postcard as the baseline).
//!
//! Run: `cargo bench -p wasmtap-protocol`. Compare the `sealed` and `simple`
//! groups at the same size: the ratio is what the README reports.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::compact::{Decoder, Encoder};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, ReplayGuard, ServerHandshake};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Batch, Sample, Value};
use wasmtap_protocol::session::Session;
use wasmtap_protocol::simple::{NumericPayload, NumericWriter};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::new(1 << 24);
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

fn key() -> AccessKey {
    AccessKey::generate(ProjectId::new("bench").expect("valid"), &mut StdRng::seed_from_u64(1))
}

const NOW: u64 = 1_800_000_000_000;

struct Parties {
    keys: HashMap<ProjectId, AccessKey>,
    psk: AccessKey,
    agent: StaticKey,
    proxy: StaticKey,
}

fn parties() -> Parties {
    let psk = key();
    let mut rng = StdRng::seed_from_u64(5);
    Parties {
        keys: [(psk.project().clone(), psk.clone())].into(),
        psk,
        agent: StaticKey::generate(&mut rng),
        proxy: StaticKey::generate(&mut rng),
    }
}

fn sessions() -> (Session, Session) {
    let p = parties();
    let mut rng = StdRng::seed_from_u64(2);
    let (c, hello) =
        ClientHandshake::start(&p.psk, &p.agent, "bench", NOW, &mut rng).expect("hello");
    let read =
        ServerHandshake::read_hello(frame(&hello), &p.keys, &mut ReplayGuard::default(), NOW)
            .expect("ok");
    let (s, answer) = read.respond(&p.proxy, NOW, &mut rng).expect("ok");
    let c = c.receive(frame(&answer), Some(&p.proxy.identity())).expect("ok");
    let s = s.receive_finished(frame(&c.finished)).expect("ok");
    (c.session, s.session)
}

/// Each side's handshake work in two steps (the whole side is their sum),
/// and what a replayed or stale hello costs the proxy.
fn handshake(c: &mut Criterion) {
    let p = parties();
    let mut rng = StdRng::seed_from_u64(3);
    let mut proxy_rng = StdRng::seed_from_u64(4);
    let mut guard = ReplayGuard::new(120_000, usize::MAX);
    let mut g = c.benchmark_group("handshake");
    g.bench_function("agent_hello", |b| {
        b.iter(|| black_box(ClientHandshake::start(&p.psk, &p.agent, "bench", NOW, &mut rng)))
    });
    g.bench_function("agent_finish", |b| {
        b.iter_batched(
            || {
                let (c, hello) = ClientHandshake::start(&p.psk, &p.agent, "bench", NOW, &mut rng)
                    .expect("hello");
                let read = ServerHandshake::read_hello(frame(&hello), &p.keys, &mut guard, NOW)
                    .expect("ok");
                let (_, answer) = read.respond(&p.proxy, NOW, &mut proxy_rng).expect("ok");
                (c, frame(&answer))
            },
            |(c, answer)| black_box(c.receive(answer, Some(&p.proxy.identity())).expect("ok")),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut guard = ReplayGuard::new(120_000, usize::MAX);
    g.bench_function("proxy_hello", |b| {
        b.iter_batched(
            || {
                let (_, hello) = ClientHandshake::start(&p.psk, &p.agent, "bench", NOW, &mut rng)
                    .expect("hello");
                frame(&hello)
            },
            |hello| {
                let read =
                    ServerHandshake::read_hello(hello, &p.keys, &mut guard, NOW).expect("ok");
                black_box(read.respond(&p.proxy, NOW, &mut proxy_rng).expect("ok"))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut guard = ReplayGuard::new(120_000, usize::MAX);
    g.bench_function("proxy_finish", |b| {
        b.iter_batched(
            || {
                let (c, hello) = ClientHandshake::start(&p.psk, &p.agent, "bench", NOW, &mut rng)
                    .expect("hello");
                let read = ServerHandshake::read_hello(frame(&hello), &p.keys, &mut guard, NOW)
                    .expect("ok");
                let (s, answer) = read.respond(&p.proxy, NOW, &mut proxy_rng).expect("ok");
                let c = c.receive(frame(&answer), None).expect("ok");
                (s, frame(&c.finished))
            },
            |(s, finished)| black_box(s.receive_finished(finished).expect("ok")),
            criterion::BatchSize::SmallInput,
        )
    });
    let (_, hello) =
        ClientHandshake::start(&p.psk, &p.agent, "bench", NOW, &mut rng).expect("hello");
    let hello = frame(&hello);
    let mut guard = ReplayGuard::default();
    ServerHandshake::read_hello(hello.clone(), &p.keys, &mut guard, NOW).expect("first");
    g.bench_function("replayed_hello", |b| {
        b.iter_batched(
            || hello.clone(),
            |h| {
                black_box(
                    ServerHandshake::read_hello(h, &p.keys, &mut guard, NOW).expect_err("replay"),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("stale_hello", |b| {
        b.iter_batched(
            || hello.clone(),
            |h| {
                black_box(
                    ServerHandshake::read_hello(h, &p.keys, &mut guard, NOW + 600_000)
                        .expect_err("stale"),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // What the handshake is made of: three variable-base X25519 and one
    // fixed-base key generation per side.
    let eph = wasmtap_protocol::crypto::EphemeralKey::generate(&mut rng);
    let peer = p.proxy.identity();
    g.bench_function("x25519", |b| b.iter(|| black_box(eph.agree(peer.as_bytes()))));
    g.bench_function("x25519_keygen", |b| {
        b.iter(|| black_box(wasmtap_protocol::crypto::EphemeralKey::generate(&mut rng)))
    });
    g.finish();
}

fn numbers(size: usize) -> NumericPayload {
    let mut w = NumericWriter::new();
    for i in 0..size / 8 {
        w.f64(i as f64 * 0.5);
    }
    w.finish()
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let plain = vec![7u8; size];
        let (mut tx, _) = sessions();
        let mut out = Vec::with_capacity(size + 64);
        g.bench_with_input(BenchmarkId::new("sealed", size), &plain, |b, p| {
            b.iter(|| {
                out.clear();
                tx.seal_into(FrameKind::Sealed, p, &mut out).expect("seal");
                black_box(&out);
            })
        });
        let payload = numbers(size);
        let (mut tx, _) = sessions();
        // One checkpoint per frame: what a batch of one payload pays.
        g.bench_with_input(BenchmarkId::new("simple", size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                tx.seal_simple(p, &mut out);
                black_box((&out, tx.simple_checkpoint()));
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("open");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let (mut tx, mut rx) = sessions();
        let plain = vec![7u8; size];
        g.bench_function(BenchmarkId::new("sealed", size), |b| {
            b.iter_batched(
                || frame(&tx.seal(FrameKind::Sealed, &plain).expect("seal")),
                |f| black_box(rx.open(f).expect("open")),
                criterion::BatchSize::SmallInput,
            )
        });
        let (mut tx, mut rx) = sessions();
        let payload = numbers(size);
        g.bench_function(BenchmarkId::new("simple", size), |b| {
            b.iter_batched(
                || {
                    let mut out = Vec::new();
                    tx.seal_simple(&payload, &mut out);
                    (frame(&out), tx.simple_checkpoint())
                },
                |(f, cp)| {
                    rx.open_simple(f).expect("held");
                    black_box(rx.verify_simple(&cp).expect("verified"))
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A steady-state batch: 100 series of 10 counters, moving a little.
fn batch(seq: u64) -> Batch {
    let samples = (0..100u64)
        .map(|i| Sample {
            collector: "bench".into(),
            time_ms: 1_700_000_000_000 + seq * 1_000,
            labels: vec![("series".into(), i.to_string())].into(),
            values: (0..10u64)
                .map(|f| (format!("f{f}").into(), Value::Counter((seq * (f + 1) + i) as f64)))
                .collect(),
        })
        .collect();
    Batch { seq, samples }
}

/// The compact codec per sample (10 values each), dictionary established.
fn compact(c: &mut Criterion) {
    let mut g = c.benchmark_group("compact");
    g.throughput(Throughput::Elements(100));
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    let (head, numbers) = enc.encode(&batch(1));
    dec.decode(head, &numbers).expect("decodes");
    let next = batch(2);
    g.bench_function("encode", |b| b.iter(|| black_box(enc.encode(&next))));
    let mut enc2 = Encoder::new();
    let mut dec2 = Decoder::new();
    let (h, n) = enc2.encode(&batch(1));
    dec2.decode(h, &n).expect("decodes");
    g.bench_function("decode", |b| {
        b.iter_batched(
            || enc2.encode(&next),
            |(h, n)| {
                // Each call moves the state on; the shape and cost stay the same.
                black_box(dec2.decode(h, &n).expect("decodes"))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("postcard_batch", |b| b.iter(|| black_box(message::encode(&next))));
    g.finish();
}

criterion_group!(benches, handshake, paths, compact);
criterion_main!(benches);
