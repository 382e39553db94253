//! The load of `cargo xtask bench-store` and `bench-ingest`: the same deterministic values,
//! sent to a proxy by agents over real sessions, or to a Prometheus
//! remote-write receiver (VictoriaMetrics in the benchmark).
//!
//! - `send ADDR KEY AGENTS SECONDS END_MS`: AGENTS agents each send one
//!   batch per simulated second (SECONDS of them, the last ending at
//!   END_MS), as fast as acknowledgements come back; prints the values sent,
//!   then on a second line the time from sending a batch to its
//!   acknowledgement in milliseconds: median and 99th percentile.
//! - `probe ADDR KEY AGENT SEQ`: connects (retrying for 60 s), sends one
//!   batch numbered SEQ and waits for its acknowledgement.
//! - `write URL AGENTS SECONDS END_MS`: the same values by remote write.
//!
//! Every agent reports [`SAMPLES`](host::SAMPLES) samples (label `series`) of
//! [`FIELDS`](host::FIELDS) fields each per second: 1,000 series per agent. The fields
//! are what a host's metrics look like: utilisation percentages with one
//! and two decimals moving a little, packet and byte counters, a constant,
//! a count that rarely changes, memory in pages moving up and down, a load
//! average, a tick counter at a steady rate with jitter, and a utilisation
//! percentage computed from tick counts, with a long fraction (one field
//! in ten, the costly kind).
//!
//! Run by xtask; `cargo build --release -p wasmtap-proxy --example store_load`.
//! The values come from [`host`], which the compression bench shares.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmtap_protocol::access_key::AccessKey;
use wasmtap_protocol::compact::Encoder;
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::ClientHandshake;
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Ack, Batch, SealedBatch};
use wasmtap_protocol::session::{Session, is_sealed_kind};

mod host;

use host::{FIELDS, Host, SAMPLES};

/// Batches sent and not yet acknowledged, at most, per agent.
const WINDOW: u64 = 16;

fn agent_name(a: u64) -> String {
    format!("bench-{a:03}")
}

fn now_ms() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn read_frame(
    stream: &mut (impl AsyncReadExt + Unpin),
    decoder: &mut FrameDecoder,
) -> anyhow::Result<Frame> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(f) = decoder.next_frame()? {
            return Ok(f);
        }
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the proxy closed the connection");
        decoder.push(&buf[..n]);
    }
}

async fn connect(
    addr: SocketAddr,
    key: &AccessKey,
    name: &str,
) -> anyhow::Result<(TcpStream, Session, FrameDecoder)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let identity = StaticKey::generate(&mut rand::rng());
    let (expect, hello) = ClientHandshake::start(key, &identity, name, now_ms(), &mut rand::rng())?;
    stream.write_all(&hello).await?;
    let mut decoder = FrameDecoder::default();
    let answer = read_frame(&mut stream, &mut decoder).await?;
    let est = expect.receive(answer, None)?;
    stream.write_all(&est.finished).await?;
    Ok((stream, est.session, decoder))
}

fn seal(
    encoder: &mut Encoder,
    session: &mut Session,
    batch: &Batch,
    wire: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let (head, numbers) = encoder.encode(batch);
    for p in &numbers {
        session.seal_simple(p, wire);
    }
    let checkpoint = session.simple_checkpoint();
    let body = message::encode(&SealedBatch { head, checkpoint });
    session.seal_into(FrameKind::Sealed, &body, wire)?;
    Ok(())
}

