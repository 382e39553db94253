//! The session driver: keeps one TCP session to a proxy, runs the handshake,
//! batches samples and sends them sealed. On any failure it picks another
//! proxy and reconnects with backoff; samples wait in a bounded queue.

use std::collections::VecDeque;
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameError, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, HandshakeError};
use wasmtap_protocol::message::{self, Ack, Batch, Ping, Pong, Sample, SealedBatch};
use wasmtap_protocol::session::{Session, SessionError};

use crate::backoff::{Backoff, DEFAULT_BASE};
use crate::clock::now_ms;
use crate::config::Config;

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the handshake may take once connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long samples wait to be batched.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A batch is sent early once it holds this many samples.
pub const MAX_BATCH_SAMPLES: usize = 2_000;
/// How often the agent pings the proxy (keepalive, round-trip time, clock offset).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Samples kept in memory while no proxy is reachable; the oldest go first.
pub const MAX_QUEUED_SAMPLES: usize = 200_000;

/// Why a session ended or never started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UplinkError {
    /// TCP connect failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The proxy.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A deadline passed.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// Socket error.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The proxy closed the connection without a close frame.
    #[error("proxy closed the connection")]
    Eof,
    /// The proxy sent bytes that are not valid frames.
    #[error("invalid frame from proxy: {0}")]
    Frame(#[from] FrameError),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A sealed frame failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The proxy closed the session with a reason.
    #[error("proxy closed the session: {0}")]
    Closed(Close),
    /// The proxy sent something this agent does not expect.
    #[error("unexpected {0:?} frame from proxy")]
    Unexpected(FrameKind),
}

/// Reads the next frame, buffering partial input in `decoder`.
async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    decoder: &mut FrameDecoder,
) -> Result<Frame, UplinkError> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(UplinkError::Eof);
        }
        decoder.push(&buf[..n]);
    }
}

/// Samples waiting to be sent, bounded.
#[derive(Debug, Default)]
struct Queue {
    samples: VecDeque<Sample>,
    dropped: u64,
}

impl Queue {
    fn push(&mut self, samples: Vec<Sample>) {
        self.samples.extend(samples);
        let over = self.samples.len().saturating_sub(MAX_QUEUED_SAMPLES);
        if over > 0 {
            self.samples.drain(..over);
            self.dropped += over as u64;
            tracing::warn!(
                dropped = over,
                total_dropped = self.dropped,
                "sample queue full: dropped the oldest samples"
            );
        }
    }

    fn take_batch(&mut self) -> Vec<Sample> {
        let n = self.samples.len().min(MAX_BATCH_SAMPLES);
        self.samples.drain(..n).collect()
    }
}

/// The agent's side of the data path.
#[derive(Debug)]
pub struct Uplink {
    config: Config,
    samples: mpsc::Receiver<Vec<Sample>>,
    queue: Queue,
    next_seq: u64,
}

enum Ended {
    Shutdown,
    Lost(UplinkError),
}

impl Uplink {
    /// An uplink for `config` fed by `samples`.
    pub fn new(config: Config, samples: mpsc::Receiver<Vec<Sample>>) -> Self {
        Self { config, samples, queue: Queue::default(), next_seq: 1 }
    }

