//! Proxy capacity, against the real `wasmtap-proxy` binary of this build:
//!
//! - `ingest`: 4 agents send compact batches of 1,000 values (sealed
//!   before the clock starts) as fast as acknowledgements come back;
//!   samples (and values) decrypted, decoded, deduplicated and durably
//!   stored per second of the proxy's CPU time (from `/proc/<pid>/stat`)
//!   and of wall time. Samples of 10 fields with group fsync and, as the
//!   baseline of the same run, with `fsync = "off"`; then samples of one
//!   field each (one sample per value, as Prometheus counts them).
//! - `idle_sessions`: established sessions held open; the proxy's resident
//!   memory before and after.
//! - `handshakes`: full handshakes per second from 8 concurrent clients.
//!
//! Run: `cargo bench -p wasmtap-proxy --bench proxy`
//! (`BENCH_SESSIONS` changes the 10,000 idle sessions, `BENCH_BATCHES` the
//! 1,000 batches each ingest agent sends; `BENCH_ONLY=ingest` stops after ingest).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::compact::Encoder;
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::ClientHandshake;
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Ack, Batch, Sample, SealedBatch, Value};
use wasmtap_protocol::session::Session;

/// Values per batch in the ingest runs (samples × fields per sample).
const BATCH_VALUES: u64 = 1_000;

/// The batches of an ingest run: how many fields each sample carries.
#[derive(Clone, Copy)]
struct Shape {
    fields: u64,
}

impl Shape {
    fn samples(self) -> u64 {
        BATCH_VALUES / self.fields
    }
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Proxy {
    fn start(dir: &Path, key: &AccessKey, fsync: &str) -> Self {
        let config = dir.join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"store\"\n[[projects]]\nname = \"bench\"\naccess_key = \"{}\"\n[store]\nfsync = \"{fsync}\"\n[limits]\nmax_unauthenticated = 100000\nmax_unauthenticated_per_source = 100000\nhandshakes_per_source = 1000000\n",
                key.to_key_string().as_str()
            ),
        )
        .expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmtap-proxy"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("proxy starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("address line");
        let addr = line.trim().trim_start_matches("listening on ").parse().expect("address");
        Self { child, addr, _stdout: stdout }
    }

    /// CPU seconds used so far and resident memory in KiB.
    fn stat(&self) -> (f64, u64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after_name = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of the line, in 100 Hz ticks.
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let cpu = (tick(11) + tick(12)) as f64 / 100.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        (cpu, rss_kib)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn read_frame(stream: &mut TcpStream, decoder: &mut FrameDecoder) -> Frame {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(f) = decoder.next_frame().expect("valid frames") {
            return f;
        }
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "proxy closed the connection");
        decoder.push(&buf[..n]);
    }
}

async fn connect(
    addr: SocketAddr,
    key: AccessKey,
    name: String,
) -> (TcpStream, Session, FrameDecoder) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let identity = StaticKey::generate(&mut rand::rng());
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let (expect, hello) =
        ClientHandshake::start(&key, &identity, &name, now, &mut rand::rng()).expect("hello");
    stream.write_all(&hello).await.expect("write");
    let mut decoder = FrameDecoder::default();
    let answer = read_frame(&mut stream, &mut decoder).await;
    let est = expect.receive(answer, None).expect("accepted");
    stream.write_all(&est.finished).await.expect("write");
    (stream, est.session, decoder)
}

/// A batch like a host's: series of `shape.fields` counters each, moving a little.
fn batch(seq: u64, shape: Shape) -> Batch {
    let samples = (0..shape.samples())
        .map(|i| Sample {
            collector: "bench".into(),
            time_ms: 1_700_000_000_000 + seq * 1_000,
            labels: vec![("series".into(), i.to_string())].into(),
            values: (0..shape.fields)
                .map(|f| (format!("f{f}").into(), Value::Counter((seq * (f + 1) + i) as f64)))
                .collect(),
        })
        .collect();
    Batch { seq, samples }
}

/// One agent, connected, with its batches already sealed.
struct Loaded {
    stream: TcpStream,
    session: Session,
    decoder: FrameDecoder,
    wire: Vec<u8>,
    batches: u64,
}

