//! Protocol costs: the handshake per side, a frame on the sealed
//! (AES-256-GCM) and simple paths (each suite: AEGIS-128L, ChaCha20-Poly1305),
//! and the compact batch codec per sample (with plain postcard as the
//! baseline).
//!
//! Run: `cargo bench -p wasmtap-protocol`. The `seal` and `open` groups
//! compare the paths at the same payload size, on equal terms: the sealed
//! side seals into a reused buffer and opens in place (no allocation in the
//! timed part); the simple side pays, per frame, for a whole batch of one
//! frame (what the agent sends for a batch of up to 16,384 numbers): the
//! frame and its checkpoint, and on the receiving side holding the frame
//! and verifying the checkpoint.
//!
//! At the end (`ratios`, also run alone with `-- ratios`) the bench prints
//! simple/sealed ratios from its own short timing loops, and the sealed
//! path's 16 KiB throughput beside `openssl speed -evp aes-256-gcm` run on
//! the same machine (when `openssl` is installed). To measure a machine
//! without AES instructions, mask them for AWS-LC and OpenSSL alike (libaegis
//! ignores the mask: read the ChaCha20-Poly1305 rows, the suite such a
//! machine's agent picks):
//!
//! ```text
//! OPENSSL_ia32cap='~0x200000200000000:~0x60000000000' cargo bench -p wasmtap-protocol -- 'seal|open|ratios'
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

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
use wasmtap_protocol::simple::{Checkpoint, NumericPayload, NumericWriter, SimpleSuite};

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

fn sessions(suite: SimpleSuite) -> (Session, Session) {
    let p = parties();
    let mut rng = StdRng::seed_from_u64(2);
    let (c, hello) =
        ClientHandshake::start_with_suite(&p.psk, &p.agent, "bench", suite, NOW, &mut rng)
            .expect("hello");
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

/// The benchmark id of a suite.
fn suite_id(suite: SimpleSuite) -> &'static str {
    match suite {
        SimpleSuite::Aegis128L => "simple-aegis128l",
        SimpleSuite::ChaCha20Poly1305 => "simple-chacha20poly1305",
    }
}

/// A batch of one simple frame: the frame and its checkpoint.
fn simple_batch(tx: &mut Session, payload: &NumericPayload, out: &mut Vec<u8>) {
    out.clear();
    tx.seal_simple(payload, out);
    black_box((&*out, tx.simple_checkpoint()));
}

/// The receiving side of [`simple_batch`]: hold the frame, verify the checkpoint.
fn open_simple_batch(rx: &mut Session, (f, cp): (Frame, Checkpoint)) -> usize {
    rx.open_simple(f).expect("held");
    black_box(rx.verify_simple(&cp).expect("verified")).len()
}

fn sealed_frame(tx: &mut Session, plain: &[u8]) -> Frame {
    frame(&tx.seal(FrameKind::Sealed, plain).expect("seal"))
}

