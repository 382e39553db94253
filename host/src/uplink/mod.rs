//! The agent's side of the data path: batches every sample into the spool,
//! keeps one session to a proxy, sends what the spool holds and applies the
//! proxy's acknowledgements. On a lost session or a failed connect it fails
//! over to another proxy; when every proxy has failed recently it waits with
//! exponential backoff and full jitter.
//!
//! - [`batcher`]: samples into batches into the spool.
//! - [`proxies`]: which proxy to try next.
//! - [`reconnect`]: failover at once, then backoff with full jitter.
//! - [`session`]: one established session.

pub mod batcher;
pub mod proxies;
pub mod reconnect;
pub mod session;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::compact::Encoder;
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameError, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, HandshakeError};
use wasmtap_protocol::session::{Session, SessionError};

use crate::backoff::DEFAULT_BASE;
use crate::clock::now_ms;
use crate::config::Config;
use crate::control::Control;
use crate::spool::Spool;
use crate::stats::AgentStats;
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
    highest_sent: u64,
}

impl Uplink {
    /// An uplink for `config`, sending what `shared.spool` holds.
    pub fn new(config: Arc<Config>, shared: Shared) -> Self {
        Self { config, shared, highest_sent: 0 }
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
                Ok((stream, session, decoder)) => {
                    reconnect.connected(i);
                    AgentStats::add(&self.shared.stats.sessions, 1);
                    self.shared.stats.set_proxy(Some(addr.clone()));
                    tracing::info!(proxy = %addr, session = session.id(), "session established");
                    let (reader, writer) = stream.into_split();
                    let live = Live {
                        shared: &self.shared,
                        session,
                        writer,
                        encoder: Encoder::new(),
                        cursor: None,
                        in_flight: Default::default(),
                        highest_sent: &mut self.highest_sent,
                    };
                    let ended = live.run((reader, decoder), input_done.clone()).await;
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
            log_failure(&addr, &error, &self.config);
        }
    }

    async fn connect(&self, addr: &str) -> Result<(TcpStream, Session, FrameDecoder), UplinkError> {
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
}

fn log_failure(addr: &str, error: &UplinkError, config: &Config) {
    let project = config.access_key.project();
    match error {
        UplinkError::Handshake(HandshakeError::Refused(close)) => match close.code {
            CloseCode::BadCredentials => tracing::error!(
                proxy = %addr, %project,
                "the proxy refused this agent's access key: check server.access_key ({})", close.message
            ),
            CloseCode::UnknownProject => tracing::error!(
                proxy = %addr, %project,
                "the proxy does not know project `{project}`: check server.access_key"
            ),
            _ => {
                tracing::warn!(proxy = %addr, "proxy refused the session: {close}")
            }
        },
        UplinkError::Handshake(HandshakeError::ServerNotAuthenticated) => tracing::error!(
            proxy = %addr, %project,
            "the proxy could not prove it holds this project's key: is it the right proxy?"
        ),
        other => tracing::warn!(proxy = %addr, error = %other, "session failed"),
    }
}
