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
use wasmtap_protocol::handshake::{ClientHandshake, ServerHandshake};
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

fn sessions() -> (Session, Session) {
    let k = key();
    let keys: HashMap<_, _> = [(k.project().clone(), k.clone())].into();
    let mut rng = StdRng::seed_from_u64(2);
    let (c, hello) = ClientHandshake::start(&k, "bench", 0, &mut rng).expect("hello");
    let (s, answer) =
        ServerHandshake::receive_hello(frame(&hello), &keys, 0, &mut rng).expect("ok");
    let c = c.receive(frame(&answer)).expect("ok");
    let s = s.receive_finished(frame(&c.finished)).expect("ok");
    (c.session, s.session)
}

fn handshake(c: &mut Criterion) {
    let k = key();
    let keys: HashMap<_, _> = [(k.project().clone(), k.clone())].into();
    let mut rng = StdRng::seed_from_u64(3);
    let mut proxy_rng = StdRng::seed_from_u64(4);
    let mut g = c.benchmark_group("handshake");
    g.bench_function("agent", |b| {
        b.iter_batched(
            || {
                let (c, hello) = ClientHandshake::start(&k, "bench", 0, &mut rng).expect("hello");
                let (_, answer) =
                    ServerHandshake::receive_hello(frame(&hello), &keys, 0, &mut rng).expect("ok");
                (c, frame(&answer))
            },
            |(c, answer)| {
                // The agent's whole share of the work: its hello was built in
                // setup, so time hello + answer processing together below.
                black_box(c.receive(answer).expect("ok"))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("agent_hello", |b| {
        b.iter(|| black_box(ClientHandshake::start(&k, "bench", 0, &mut rng).expect("hello")))
    });
    g.bench_function("proxy", |b| {
        b.iter_batched(
            || {
                let (c, hello) = ClientHandshake::start(&k, "bench", 0, &mut rng).expect("hello");
                (c, frame(&hello))
            },
            |(c, hello)| {
                let (s, answer) =
                    ServerHandshake::receive_hello(hello, &keys, 0, &mut proxy_rng).expect("ok");
                // Finishing needs the agent's confirmation; its cost is one AEAD open.
                black_box((s, answer, c))
            },
            criterion::BatchSize::SmallInput,
        )
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
        g.bench_with_input(BenchmarkId::new("simple", size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                tx.seal_simple(p, &mut out);
                black_box(&out);
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
