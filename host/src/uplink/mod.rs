//! The agent's side of the data path: batches every sample into the spool,
//! keeps one session to a proxy, sends what the spool holds and applies the
//! proxy's acknowledgements. On a lost session or a failed connect it fails
//! over to another proxy; when every proxy has failed recently it waits with
//! exponential backoff and full jitter.
//!
//! - [`batcher`]: samples into batches into the spool.
//! - [`identity`]: this agent's identity key and its pin of the proxy's.
//! - [`proxies`]: which proxy to try next.
//! - [`reconnect`]: failover at once, then backoff with full jitter.
//! - [`session`]: one established session, a driver around the sans-IO [`AgentConn`].

pub mod batcher;
pub mod identity;
pub mod proxies;
pub mod reconnect;
pub mod session;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use wasmtap_protocol::close::CloseCode;
use wasmtap_protocol::conn::{AgentConfig, AgentConn, ConnError};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameError};
use wasmtap_protocol::handshake::{ClientHandshake, DEFAULT_MAX_SKEW_MS, HandshakeError};

use crate::backoff::DEFAULT_BASE;
use crate::clock::now_ms;
use crate::config::Config;
use crate::control::Control;
use crate::spool::Spool;
use crate::stats::AgentStats;
use identity::{Identities, PinSource};
use proxies::Proxies;
use reconnect::Reconnect;
use session::{Ended, Live};

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the handshake may take once connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The proxy sent bytes that are not valid frames during the handshake.
    #[error("invalid frame from proxy: {0}")]
    Frame(#[from] FrameError),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The established session failed or was closed by the proxy.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The proxy's identity could not be pinned.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

/// Reads the next frame, buffering partial input in `decoder`.
async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    decoder: &mut FrameDecoder,
) -> Result<Frame, UplinkError> {
    let mut buf = [0u8; 4096];
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

/// What the uplink shares with the batcher and the control handler.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Batches not yet acknowledged.
    pub spool: Arc<Mutex<Spool>>,
    /// Woken when a batch is written to the spool.
    pub written: Arc<Notify>,
    /// Counters.
    pub stats: Arc<AgentStats>,
    /// Answers control requests.
    pub control: Arc<Control>,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session driver.
#[derive(Debug)]
pub struct Uplink {
    config: Arc<Config>,
    shared: Shared,
    identities: Arc<Identities>,
    highest_sent: u64,
}

impl Uplink {
    /// An uplink for `config` proving `identities`, sending what `shared.spool` holds.
    pub fn new(config: Arc<Config>, shared: Shared, identities: Arc<Identities>) -> Self {
        Self { config, shared, identities, highest_sent: 0 }
    }

    /// Runs until `input_done` flips (every sample is in the spool) and the
    /// session, if any, has drained and closed.
    pub async fn run(mut self, input_done: watch::Receiver<bool>) {
        let proxies = Proxies::new(&self.config.hosts, self.config.port);
        let mut reconnect = Reconnect::new(proxies, DEFAULT_BASE, self.config.max_backoff);
        let mut done = input_done.clone();
        loop {
            if *done.borrow() {
                return;
            }
            let (i, delay) = reconnect.next(Instant::now(), &mut rand::rng());
            if !delay.is_zero() {
                tracing::info!(retry_in = %format!("{:.1}s", delay.as_secs_f64()), "every proxy failed recently; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = done.wait_for(|d| *d) => return,
                }
            }
            let addr = reconnect.addr(i).to_owned();
            AgentStats::add(&self.shared.stats.connect_attempts, 1);
            let connected = tokio::select! {
                r = self.connect(&addr) => r,
                _ = done.wait_for(|d| *d) => return,
            };
            let error = match connected {
                Ok((stream, conn, proxy_ms)) => {
                    reconnect.connected(i);
                    AgentStats::add(&self.shared.stats.sessions, 1);
                    self.shared.stats.set_proxy(Some(addr.clone()));
                    tracing::info!(proxy = %addr, session = conn.id(), "session established");
                    let started = Instant::now();
                    self.renumber_future(proxy_ms).await;
                    let live = Live::new(&self.shared, stream, conn, &mut self.highest_sent);
                    let ended = live.run(input_done.clone()).await;
                    reconnect.ended(started.elapsed());
                    self.shared.stats.set_proxy(None);
                    match ended {
                        Ended::Done => return,
                        Ended::Lost(e) => e,
                    }
                }
                Err(e) => e,
            };
            AgentStats::add(&self.shared.stats.session_failures, 1);
            reconnect.failed(i, Instant::now());
            self.log_failure(&addr, &error);
        }
    }

    /// Before anything is sent: pending batches numbered while this
    /// agent's clock was ahead, which this proxy (its clock read `proxy_ms`
    /// when it answered) would refuse, get new numbers where that is safe
    /// (see the spool's `renumber`).
    async fn renumber_future(&mut self, proxy_ms: u64) {
        let spool = self.shared.spool.clone();
        let done = tokio::task::spawn_blocking(move || {
            spool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .renumber_future(proxy_ms, DEFAULT_MAX_SKEW_MS)
        })
        .await;
        match done {
            // Lower numbers than those sent before: none of them is a resend.
            Ok(Ok(Some(_))) => self.highest_sent = 0,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "spool: cannot renumber batches from the future; they stay as they are")
            }
            Err(e) => {
                tracing::warn!(error = %e, "spool: renumbering failed; the batches stay as they are")
            }
        }
    }

    /// Connects and shakes hands; returns the proxy's clock as it answered.
    async fn connect(&self, addr: &str) -> Result<(TcpStream, AgentConn, u64), UplinkError> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| UplinkError::Timeout("connect"))?
            .map_err(|source| UplinkError::Connect { addr: addr.to_owned(), source })?;
        stream.set_nodelay(true)?;
        let (conn, proxy_ms) =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut stream, addr))
                .await
                .map_err(|_| UplinkError::Timeout("handshake"))??;
        Ok((stream, conn, proxy_ms))
    }

    async fn handshake(
        &self,
        stream: &mut TcpStream,
        addr: &str,
    ) -> Result<(AgentConn, u64), UplinkError> {
        let (expect, hello) = ClientHandshake::start(
            &self.config.access_key,
            &self.identities.agent,
            &self.config.name,
            now_ms(),
            &mut rand::rng(),
        )?;
        stream.write_all(&hello).await?;
        let mut decoder = FrameDecoder::default();
        let answer = read_frame(stream, &mut decoder).await?;
        let pinned = self.identities.pinned().map(|(id, _)| id);
        let established = expect.receive(answer, pinned.as_ref())?;
        if self.identities.learn(established.proxy)? {
            tracing::info!(
                proxy = %addr,
                identity = %established.proxy,
                file = %self.identities.pin_file().display(),
                "pinned the proxy's identity at first contact; every proxy must prove it from now on"
            );
        }
        stream.write_all(&established.finished).await?;
        let config = AgentConfig::default();
        let conn = AgentConn::new(established.session, decoder, config, Instant::now().into_std());
        Ok((conn, established.server_time_ms))
    }

    fn log_failure(&self, addr: &str, error: &UplinkError) {
        let project = self.config.access_key.project();
        let stats = &self.shared.stats;
        match error {
            UplinkError::Handshake(HandshakeError::IdentityMismatch { pinned, presented }) => {
                AgentStats::add(&stats.identity_refusals, 1);
                let how = match self.identities.pinned() {
                    Some((_, PinSource::Config)) => "change [server] proxy_identity".to_owned(),
                    _ => format!("delete {}", self.identities.pin_file().display()),
                };
                tracing::error!(
                    proxy = %addr, %pinned, %presented,
                    "proxy refused: it proved identity {presented}, but this agent trusts {pinned}; \
                     nothing was sent to it. If the proxy's identity was changed on purpose, {how} to pin the new one"
                );
            }
            UplinkError::Handshake(HandshakeError::Refused(close)) => match close.code {
                CloseCode::Refused => tracing::error!(
                    proxy = %addr, %project,
                    "the proxy refused this agent's credentials (unauthenticated answer): check server.access_key ({})", close.message
                ),
                CloseCode::ClockSkew => tracing::error!(
                    proxy = %addr,
                    "the proxy refused this agent's clock (unauthenticated answer): {}; fix the time (NTP)", close.message
                ),
                _ => {
                    tracing::warn!(proxy = %addr, "proxy refused the handshake (unauthenticated answer): {close}")
                }
            },
            UplinkError::Handshake(HandshakeError::ServerNotAuthenticated) => tracing::error!(
                proxy = %addr, %project,
                "the proxy could not prove it holds this project's key and its identity: is it the right proxy?"
            ),
            UplinkError::Conn(ConnError::PeerClosed(close))
                if close.code == CloseCode::IdentityRefused =>
            {
                AgentStats::add(&stats.identity_refusals, 1);
                tracing::error!(proxy = %addr, identity = %self.identities.agent.identity(), "the proxy refused this agent's identity: {}", close.message);
            }
            UplinkError::Conn(e @ ConnError::AckBeyondSent { .. }) => {
                AgentStats::add(&stats.acks_refused, 1);
                tracing::error!(proxy = %addr, error = %e, "acknowledgement refused; the spool is kept");
            }
            other => tracing::warn!(proxy = %addr, error = %other, "session failed"),
        }
    }
}
