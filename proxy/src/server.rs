//! The listener: accepts agents, runs the handshake under a deadline, then
//! stores every batch and acknowledges it once it is on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameError, FrameKind};
use wasmtap_protocol::handshake::{HandshakeError, ServerEstablished, ServerHandshake};
use wasmtap_protocol::message::{self, Ack, Batch, Ping, Pong, SealedBatch};
use wasmtap_protocol::session::{Session, SessionError};

use crate::config::Config;
use crate::store::{Store, StoreError, StoredBatch};

/// Time an agent has to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session with no frame for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why one agent's connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Socket error.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The agent hung up.
    #[error("agent closed the connection")]
    Eof,
    /// A deadline passed.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The agent sent bytes that are not valid frames.
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A sealed frame failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A message could not be decoded.
    #[error("malformed message: {0}")]
    Batch(String),
    /// The store failed; the batch is not acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A frame this side does not accept.
    #[error("unexpected {0:?} frame")]
    Unexpected(FrameKind),
}

/// What the server tells its owner about stored data (used by `run --print`).
pub type Observer = mpsc::UnboundedSender<(String, StoredBatch)>;

/// Serves agents on `listener` until `shutdown` flips.
pub async fn run(
    listener: TcpListener,
    config: Arc<Config>,
    store: Arc<Store>,
    observer: Option<Observer>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => r?,
            _ = shutdown.changed() => return Ok(()),
        };
        let (config, store, observer) = (config.clone(), store.clone(), observer.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match serve(stream, peer, &config, &store, observer.as_ref(), shutdown).await {
                Ok(()) | Err(ConnError::Eof) => tracing::info!(%peer, "agent disconnected"),
                Err(e) => tracing::warn!(%peer, error = %e, "connection ended"),
            }
        });
    }
}

async fn read_frame(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<Frame, ConnError> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnError::Eof);
        }
        decoder.push(&buf[..n]);
    }
}

/// Sends an unauthenticated close (before the session is up) and logs why.
async fn refuse(stream: &mut TcpStream, peer: SocketAddr, err: &HandshakeError) {
    tracing::warn!(%peer, reason = %err, "handshake refused");
    let mut body = Vec::new();
    Close::new(err.close_code(), err.to_string()).encode(&mut body);
    let frame = Frame { kind: FrameKind::Close, payload: body }.to_bytes();
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

async fn handshake(
    stream: &mut TcpStream,
    peer: SocketAddr,
    decoder: &mut FrameDecoder,
    config: &Config,
) -> Result<ServerEstablished, ConnError> {
    let hello = read_frame(stream, decoder).await?;
    let now = crate::now_ms();
    let result = ServerHandshake::receive_hello(hello, &config.projects, now, &mut rand::rng());
    let (pending, answer) = match result {
        Ok(r) => r,
        Err(e) => {
            refuse(stream, peer, &e).await;
            return Err(e.into());
        }
    };
    stream.write_all(&answer).await?;
    let finished = read_frame(stream, decoder).await?;
    match pending.receive_finished(finished) {
        Ok(est) => Ok(est),
        Err(e) => {
            refuse(stream, peer, &e).await;
            Err(e.into())
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    store: &Arc<Store>,
    observer: Option<&Observer>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    stream.set_nodelay(true)?;
    let mut decoder = FrameDecoder::default();
    let est =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, peer, &mut decoder, config))
            .await
            .map_err(|_| ConnError::Timeout("handshake"))??;
    let ServerEstablished { mut session, project, agent, .. } = est;
    tracing::info!(%peer, %project, %agent, session = session.id(), "agent connected");
    loop {
        let frame = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream, &mut decoder)) => {
                r.map_err(|_| ConnError::Timeout("idle session"))??
            }
            _ = shutdown.changed() => {
                let mut body = Vec::new();
                Close::new(CloseCode::Shutdown, "proxy shutting down").encode(&mut body);
                let bytes = session.seal(FrameKind::Close, &body)?;
                stream.write_all(&bytes).await?;
                return Ok(());
            }
        };
        if frame.kind == FrameKind::Simple {
            if let Err(e) = session.open_simple(frame) {
                close(&mut stream, &mut session, CloseCode::ProtocolError, "simple path overflow")
                    .await;
                return Err(e.into());
            }
            continue;
        }
        let kind = frame.kind;
        let body = match session.open(frame) {
            Ok(b) => b,
            Err(SessionError::Auth { failures }) => {
                tracing::warn!(%peer, %agent, failures, "frame failed authentication; ignored");
                continue;
            }
            Err(e) => {
                close(
                    &mut stream,
                    &mut session,
                    CloseCode::AuthFailures,
                    "too many authentication failures",
                )
                .await;
                return Err(e.into());
            }
        };
        match kind {
            FrameKind::Sealed => {
                let sealed: SealedBatch =
                    message::decode(&body).map_err(|e| ConnError::Batch(e.to_string()))?;
                let numbers = match session.verify_simple(&sealed.checkpoint) {
                    Ok(n) => n,
                    Err(e) => {
                        close(
                            &mut stream,
                            &mut session,
                            CloseCode::AuthFailures,
                            "simple-path checkpoint mismatch",
                        )
                        .await;
                        return Err(e.into());
                    }
                };
                let seq = sealed.seq;
                let batch = Batch::join(seq, sealed.samples, &numbers)
                    .map_err(|e| ConnError::Batch(e.to_string()))?;
                let record = StoredBatch {
                    agent: agent.clone(),
                    session: session.id(),
                    received_ms: crate::now_ms(),
                    batch,
                };
                let (store, project_) = (store.clone(), project.clone());
                let record = tokio::task::spawn_blocking(move || {
                    store.append(&project_, &record).map(|()| record)
                })
                .await
                .map_err(|e| ConnError::Io(std::io::Error::other(e)))??;
                if let Some(obs) = observer {
                    let _ = obs.send((project.to_string(), record));
                }
                let ack = session.seal(FrameKind::Ack, &message::encode(&Ack { seq }))?;
                stream.write_all(&ack).await?;
            }
            FrameKind::Ping => {
                let t2_ms = crate::now_ms();
                let ping: Ping =
                    message::decode(&body).map_err(|e| ConnError::Batch(e.to_string()))?;
                let pong = Pong { t1_ms: ping.t1_ms, t2_ms, t3_ms: crate::now_ms() };
                let bytes = session.seal(FrameKind::Pong, &message::encode(&pong))?;
                stream.write_all(&bytes).await?;
            }
            FrameKind::Close => {
                let reason = Close::decode(&body).map(|c| c.to_string()).unwrap_or_default();
                tracing::info!(%peer, %agent, %reason, "agent closed the session");
                return Ok(());
            }
            other => {
                close(&mut stream, &mut session, CloseCode::ProtocolError, "unexpected frame")
                    .await;
                return Err(ConnError::Unexpected(other));
            }
        }
    }
}

async fn close(stream: &mut TcpStream, session: &mut Session, code: CloseCode, message: &str) {
    let mut body = Vec::new();
    Close::new(code, message).encode(&mut body);
    if let Ok(bytes) = session.seal(FrameKind::Close, &body) {
        let _ = stream.write_all(&bytes).await;
    }
}
