//! The listener: admits connections through the [`gate`](crate::gate),
//! runs the handshake under deadlines (the first frame within
//! `first_frame_timeout`, the whole within `handshake_timeout`), checks the
//! agent's proven identity against the [bindings](crate::bindings) and its
//! project's session cap, then hands the session to [`link`](crate::link).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameError, FrameKind};
use wasmtap_protocol::handshake::{
    HandshakeError, ReplayGuard, ServerEstablished, ServerHandshake,
};
use wasmtap_protocol::identity::StaticKey;

use crate::bindings::{Bindings, Verdict};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::descriptors::Descriptors;
use crate::gate::{Deadline, Gate, Ticket};
use crate::link::{self, Link, SHUTDOWN_SETTLE};
use crate::sessions::{Pending, Registration, Sessions};
use crate::store::{Store, StoreError};

/// Largest frame accepted before the handshake completes (a ClientHello
/// is a few hundred bytes).
pub const MAX_HANDSHAKE_PAYLOAD: u32 = 2_048;
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
    /// A deadline before authentication passed.
    #[error("{0} timed out")]
    Timeout(Deadline),
    /// The agent sent bytes that are not valid frames.
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The established session failed.
    #[error(transparent)]
    Session(#[from] wasmtap_protocol::conn::ConnError),
    /// The store failed; the batch is not acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The agent was authenticated but is not admitted (identity, approval, capacity).
    #[error("{0}")]
    Refused(String),
    /// Dropped before authenticating, to admit a newer connection.
    #[error("dropped unauthenticated to make room for a newer connection")]
    Evicted,
}

/// What every session task shares.
#[derive(Debug)]
pub struct Hub {
    /// The proxy's configuration.
    pub config: Arc<Config>,
    /// The proxy's identity key.
    pub identity: StaticKey,
    /// Which identity owns which agent name.
    pub bindings: Arc<Bindings>,
    /// The embedded store.
    pub store: Arc<Store>,
    /// Under `[cluster]`: where batches go instead of the store (which the
    /// cluster's stream feeds).
    pub cluster: Option<Cluster>,
    /// Connected agents, for the admin API.
    pub sessions: Arc<Sessions>,
    /// What agents said of their collectors.
    pub descriptors: Arc<Descriptors>,
    /// Hellos seen within the clock-skew window.
    replays: Mutex<ReplayGuard>,
    /// Handshake refusals so far, by reason (for sampled logging).
    refusals: Mutex<HashMap<&'static str, u64>>,
}

impl Hub {
    /// A hub for `config`, serving as `identity`.
    pub fn new(
        config: Arc<Config>,
        identity: StaticKey,
        bindings: Arc<Bindings>,
        store: Arc<Store>,
        cluster: Option<Cluster>,
        sessions: Arc<Sessions>,
        descriptors: Arc<Descriptors>,
    ) -> Self {
        let skew = u64::try_from(config.limits.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        let replays = ReplayGuard::new(skew, wasmtap_protocol::handshake::DEFAULT_REPLAY_CAPACITY);
        Self {
            config,
            identity,
            bindings,
            store,
            cluster,
            sessions,
            descriptors,
            replays: Mutex::new(replays),
            refusals: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a refusal of `kind`; true when it should be logged (the
    /// first, then at every power of two, so a flood does not flood the log).
    fn count_refusal(&self, kind: &'static str) -> Option<u64> {
        let mut r = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        let n = r.entry(kind).or_insert(0);
        *n += 1;
        n.is_power_of_two().then_some(*n)
    }
}

/// Serves agents on `listener` until `shutdown` flips, then waits (a
/// bounded time) for the sessions to acknowledge what is stored and close.
/// Connections are admitted through `gate` (shared with `/metrics`).
pub async fn run(
    listener: TcpListener,
    hub: Arc<Hub>,
    gate: Gate,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Every session task holds a sender: once all are dropped, all ended.
    let (alive, mut ended) = tokio::sync::mpsc::channel::<()>(1);
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
                let n = gate.counts().refused();
                if n.is_power_of_two() {
                    tracing::warn!(%peer, reason = %why, refused = n, "connection refused before the handshake");
                }
                drop(stream);
                continue;
            }
        };
        let hub = hub.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let _alive = alive;
            match serve(stream, peer, &hub, ticket, shutdown).await {
                Ok(()) | Err(ConnError::Eof) => tracing::info!(%peer, "agent disconnected"),
                Err(ConnError::Evicted) => {
                    tracing::debug!(%peer, "unauthenticated connection dropped")
                }
                Err(e @ ConnError::Timeout(_)) => {
                    // Before authentication: sampled, so idle sockets do not flood the log.
                    let n = gate.counts().timeouts();
                    if n.is_power_of_two() {
                        tracing::warn!(%peer, error = %e, timeouts = n, "connection ended before the handshake");
                    } else {
                        tracing::debug!(%peer, error = %e, "connection ended before the handshake");
                    }
                }
                Err(ConnError::Handshake(_)) => {} // logged where it was refused
                Err(e) => tracing::warn!(%peer, error = %e, "connection ended"),
            }
        });
    }
    drop((listener, alive));
    let _ = tokio::time::timeout(SHUTDOWN_SETTLE * 2, ended.recv()).await;
    Ok(())
}