    /// Runs until `shutdown` flips, reconnecting as needed.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(DEFAULT_BASE, self.config.max_backoff);
        let mut hosts = self.config.hosts.clone();
        hosts.shuffle(&mut rand::rng());
        let mut next_host = 0usize;
        loop {
            let host = hosts[next_host % hosts.len()].clone();
            next_host += 1;
            let addr = format!("{host}:{}", self.config.port);
            let result = tokio::select! {
                r = self.connect(&addr) => r,
                _ = shutdown.changed() => return,
            };
            let error = match result {
                Ok((stream, session, decoder)) => {
                    backoff.reset();
                    tracing::info!(proxy = %addr, session = session.id(), "session established");
                    match self.serve(stream, session, decoder, &mut shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost(e) => e,
                    }
                }
                Err(e) => e,
            };
            let delay = backoff.next_delay(&mut rand::rng());
            log_failure(&addr, &error, delay, &self.config);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
                _ = self.drain_input_while_waiting() => {}
            }
        }
    }

    /// Keeps accepting samples into the queue while waiting to reconnect.
    async fn drain_input_while_waiting(&mut self) {
        while let Some(samples) = self.samples.recv().await {
            self.queue.push(samples);
        }
        std::future::pending::<()>().await;
    }

    async fn connect(
        &mut self,
        addr: &str,
    ) -> Result<(TcpStream, Session, FrameDecoder), UplinkError> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| UplinkError::Timeout("connect"))?
            .map_err(|source| UplinkError::Connect { addr: addr.to_owned(), source })?;
        stream.set_nodelay(true)?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut stream))
            .await
            .map_err(|_| UplinkError::Timeout("handshake"))?
            .map(|(session, decoder)| (stream, session, decoder))
    }

    async fn handshake(
        &self,
        stream: &mut TcpStream,
    ) -> Result<(Session, FrameDecoder), UplinkError> {
        let (expect, hello) = ClientHandshake::start(
            &self.config.access_key,
            &self.config.name,
            now_ms(),
            &mut rand::rng(),
        )?;
        stream.write_all(&hello).await?;
        let mut decoder = FrameDecoder::default();
        let answer = read_frame(stream, &mut decoder).await?;
        let established = expect.receive(answer)?;
        stream.write_all(&established.finished).await?;
        Ok((established.session, decoder))
    }

    async fn serve(
        &mut self,
        stream: TcpStream,
        mut session: Session,
        mut decoder: FrameDecoder,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (mut reader, mut writer) = stream.into_split();
        let (frames_tx, mut frames) = mpsc::channel::<Result<Frame, UplinkError>>(16);
        let read_task = tokio::spawn(async move {
            loop {
                let frame = read_frame(&mut reader, &mut decoder).await;
                let failed = frame.is_err();
                if frames_tx.send(frame).await.is_err() || failed {
                    return;
                }
            }
        });
        let _abort = AbortOnDrop(read_task);
        let mut flush = tokio::time::interval(BATCH_INTERVAL);
        let mut ping = tokio::time::interval(PING_INTERVAL);
        loop {
            tokio::select! {
                Some(samples) = self.samples.recv() => {
                    self.queue.push(samples);
                    if self.queue.samples.len() >= MAX_BATCH_SAMPLES
                        && let Err(e) = self.flush(&mut session, &mut writer).await
                    {
                        break Ended::Lost(e);
                    }
                }
                _ = flush.tick() => {
                    if let Err(e) = self.flush(&mut session, &mut writer).await {
                        break Ended::Lost(e);
                    }
                }
                _ = ping.tick() => {
                    let sent = session
                        .seal(FrameKind::Ping, &message::encode(&Ping { t1_ms: now_ms() }))
                        .map_err(UplinkError::from);
                    let sent = match sent {
                        Ok(bytes) => writer.write_all(&bytes).await.map_err(UplinkError::from),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        break Ended::Lost(e);
                    }
                }
                frame = frames.recv() => {
                    let frame = match frame {
                        Some(Ok(f)) => f,
                        Some(Err(e)) => break Ended::Lost(e),
                        None => break Ended::Lost(UplinkError::Eof),
                    };
                    if let Err(e) = handle_frame(&mut session, frame) {
                        break Ended::Lost(e);
                    }
                }
                _ = shutdown.changed() => {
                    let _ = self.flush(&mut session, &mut writer).await;
                    let mut body = Vec::new();
                    Close::new(CloseCode::Shutdown, "agent shutting down").encode(&mut body);
                    if let Ok(bytes) = session.seal(FrameKind::Close, &body) {
                        let _ = writer.write_all(&bytes).await;
                    }
                    let _ = writer.shutdown().await;
                    break Ended::Shutdown;
                }
            }
        }
    }

    async fn flush(
        &mut self,
        session: &mut Session,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
    ) -> Result<(), UplinkError> {
        while !self.queue.samples.is_empty() {
            let batch = Batch { seq: self.next_seq, samples: self.queue.take_batch() };
            // Numbers go on the simple path; labels, text and structure are
            // sealed together with the checkpoint that covers the numbers.
            let (heads, numbers) = batch.split();
            let mut bytes = Vec::new();
            for payload in &numbers {
                session.seal_simple(payload, &mut bytes);
            }
            let checkpoint = session.simple_checkpoint();
            let sealed = SealedBatch { seq: batch.seq, samples: heads, checkpoint };
            session.seal_into(FrameKind::Sealed, &message::encode(&sealed), &mut bytes)?;
            if let Err(e) = writer.write_all(&bytes).await {
                // Keep the samples for the next session.
                let mut back: VecDeque<Sample> = batch.samples.into();
                back.append(&mut self.queue.samples);
                self.queue.samples = back;
                return Err(e.into());
            }
            tracing::debug!(
                seq = batch.seq,
                samples = batch.samples.len(),
                bytes = bytes.len(),
                "batch sent"
            );
            self.next_seq += 1;
        }
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn handle_frame(session: &mut Session, frame: Frame) -> Result<(), UplinkError> {
    let kind = frame.kind;
    let body = session.open(frame)?;
    match kind {
        FrameKind::Ack => {
            let ack: Ack = message::decode(&body).map_err(|_| UplinkError::Unexpected(kind))?;
            tracing::debug!(seq = ack.seq, "batch acknowledged");
            Ok(())
        }
        FrameKind::Pong => {
            let pong: Pong = message::decode(&body).map_err(|_| UplinkError::Unexpected(kind))?;
            let (rtt_ms, offset_ms) = pong.time_sync(now_ms());
            tracing::debug!(rtt_ms, offset_ms, "proxy clock probe");
            Ok(())
        }
        FrameKind::Close => {
            let close = Close::decode(&body).map_err(|_| UplinkError::Unexpected(kind))?;
            Err(UplinkError::Closed(close))
        }
        other => Err(UplinkError::Unexpected(other)),
    }
}

fn log_failure(addr: &str, error: &UplinkError, delay: Duration, config: &Config) {
    let retry = format!("{:.1}s", delay.as_secs_f64());
    let project = config.access_key.project();
    match error {
        UplinkError::Handshake(HandshakeError::Refused(close)) => match close.code {
            CloseCode::BadCredentials => tracing::error!(
                proxy = %addr, %project, retry_in = %retry,
                "the proxy refused this agent's access key: check server.access_key ({})", close.message
            ),
            CloseCode::UnknownProject => tracing::error!(
                proxy = %addr, %project, retry_in = %retry,
                "the proxy does not know project `{project}`: check server.access_key"
            ),
            _ => {
                tracing::warn!(proxy = %addr, retry_in = %retry, "proxy refused the session: {close}")
            }
        },
        UplinkError::Handshake(HandshakeError::ServerNotAuthenticated) => tracing::error!(
            proxy = %addr, %project, retry_in = %retry,
            "the proxy could not prove it holds this project's key: is it the right proxy?"
        ),
        other => tracing::warn!(proxy = %addr, error = %other, retry_in = %retry, "session failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_protocol::message::Value;

    fn samples(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                collector: "t".into(),
                time_ms: i as u64,
                labels: vec![],
                values: vec![("v".into(), Value::Gauge(i as f64))],
            })
            .collect()
    }

    #[test]
    fn queue_drops_oldest_and_counts() {
        let mut q = Queue::default();
        q.push(samples(MAX_QUEUED_SAMPLES));
        q.push(samples(5));
        assert_eq!(q.samples.len(), MAX_QUEUED_SAMPLES);
        assert_eq!(q.dropped, 5);
        assert_eq!(q.samples.front().map(|s| s.time_ms), Some(5));
    }

    #[test]
    fn batches_are_capped() {
        let mut q = Queue::default();
        q.push(samples(MAX_BATCH_SAMPLES + 1));
        assert_eq!(q.take_batch().len(), MAX_BATCH_SAMPLES);
        assert_eq!(q.take_batch().len(), 1);
        assert!(q.take_batch().is_empty());
    }
}