/// Connects and seals `batches` batches, before any clock starts.
async fn load(
    addr: SocketAddr,
    key: AccessKey,
    name: String,
    batches: u64,
    shape: Shape,
) -> Loaded {
    let (stream, mut session, decoder) = connect(addr, key, name).await;
    let mut encoder = Encoder::new();
    let mut wire = Vec::new();
    for seq in 1..=batches {
        let (head, numbers) = encoder.encode(&batch(seq, shape));
        for p in &numbers {
            session.seal_simple(p, &mut wire);
        }
        let checkpoint = session.simple_checkpoint();
        let body = message::encode(&SealedBatch { head, checkpoint });
        session.seal_into(FrameKind::Sealed, &body, &mut wire).expect("seal");
    }
    Loaded { stream, session, decoder, wire, batches }
}

/// Sends everything and waits for the last ack.
async fn deliver(loaded: Loaded) {
    let Loaded { mut stream, mut session, mut decoder, wire, batches } = loaded;
    let (mut rd, mut wr) = stream.split();
    let send = async {
        wr.write_all(&wire).await.expect("send");
    };
    let acks = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            while let Some(f) = decoder.next_frame().expect("valid") {
                if f.kind == FrameKind::Ack {
                    let ack: Ack = message::decode(&session.open(f).expect("open")).expect("ack");
                    if ack.seq == batches {
                        return;
                    }
                }
            }
            let n = rd.read(&mut buf).await.expect("read");
            assert!(n > 0, "proxy closed the session");
            decoder.push(&buf[..n]);
        }
    };
    tokio::join!(send, acks);
}

/// Samples per wall second and per proxy CPU second, from 4 agents.
async fn ingest(key: &AccessKey, fsync: &str, shape: Shape) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(dir.path(), key, fsync);
    let batches = std::env::var("BENCH_BATCHES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let agents = 4u64;
    let mut loaded = Vec::new();
    for a in 0..agents {
        loaded.push(load(proxy.addr, key.clone(), format!("agent-{a}"), batches, shape).await);
    }
    let (cpu0, _) = proxy.stat();
    let started = Instant::now();
    let tasks: Vec<_> = loaded.into_iter().map(|l| tokio::spawn(deliver(l))).collect();
    for t in tasks {
        t.await.expect("agent");
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, _) = proxy.stat();
    let samples = (agents * batches * shape.samples()) as f64;
    (samples / wall, samples / (cpu1 - cpu0).max(0.01))
}

/// The proxy's RSS in KiB before and with `n` sessions held.
async fn idle_sessions(key: &AccessKey, n: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(dir.path(), key, "group");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, before) = proxy.stat();
    let mut held = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(tokio::spawn(connect(proxy.addr, key.clone(), format!("idle-{i}"))));
        if pending.len() == 64 {
            for p in pending.drain(..) {
                held.push(p.await.expect("session"));
            }
        }
    }
    for p in pending {
        held.push(p.await.expect("session"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, after) = proxy.stat();
    drop(held);
    (before, after)
}

async fn handshakes(key: &AccessKey) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(dir.path(), key, "group");
    let secs = 5.0;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..8)
        .map(|c| {
            let (addr, key) = (proxy.addr, key.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let _ = connect(addr, key.clone(), format!("hs-{c}")).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    total as f64 / secs
}

fn main() {
    let sessions: usize =
        std::env::var("BENCH_SESSIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let key = AccessKey::generate(ProjectId::new("bench").expect("valid"), &mut rand::rng());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let wide = Shape { fields: 10 };
        let (wall, cpu) = ingest(&key, "group", wide).await;
        let (wall_off, cpu_off) = ingest(&key, "off", wide).await;
        let narrow = Shape { fields: 1 };
        let (wall_one, cpu_one) = ingest(&key, "group", narrow).await;
        let line = |what: &str, shape: Shape, wall: f64, cpu: f64| {
            println!(
                "ingest, {what}: {:.2} M samples ({:.1} M values) per proxy CPU-second; {:.2} M samples/s wall",
                cpu / 1e6,
                cpu * shape.fields as f64 / 1e6,
                wall / 1e6
            );
        };
        line("10 fields per sample, fsync group", wide, wall, cpu);
        line("10 fields per sample, fsync off  ", wide, wall_off, cpu_off);
        line(" 1 field per sample,  fsync group", narrow, wall_one, cpu_one);
        println!("group/off CPU rate = {:.2}", cpu / cpu_off);
        if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "ingest") {
            return;
        }
        let (before, after) = idle_sessions(&key, sessions).await;
        println!(
            "idle sessions: {sessions} held, proxy RSS {:.1} MiB -> {:.1} MiB ({:.1} KiB per session)",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / sessions as f64
        );
        let rate = handshakes(&key).await;
        println!("handshakes: {rate:.0} per second (8 concurrent clients on the same machine)");
    });
}