/// One agent sends `seconds` batches; returns the values sent and each
/// batch's time from sending to acknowledgement, in ms.
async fn agent(
    addr: SocketAddr,
    key: AccessKey,
    a: u64,
    seconds: u64,
    end_ms: u64,
) -> anyhow::Result<(u64, Vec<f64>)> {
    let (stream, mut session, decoder) = connect(addr, &key, &agent_name(a)).await?;
    let (rd, mut wr) = stream.into_split();
    let mut host = Host::new(a);
    let mut encoder = Encoder::new();
    let mut wire = Vec::new();
    let mut acks = Acks {
        rd,
        decoder,
        buf: vec![0u8; 64 * 1024],
        acked: 0,
        sent: Vec::with_capacity(seconds as usize),
        latencies: Vec::with_capacity(seconds as usize),
    };
    for i in 0..seconds {
        let seq = i + 1;
        let time_ms = end_ms - (seconds - i) * 1_000;
        seal(&mut encoder, &mut session, &host.batch(seq, time_ms), &mut wire)?;
        acks.sent.push(Instant::now());
        wr.write_all(&wire).await?;
        wire.clear();
        if seq >= WINDOW {
            acks.wait(&mut session, seq + 1 - WINDOW).await?;
        }
    }
    acks.wait(&mut session, seconds).await?;
    Ok((seconds * (SAMPLES * FIELDS) as u64, acks.latencies))
}

/// The reading side of an agent's session: acknowledgements.
struct Acks {
    rd: tokio::net::tcp::OwnedReadHalf,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    acked: u64,
    /// When each batch was sent (batch `seq` at `seq - 1`).
    sent: Vec<Instant>,
    /// Send to acknowledgement of each acknowledged batch, ms.
    latencies: Vec<f64>,
}

impl Acks {
    /// Reads until batch `until` is acknowledged.
    async fn wait(&mut self, session: &mut Session, until: u64) -> anyhow::Result<()> {
        loop {
            while let Some(f) = self.decoder.next_frame()? {
                // Every sealed frame is opened, whatever it is (a control
                // request the load does not answer), so that the session's
                // counters stay in step; acknowledgements are read.
                let kind = f.kind;
                let plain = if is_sealed_kind(kind) { session.open(f)? } else { continue };
                if kind == FrameKind::Ack {
                    let ack: Ack = message::decode(&plain)?;
                    // Acknowledgements are cumulative: every batch up to `seq`.
                    let now = Instant::now();
                    for seq in self.acked + 1..=ack.seq {
                        if let Some(at) = self.sent.get((seq - 1) as usize) {
                            self.latencies.push(now.duration_since(*at).as_secs_f64() * 1e3);
                        }
                    }
                    self.acked = self.acked.max(ack.seq);
                }
            }
            if self.acked >= until {
                return Ok(());
            }
            let n = self.rd.read(&mut self.buf).await?;
            anyhow::ensure!(n > 0, "the proxy closed the session");
            self.decoder.push(&self.buf[..n]);
        }
    }
}

async fn send(
    addr: SocketAddr,
    key: AccessKey,
    agents: u64,
    seconds: u64,
    end_ms: u64,
) -> anyhow::Result<()> {
    let tasks: Vec<_> =
        (0..agents).map(|a| tokio::spawn(agent(addr, key.clone(), a, seconds, end_ms))).collect();
    let mut values = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (v, l) = t.await??;
        values += v;
        latencies.extend(l);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize);
    println!("{values}");
    println!("{:.2} {:.2}", at(0.5).copied().unwrap_or(0.0), at(0.99).copied().unwrap_or(0.0));
    Ok(())
}

async fn probe(addr: SocketAddr, key: AccessKey, name: &str, seq: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut stream, mut session, mut decoder) = loop {
        match connect(addr, &key, name).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let mut host = Host::new(999);
    let mut wire = Vec::new();
    seal(&mut Encoder::new(), &mut session, &host.batch(seq, now_ms()), &mut wire)?;
    stream.write_all(&wire).await?;
    loop {
        let f = read_frame(&mut stream, &mut decoder).await?;
        let kind = f.kind;
        let plain = if is_sealed_kind(kind) { session.open(f)? } else { continue };
        if kind == FrameKind::Ack {
            let ack: Ack = message::decode(&plain)?;
            if ack.seq >= seq {
                return Ok(());
            }
        }
    }
}

/// A series for remote write: its labels (`__name__` among them, sorted)
/// and its samples (value, time in ms).
type Series = (Vec<(String, String)>, Vec<(f64, i64)>);

