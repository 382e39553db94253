//! Bytes on the wire per numeric value, with the six standard collectors
//! sampling this machine once a second (`cargo xtask plugins` first):
//! every round's samples form one batch, sent through a real session —
//! compact encoding (series dictionary, numbers against their previous
//! value on the simple path, text and structure sealed) — and, as the
//! baseline of the same run, the same batch sealed whole as plain postcard.
//! Frame headers, tags and checkpoints are counted. Early rounds carry the
//! dictionary (rate fields appear from a collector's second call on);
//! steady state is every round that defines no new series.
//!
//! Run: `cargo bench -p wasmtap-host --bench wire` (`WIRE_ROUNDS`, default 12).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmtap_host::manifest::Manifest;
use wasmtap_host::runtime::{Collector, Runtime};
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::compact::Encoder;
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, ReplayGuard, ServerHandshake};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Batch, SealedBatch, Value};
use wasmtap_protocol::session::Session;

const STANDARD: [&str; 6] = ["cpu", "memory", "disk", "net", "load", "process"];

fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::new(1 << 24);
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

fn session() -> Session {
    let k = AccessKey::generate(ProjectId::new("bench").expect("valid"), &mut rand::rng());
    let keys: HashMap<_, _> = [(k.project().clone(), k.clone())].into();
    let (agent, proxy) =
        (StaticKey::generate(&mut rand::rng()), StaticKey::generate(&mut rand::rng()));
    let now = 1_800_000_000_000;
    let (c, hello) =
        ClientHandshake::start(&k, &agent, "bench", now, &mut rand::rng()).expect("hello");
    let read = ServerHandshake::read_hello(frame(&hello), &keys, &mut ReplayGuard::default(), now)
        .expect("ok");
    let (s, answer) = read.respond(&proxy, now, &mut rand::rng()).expect("ok");
    let c = c.receive(frame(&answer), Some(&proxy.identity())).expect("ok");
    s.receive_finished(frame(&c.finished)).expect("ok");
    c.session
}

/// Wire bytes of `batch`, and how many series it defined.
fn compact(session: &mut Session, encoder: &mut Encoder, batch: &Batch) -> (usize, usize) {
    let (head, numbers) = encoder.encode(batch);
    let defs = head.defs.len();
    let mut bytes = Vec::new();
    for p in &numbers {
        session.seal_simple(p, &mut bytes);
    }
    let checkpoint = session.simple_checkpoint();
    let body = message::encode(&SealedBatch { head, checkpoint });
    session.seal_into(FrameKind::Sealed, &body, &mut bytes).expect("seal");
    (bytes.len(), defs)
}

fn plain(session: &mut Session, batch: &Batch) -> usize {
    session.seal(FrameKind::Sealed, &message::encode(batch)).expect("seal").len()
}

fn main() {
    let rounds: usize =
        std::env::var("WIRE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(12);
    let rt = Runtime::without_storage().expect("runtime");
    // Collector calls are futures; this executor drives them.
    let exec =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor");
    let mut collectors: Vec<Collector> = STANDARD
        .iter()
        .map(|name| {
            let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/plugins")
                .join(format!("{name}.wasm"));
            assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
            let manifest = Manifest::load(&wasm.with_extension("toml")).expect("manifest");
            exec.block_on(Collector::load(&rt, &wasm, manifest)).expect("loads")
        })
        .collect();
    let (mut tx_compact, mut tx_plain) = (session(), session());
    let mut encoder = Encoder::new();
    let (mut steady_numbers, mut steady_compact, mut steady_plain) = (0usize, 0usize, 0usize);
    println!("round  numbers  new series  compact B  plain B  compact B/number  plain B/number");
    let start = Instant::now();
    for round in 0..rounds {
        let due = start + Duration::from_secs(round as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut samples = Vec::new();
        for c in &mut collectors {
            samples.extend(exec.block_on(c.collect(&rt, now_ms)).expect("collects").samples);
        }
        let batch = Batch { seq: round as u64 + 1, samples };
        let numbers = batch
            .samples
            .iter()
            .flat_map(|s| &s.values)
            .filter(|(_, v)| !matches!(v, Value::Text(_)))
            .count();
        let (c, defs) = compact(&mut tx_compact, &mut encoder, &batch);
        let p = plain(&mut tx_plain, &batch);
        println!(
            "{round:>5}  {numbers:>7}  {defs:>10}  {c:>9}  {p:>7}  {:>16.2}  {:>14.2}",
            c as f64 / numbers as f64,
            p as f64 / numbers as f64
        );
        if defs == 0 {
            steady_numbers += numbers;
            steady_compact += c;
            steady_plain += p;
        }
    }
    let per = |b: usize| b as f64 / steady_numbers.max(1) as f64;
    println!(
        "steady state: {:.2} bytes per numeric value compact, {:.2} plain (compact/plain = {:.3})",
        per(steady_compact),
        per(steady_plain),
        per(steady_compact) / per(steady_plain)
    );
}
