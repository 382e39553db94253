//! The listener: accepts agents, runs the handshake under a deadline, then
//! decodes every compact batch, stores it (once: resends are deduplicated)
//! and acknowledges it once it is on disk; the sinks read it back from the
//! store ([`crate::tail`]). Reading
//! goes on while batches wait for the store's group commit (up to
//! [`MAX_INFLIGHT`](crate::inflight::MAX_INFLIGHT) per session). Control
//! requests from the admin API travel down the same session and their
//! responses come back by request id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::compact::Decoder;
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameError, FrameKind};
use wasmtap_protocol::handshake::{HandshakeError, ServerEstablished, ServerHandshake};
use wasmtap_protocol::message::{self, Ack, ControlResponse, Ping, Pong, SealedBatch};
use wasmtap_protocol::session::{Session, SessionError};

use crate::config::Config;
use crate::gate::{Gate, Ticket};
use crate::inflight::{Inflight, Settled};
use crate::sessions::{AgentInfo, Pending, Sessions};
use crate::store::{Appended, Store, StoreError, StoredBatch};

/// Largest frame accepted before the handshake completes (a ClientHello
/// is a few hundred bytes).
pub const MAX_HANDSHAKE_PAYLOAD: u32 = 2_048;
/// How long a session waits, at shutdown, for its batches on their way to
/// the disk so that it can acknowledge them.
const SHUTDOWN_SETTLE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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

/// What every session task shares.
#[derive(Debug)]
pub struct Hub {
    /// The proxy's configuration.
    pub config: Arc<Config>,
    /// The embedded store.
    pub store: Arc<Store>,
    /// Connected agents, for the admin API.
    pub sessions: Arc<Sessions>,
}

/// Serves agents on `listener` until `shutdown` flips, then waits (a
/// bounded time) for the sessions to acknowledge what is stored and close.
pub async fn run(
    listener: TcpListener,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let gate = Gate::new(hub.config.limits);
    let mut refused = 0u64;
    // Every session task holds a sender: once all are dropped, all ended.
    let (alive, mut ended) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors under a flood: keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let ticket = match gate.admit(peer.ip(), std::time::Instant::now()) {
            Ok(t) => t,
            Err(why) => {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(%peer, reason = %why, refused, "connection refused before the handshake");
                }
                drop(stream);
                continue;
            }
        };
        let hub = hub.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            match serve(stream, peer, &hub, ticket, shutdown).await {
                Ok(()) | Err(ConnError::Eof) => tracing::info!(%peer, "agent disconnected"),
                Err(e) => tracing::warn!(%peer, error = %e, "connection ended"),
            }
        });
    }
    drop((listener, alive));
    let _ = tokio::time::timeout(SHUTDOWN_SETTLE * 2, ended.recv()).await;
    Ok(())
}