/// Reads the next frame, buffering partial input in `decoder`.
pub(crate) async fn read_frame(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<Frame, ConnError> {
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(frame);
        }
        stream.readable().await?;
        let mut buf = [0u8; 4096];
        match stream.try_read(&mut buf) {
            Ok(0) => return Err(ConnError::Eof),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends an unauthenticated close (before the session is up) and logs why
/// (the real reason here; the wire carries the generic one).
async fn refuse(stream: &mut TcpStream, peer: SocketAddr, hub: &Hub, err: &HandshakeError) {
    let kind = match err {
        HandshakeError::Replayed => "replayed hello",
        HandshakeError::Stale { .. } => "stale hello",
        HandshakeError::UnknownProject(_) | HandshakeError::UnknownKey { .. } => {
            "unknown project or key"
        }
        HandshakeError::BadCredentials(_) => "wrong access key",
        HandshakeError::ConfirmationFailed => "identity not proved",
        _ => "malformed handshake",
    };
    if let Some(n) = hub.count_refusal(kind) {
        tracing::warn!(%peer, reason = %err, refusals = n, "handshake refused ({kind})");
    }
    let mut body = Vec::new();
    err.to_close().encode(&mut body);
    let frame = Frame { kind: FrameKind::Close, payload: body }.to_bytes();
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

async fn handshake(
    stream: &mut TcpStream,
    peer: SocketAddr,
    decoder: &mut FrameDecoder,
    hub: &Hub,
) -> Result<ServerEstablished, ConnError> {
    let hello =
        tokio::time::timeout(hub.config.limits.first_frame_timeout, read_frame(stream, decoder))
            .await
            .map_err(|_| ConnError::Timeout(Deadline::FirstFrame))??;
    let now = crate::now_ms();
    let read = {
        let mut guard = hub.replays.lock().unwrap_or_else(PoisonError::into_inner);
        ServerHandshake::read_hello(hello, &hub.config.projects, &mut guard, now)
    };
    let answered = read.and_then(|r| r.respond(&hub.identity, now, &mut rand::rng()));
    let (pending, answer) = match answered {
        Ok(a) => a,
        Err(e) => {
            refuse(stream, peer, hub, &e).await;
            return Err(e.into());
        }
    };
    stream.write_all(&answer).await?;
    let finished = read_frame(stream, decoder).await?;
    match pending.receive_finished(finished) {
        Ok(est) => Ok(est),
        Err(e) => {
            refuse(stream, peer, hub, &e).await;
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
    let evicted = ticket.evicted.clone();
    // Boxed: the handshake's state (key material, several KiB) lives on the
    // heap only until the session is up.
    let handshaken = tokio::select! {
        r = tokio::time::timeout(
            hub.config.limits.handshake_timeout,
            Box::pin(handshake(&mut stream, peer, &mut decoder, hub)),
        ) => r.unwrap_or(Err(ConnError::Timeout(Deadline::Handshake))),
        () = evicted.notified() => return Err(ConnError::Evicted),
    };
    let est = match handshaken {
        Ok(est) => est,
        Err(ConnError::Timeout(deadline)) => {
            ticket.timed_out(deadline);
            return Err(ConnError::Timeout(deadline));
        }
        Err(e) => return Err(e),
    };
    drop(ticket);
    let registered = match admit(&est, hub).await {
        Ok(max_sessions) => register(&est, peer, hub, max_sessions),
        Err(close) => Err(close),
    };
    let (registration, requests) = match registered {
        Ok(r) => r,
        Err(close) => {
            // Sealed: the agent can trust why it was refused.
            let mut session = est.session;
            let mut body = Vec::new();
            close.encode(&mut body);
            if let Ok(bytes) = session.seal(FrameKind::Close, &body) {
                let _ = stream.write_all(&bytes).await;
            }
            let _ = stream.shutdown().await;
            return Err(ConnError::Refused(close.message));
        }
    };
    decoder.set_max(wasmtap_protocol::frame::DEFAULT_MAX_PAYLOAD);
    Link::open(stream, decoder, est, peer, hub, registration, requests).serve(shutdown).await
}

/// Registers an admitted session unless its project already holds
/// `max_sessions`. The count and the registration happen under one lock,
/// so handshakes that finish at the same time cannot exceed the cap.
fn register(
    est: &ServerEstablished,
    peer: SocketAddr,
    hub: &Hub,
    max_sessions: usize,
) -> Result<(Registration, mpsc::Receiver<Pending>), Close> {
    let id = est.session.id();
    let info = link::info(&est.project, &est.agent, &est.agent_identity, peer, id, crate::now_ms());
    hub.sessions.try_register(id, info, max_sessions).map_err(|_| {
        let (project, agent) = (&est.project, &est.agent);
        tracing::warn!(%project, %agent, max = max_sessions, "project at its session cap; session refused");
        Close::new(CloseCode::Overloaded, "project at its session cap")
    })
}

/// Whether an authenticated agent may go on: its name belongs to the
/// identity it proved. Returns its project's session cap, which
/// [`register`] enforces.
async fn admit(est: &ServerEstablished, hub: &Hub) -> Result<usize, Close> {
    let (project, agent, identity) = (&est.project, est.agent.as_str(), est.agent_identity);
    let Some(settings) = hub.config.projects.get(project) else {
        return Err(Close::new(CloseCode::Refused, "project no longer served"));
    };
    let verdict = if hub.bindings.is_known(project.as_str(), agent, &identity) {
        Ok(Verdict::Known)
    } else {
        // First contact writes (and syncs) the bindings file: off the async workers.
        let bindings = hub.bindings.clone();
        let (p, a) = (project.to_string(), agent.to_owned());
        let (enroll, now) = (settings.enroll, crate::now_ms());
        tokio::task::spawn_blocking(move || bindings.admit(&p, &a, &identity, enroll, now))
            .await
            .unwrap_or_else(|e| {
                Err(crate::bindings::BindingsError::Io {
                    path: std::path::PathBuf::from(crate::bindings::FILE),
                    message: e.to_string(),
                })
            })
    };
    match verdict {
        Ok(Verdict::Known) => {}
        Ok(Verdict::Bound) => {
            tracing::info!(%project, %agent, %identity, "agent name bound to its identity at first contact");
        }
        Ok(Verdict::Pending) => {
            tracing::warn!(%project, %agent, %identity, "agent identity awaits approval: wasmtap-proxy ctl approve --project {project} {agent}");
            return Err(Close::new(
                CloseCode::IdentityRefused,
                format!(
                    "agent `{agent}` awaits approval in project `{project}` (wasmtap-proxy ctl approve)"
                ),
            ));
        }
        Ok(Verdict::PendingFull) => {
            tracing::warn!(%project, %agent, "too many agents await approval; not recorded");
            return Err(Close::new(CloseCode::Overloaded, "too many agents await approval"));
        }
        Ok(Verdict::Conflict { owner }) => {
            tracing::warn!(%project, %agent, presented = %identity, bound = %owner, "identity refused: agent name is bound to another identity; release it with `wasmtap-proxy ctl forget --project {project} {agent}` if the host was rebuilt");
            return Err(Close::new(
                CloseCode::IdentityRefused,
                format!(
                    "agent name `{agent}` belongs to another identity in project `{project}`; if this host was rebuilt, release it on the proxy: wasmtap-proxy ctl forget"
                ),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record agent identities; refusing new agents");
            return Err(Close::new(CloseCode::Overloaded, "proxy cannot record identities"));
        }
    }
    Ok(settings.max_sessions)
}