/// A remote-write request: each series with its samples (protobuf), snappy-compressed.
fn write_request(series: &[Series]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }
    let mut raw = Vec::new();
    let (mut ts, mut item) = (Vec::new(), Vec::new());
    for (labels, samples) in series {
        ts.clear();
        for (n, v) in labels {
            item.clear();
            field(&mut item, 0x0a, n.as_bytes());
            field(&mut item, 0x12, v.as_bytes());
            field(&mut ts, 0x0a, &item);
        }
        for (v, t) in samples {
            item.clear();
            item.push(0x09);
            item.extend_from_slice(&v.to_le_bytes());
            item.push(0x10);
            varint(&mut item, *t as u64);
            field(&mut ts, 0x12, &item);
        }
        field(&mut raw, 0x0a, &ts);
    }
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

/// The same values by remote write, a minute of one agent per request.
async fn write(url: &str, agents: u64, seconds: u64, end_ms: u64) -> anyhow::Result<()> {
    let uri: hyper::Uri = url.parse()?;
    let tasks: Vec<_> = (0..agents)
        .map(|a| {
            let uri = uri.clone();
            tokio::spawn(async move {
                let mut client = wasmtap_proxy::http_client::Client::new(&uri, None)?;
                let mut host = Host::new(a);
                let agent = agent_name(a);
                let names: Vec<Vec<(String, String)>> = (0..SAMPLES * FIELDS)
                    .map(|i| {
                        let mut l = vec![
                            ("__name__".to_owned(), format!("wasmtap_bench_f{}", i % FIELDS)),
                            ("agent".to_owned(), agent.clone()),
                            ("collector".to_owned(), "bench".to_owned()),
                            ("project".to_owned(), "bench".to_owned()),
                            ("series".to_owned(), (i / FIELDS).to_string()),
                        ];
                        l.sort();
                        l
                    })
                    .collect();
                let mut i = 0;
                while i < seconds {
                    let minute = (seconds - i).min(60);
                    let mut series: Vec<Series> =
                        names.iter().map(|l| (l.clone(), Vec::with_capacity(60))).collect();
                    for j in 0..minute {
                        let t = (end_ms - (seconds - i - j) * 1_000) as i64;
                        for (k, v) in host.step().into_iter().enumerate() {
                            series[k].1.push((v, t));
                        }
                    }
                    let body = Bytes::from(write_request(&series));
                    let path = uri.path().to_owned();
                    let req = hyper::Request::post(path)
                        .header("content-encoding", "snappy")
                        .header("content-type", "application/x-protobuf")
                        .header("x-prometheus-remote-write-version", "0.1.0")
                        .body(Full::new(body))?;
                    let r = client.send(req, Duration::from_secs(120)).await?;
                    anyhow::ensure!(r.status.is_success(), "remote write: {}", r.status);
                    i += minute;
                }
                Ok::<_, anyhow::Error>(seconds * (SAMPLES * FIELDS) as u64)
            })
        })
        .collect();
    let mut values = 0;
    for t in tasks {
        values += t.await??;
    }
    println!("{values}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize| -> anyhow::Result<u64> {
        let text = args.get(i).ok_or_else(|| anyhow::anyhow!("missing argument {i}"))?;
        Ok(text.parse()?)
    };
    let rt = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        Some("send") => {
            let key: AccessKey = args.get(2).map_or("", String::as_str).parse()?;
            rt.block_on(send(args[1].parse()?, key, n(3)?, n(4)?, n(5)?))
        }
        Some("probe") => {
            let key: AccessKey = args.get(2).map_or("", String::as_str).parse()?;
            let name = args.get(3).cloned().unwrap_or_default();
            rt.block_on(probe(args[1].parse()?, key, &name, n(4)?))
        }
        Some("write") => rt.block_on(write(&args[1], n(2)?, n(3)?, n(4)?)),
        _ => anyhow::bail!("usage: store_load send|probe|write …"),
    }
}