async fn read_frame(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<Frame, ConnError> {
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        // Wait for readiness first and read into a buffer that lives only
        // for the read: an idle session then holds no read buffer at all.
        stream.readable().await?;
        let mut buf = [0u8; 16 * 1024];
        match stream.try_read(&mut buf) {
            Ok(0) => return Err(ConnError::Eof),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
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
    hub: &Hub,
    ticket: Ticket,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    stream.set_nodelay(true)?;
    let mut decoder = FrameDecoder::new(MAX_HANDSHAKE_PAYLOAD);
    // Boxed: the handshake's state (key material, several KiB) lives on the
    // heap only until the session is up, instead of widening every
    // session's task for as long as it lasts.
    let est = tokio::time::timeout(
        hub.config.limits.handshake_timeout,
        Box::pin(handshake(&mut stream, peer, &mut decoder, &hub.config)),
    )
    .await
    .map_err(|_| ConnError::Timeout("handshake"))??;
    drop(ticket);
    decoder.set_max(wasmtap_protocol::frame::DEFAULT_MAX_PAYLOAD);
    let (conn, requests) = Conn::open(stream, decoder, est, peer, hub);
    conn.serve(requests, shutdown).await
}

/// One established session.
struct Conn<'a> {
    stream: TcpStream,
    decoder: FrameDecoder,
    /// Boxed: its key schedules are kilobytes, and async functions taking
    /// the connection hold it twice (argument and local) in their state.
    session: Box<Session>,
    batches: Decoder,
    /// Control requests sent and not yet answered, by id.
    waiting: HashMap<u64, oneshot::Sender<Result<String, String>>>,
    /// Batches submitted to the store and not yet acknowledged.
    inflight: Inflight,
    hub: &'a Hub,
    project: wasmtap_protocol::access_key::ProjectId,
    agent: String,
    peer: SocketAddr,
    registration: crate::sessions::Registration,
}

impl<'a> Conn<'a> {
    /// Registers the new session (a plain function, so that nothing of the
    /// handshake's result stays in the session task's state).
    fn open(
        stream: TcpStream,
        decoder: FrameDecoder,
        est: ServerEstablished,
        peer: SocketAddr,
        hub: &'a Hub,
    ) -> (Self, mpsc::Receiver<Pending>) {
        let ServerEstablished { session, project, agent, .. } = est;
        tracing::info!(%peer, %project, %agent, session = session.id(), "agent connected");
        let now = crate::now_ms();
        let (registration, requests) = hub.sessions.register(
            session.id(),
            AgentInfo {
                project: project.to_string(),
                agent: agent.clone(),
                peer,
                session: format!("{:016x}", session.id()),
                connected_ms: now,
                batches: 0,
                samples: 0,
                last_seen_ms: now,
            },
        );
        let conn = Conn {
            stream,
            decoder,
            session: Box::new(session),
            batches: Decoder::with_limit(hub.config.limits.session_memory_bytes),
            waiting: HashMap::new(),
            inflight: Inflight::default(),
            hub,
            project,
            agent,
            peer,
            registration,
        };
        (conn, requests)
    }

    /// Runs the session to its end, then settles what is still open.
    async fn serve(
        mut self,
        requests: mpsc::Receiver<Pending>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ConnError> {
        let result = self.run(requests, &mut shutdown).await;
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err("the session ended before the agent answered".into()));
        }
        // Batches already submitted are stored even though no ack can follow
        // (a resend will be a duplicate); the sinks read them from the store.
        self.inflight.drain().await;
        result
    }

    async fn run(
        &mut self,
        mut requests: mpsc::Receiver<Pending>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ConnError> {
        let idle = self.hub.config.limits.idle_timeout;
        let mut settled = Vec::new();
        loop {
            let reading = !self.inflight.is_full();
            let frame = tokio::select! {
                r = tokio::time::timeout(idle, read_frame(&mut self.stream, &mut self.decoder)), if reading => {
                    r.map_err(|_| ConnError::Timeout("idle session"))??
                }
                () = self.inflight.settled(&mut settled) => {
                    self.acknowledge(&mut settled).await?;
                    continue;
                }
                Some(pending) = requests.recv() => {
                    self.send_request(pending).await?;
                    continue;
                }
                _ = shutdown.changed() => {
                    // Acknowledge what is already on its way to the disk
                    // before saying goodbye, so that it is not resent.
                    let settle = async {
                        while !self.inflight.is_empty() {
                            self.inflight.settled(&mut settled).await;
                            self.acknowledge(&mut settled).await?;
                        }
                        Ok::<(), ConnError>(())
                    };
                    let _ = tokio::time::timeout(SHUTDOWN_SETTLE, settle).await;
                    self.close(CloseCode::Shutdown, "proxy shutting down").await;
                    return Ok(());
                }
            };
            let now = crate::now_ms();
            self.registration.update(|i| i.last_seen_ms = now);
            if self.frame(frame).await? {
                return Ok(());
            }
        }
    }

    async fn send_request(&mut self, pending: Pending) -> Result<(), ConnError> {
        let body = message::encode(&pending.request);
        let bytes = self.session.seal(FrameKind::ControlRequest, &body)?;
        self.stream.write_all(&bytes).await?;
        self.waiting.insert(pending.request.id, pending.reply);
        Ok(())
    }

    /// Handles one frame; `true` when the agent closed the session.
    async fn frame(&mut self, frame: Frame) -> Result<bool, ConnError> {
        let (peer, agent) = (self.peer, self.agent.clone());
        if frame.kind == FrameKind::Simple {
            if let Err(e) = self.session.open_simple(frame) {
                self.close(CloseCode::ProtocolError, "simple path overflow").await;
                return Err(e.into());
            }
            return Ok(false);
        }
        let kind = frame.kind;
        let body = match self.session.open(frame) {
            Ok(b) => b,
            Err(SessionError::Auth { failures }) => {
                tracing::warn!(%peer, %agent, failures, "frame failed authentication; ignored");
                return Ok(false);
            }
            Err(e) => {
                self.close(CloseCode::AuthFailures, "too many authentication failures").await;
                return Err(e.into());
            }
        };
        let malformed = |e: message::MessageError| ConnError::Batch(e.to_string());
        match kind {
            FrameKind::Sealed => {
                let sealed: SealedBatch = message::decode(&body).map_err(malformed)?;
                let numbers = match self.session.verify_simple(&sealed.checkpoint) {
                    Ok(n) => n,
                    Err(e) => {
                        self.close(CloseCode::AuthFailures, "simple-path checkpoint mismatch")
                            .await;
                        return Err(e.into());
                    }
                };
                let batch = match self.batches.decode(sealed.head, &numbers) {
                    Ok(b) => b,
                    Err(e) => {
                        self.close(CloseCode::ProtocolError, "batch does not decode").await;
                        return Err(ConnError::Batch(e.to_string()));
                    }
                };
                self.submit(batch);
            }
            FrameKind::Ping => {
                let t2_ms = crate::now_ms();
                let ping: Ping = message::decode(&body).map_err(malformed)?;
                let pong = Pong { t1_ms: ping.t1_ms, t2_ms, t3_ms: crate::now_ms() };
                let bytes = self.session.seal(FrameKind::Pong, &message::encode(&pong))?;
                self.stream.write_all(&bytes).await?;
            }
            FrameKind::ControlResponse => {
                let resp: ControlResponse = message::decode(&body).map_err(malformed)?;
                match self.waiting.remove(&resp.id) {
                    Some(reply) => {
                        let _ = reply.send(resp.result);
                    }
                    None => {
                        tracing::warn!(%peer, %agent, id = resp.id, "response to no outstanding request; ignored")
                    }
                }
            }
            FrameKind::Close => {
                let reason = Close::decode(&body).map(|c| c.to_string()).unwrap_or_default();
                tracing::info!(%peer, %agent, %reason, "agent closed the session");
                return Ok(true);
            }
            other => {
                self.close(CloseCode::ProtocolError, "unexpected frame").await;
                return Err(ConnError::Unexpected(other));
            }
        }
        Ok(false)
    }

    /// Hands a batch to the store; [`Conn::acknowledge`] follows its answer.
    fn submit(&mut self, batch: wasmtap_protocol::message::Batch) {
        let record = Arc::new(StoredBatch {
            agent: self.agent.clone(),
            session: self.session.id(),
            received_ms: crate::now_ms(),
            batch,
        });
        let receipt = self.hub.store.submit(&self.project, record.clone());
        self.inflight.push(record, receipt);
    }

    /// Acknowledges batches the store has answered (one write for all of
    /// them). A store failure
    /// ends the session with that batch and the ones after it
    /// unacknowledged: the agent resends them (those stored meanwhile come
    /// back as duplicates).
    async fn acknowledge(&mut self, settled: &mut Vec<Settled>) -> Result<(), ConnError> {
        let mut acks = Vec::new();
        let (mut batches, mut samples) = (0, 0);
        let mut failure: Option<ConnError> = None;
        for s in settled.drain(..) {
            let seq = s.record.batch.seq;
            match s.result {
                Err(e) => {
                    failure.get_or_insert(e.into());
                }
                Ok(Appended::Stored) => {
                    samples += s.record.batch.samples.len() as u64;
                }
                Ok(Appended::Duplicate) => {
                    tracing::debug!(agent = %self.agent, seq, "duplicate batch acknowledged, not stored again");
                }
            }
            if failure.is_none() {
                batches += 1;
                let ack = message::encode(&Ack { seq });
                if let Err(e) = self.session.seal_into(FrameKind::Ack, &ack, &mut acks) {
                    failure = Some(e.into());
                }
            }
        }
        self.registration.update(|i| {
            i.batches += batches;
            i.samples += samples;
        });
        self.stream.write_all(&acks).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn close(&mut self, code: CloseCode, message: &str) {
        close(&mut self.stream, &mut self.session, code, message).await;
    }
}

async fn close(stream: &mut TcpStream, session: &mut Session, code: CloseCode, message: &str) {
    let mut body = Vec::new();
    Close::new(code, message).encode(&mut body);
    if let Ok(bytes) = session.seal(FrameKind::Close, &body) {
        let _ = stream.write_all(&bytes).await;
    }
}