fn simple_frame(tx: &mut Session, payload: &NumericPayload) -> (Frame, Checkpoint) {
    let mut out = Vec::new();
    tx.seal_simple(payload, &mut out);
    (frame(&out), tx.simple_checkpoint())
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let plain = vec![7u8; size];
        let (mut tx, _) = sessions(SimpleSuite::Aegis128L);
        let mut out = Vec::with_capacity(size + 64);
        g.bench_with_input(BenchmarkId::new("sealed", size), &plain, |b, p| {
            b.iter(|| {
                out.clear();
                tx.seal_into(FrameKind::Sealed, p, &mut out).expect("seal");
                black_box(&out);
            })
        });
        let payload = numbers(size);
        for suite in SimpleSuite::ALL {
            let (mut tx, _) = sessions(suite);
            g.bench_with_input(BenchmarkId::new(suite_id(suite), size), &payload, |b, p| {
                b.iter(|| simple_batch(&mut tx, p, &mut out))
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("open");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let (mut tx, mut rx) = sessions(SimpleSuite::Aegis128L);
        let plain = vec![7u8; size];
        g.bench_function(BenchmarkId::new("sealed", size), |b| {
            b.iter_batched_ref(
                || sealed_frame(&mut tx, &plain),
                |f| rx.open_in_place(f).expect("open"),
                criterion::BatchSize::SmallInput,
            )
        });
        let payload = numbers(size);
        for suite in SimpleSuite::ALL {
            let (mut tx, mut rx) = sessions(suite);
            g.bench_function(BenchmarkId::new(suite_id(suite), size), |b| {
                b.iter_batched(
                    || simple_frame(&mut tx, &payload),
                    |batch| open_simple_batch(&mut rx, batch),
                    criterion::BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

/// The median over `rounds` of the time per operation of `round`, which
/// returns how long its operations took and how many it ran.
fn median_per_op(rounds: usize, mut round: impl FnMut() -> (Duration, u32)) -> f64 {
    let mut per_op: Vec<f64> = (0..rounds)
        .map(|_| {
            let (took, ops) = round();
            took.as_secs_f64() * 1e9 / f64::from(ops)
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[rounds / 2]
}

/// Nanoseconds per sealed frame and per simple batch of one frame, sending.
fn seal_ns(size: usize, suite: Option<SimpleSuite>) -> f64 {
    let ops = (1 << 20) / (size as u32 + 256);
    let (mut tx, _) = sessions(suite.unwrap_or(SimpleSuite::Aegis128L));
    let (plain, payload) = (vec![7u8; size], numbers(size));
    let mut out = Vec::with_capacity(size + 64);
    median_per_op(21, || {
        let start = Instant::now();
        for _ in 0..ops {
            match suite {
                None => {
                    out.clear();
                    tx.seal_into(FrameKind::Sealed, &plain, &mut out).expect("seal");
                    black_box(&out);
                }
                Some(_) => simple_batch(&mut tx, &payload, &mut out),
            }
        }
        (start.elapsed(), ops)
    })
}

/// The same, receiving: frames made untimed, then opened (sealed) or held
/// and verified (simple) in the timed part.
fn open_ns(size: usize, suite: Option<SimpleSuite>) -> f64 {
    let ops = (1 << 20) / (size as u32 + 256);
    let (mut tx, mut rx) = sessions(suite.unwrap_or(SimpleSuite::Aegis128L));
    let (plain, payload) = (vec![7u8; size], numbers(size));
    median_per_op(21, || match suite {
        None => {
            let mut frames: Vec<Frame> = (0..ops).map(|_| sealed_frame(&mut tx, &plain)).collect();
            let start = Instant::now();
            for f in &mut frames {
                rx.open_in_place(f).expect("open");
            }
            (start.elapsed(), ops)
        }
        Some(_) => {
            let batches: Vec<_> = (0..ops).map(|_| simple_frame(&mut tx, &payload)).collect();
            let mut released = Vec::with_capacity(batches.len());
            let start = Instant::now();
            for batch in batches {
                released.push(open_simple_batch(&mut rx, batch));
            }
            let took = start.elapsed();
            drop(released);
            (took, ops)
        }
    })
}

/// `openssl speed -evp aes-256-gcm` at 16 KiB, in bytes per second.
fn openssl_gcm_16k() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-evp", "aes-256-gcm", "-bytes", "16384", "-seconds", "1"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| l.to_ascii_uppercase().starts_with("AES-256-GCM"))?;
    let kbytes = last.split_whitespace().last()?.trim_end_matches('k').parse::<f64>().ok()?;
    Some(kbytes * 1000.0)
}

/// Whether the bench's filter (its first free argument) selects `name`;
/// no filter selects everything.
fn selected(name: &str) -> bool {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    filter.is_none_or(|f| f.split('|').any(|part| name.contains(part)))
}

/// Prints the simple/sealed ratios and the sealed path against OpenSSL.
fn ratios(_: &mut Criterion) {
    if !selected("ratios") {
        return;
    }
    let masked = std::env::var("OPENSSL_ia32cap").ok();
    println!(
        "\nratios (simple batch of one frame / sealed frame; below 1 the simple path is cheaper)"
    );
    if let Some(mask) = &masked {
        println!("OPENSSL_ia32cap={mask}: AWS-LC and OpenSSL run without the masked instructions");
    }
    println!(
        "{:<24}{:>8}{:>12}{:>12}{:>8}{:>12}{:>12}{:>8}",
        "suite", "bytes", "seal ns", "sealed ns", "ratio", "open ns", "sealed ns", "ratio"
    );
    let mut sealed_16k = 0.0;
    for size in SIZES {
        let (seal, open) = (seal_ns(size, None), open_ns(size, None));
        sealed_16k = seal;
        for suite in SimpleSuite::ALL {
            let (s, o) = (seal_ns(size, Some(suite)), open_ns(size, Some(suite)));
            println!(
                "{:<24}{size:>8}{s:>12.1}{seal:>12.1}{:>8.2}{o:>12.1}{open:>12.1}{:>8.2}",
                suite.name(),
                s / seal,
                o / open
            );
        }
    }
    let ours = 16384.0 / sealed_16k * 1e9;
    match openssl_gcm_16k() {
        Some(theirs) => println!(
            "sealed path at 16 KiB: {:.2} GB/s; openssl speed -evp aes-256-gcm: {:.2} GB/s; ratio {:.2}",
            ours / 1e9,
            theirs / 1e9,
            ours / theirs
        ),
        None => println!("sealed path at 16 KiB: {:.2} GB/s; openssl not found", ours / 1e9),
    }
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

criterion_group!(benches, handshake, paths, compact, ratios);
criterion_main!(benches);
