//! One established connection per side, as sans-IO state machines: what a
//! session decides (acknowledgements, the in-flight window, pings and idle
//! deadlines, key updates, close codes, which frame pairs with which) lives
//! here once; the agent's and the proxy's async drivers only move bytes and
//! sleep until [`AgentConn::poll_timeout`] / [`ProxyConn::poll_timeout`].
//!
//! Both types follow the same contract:
//! - feed every received byte to `handle_input(bytes, now, wall_ms)`;
//! - call `handle_timeout(now, wall_ms)` when the deadline from
//!   `poll_timeout()` passes;
//! - after either, take [`events`](AgentConn::poll_event) and write out
//!   [`poll_transmit`](AgentConn::poll_transmit);
//! - an `Err` ends the connection: write what `poll_transmit` still holds
//!   (a close frame saying why), then drop the socket.
//!
//! `now` is a monotonic instant for timers; `wall_ms` is wall-clock time
//! (ms since the Unix epoch) for what travels on the wire (pings, checks of
//! sequence numbers against the clock).

mod agent;
mod proxy;

pub use agent::{AgentConfig, AgentConn, AgentEvent, SentBatch};
pub use proxy::{ProxyConfig, ProxyConn, ProxyEvent};

use crate::close::{Close, CloseCode};
use crate::compact::DecodeError as CompactError;
use crate::frame::{FrameError, FrameKind};
use crate::message::MessageError;
use crate::session::SessionError;

/// Why a connection ended. Each maps to the close code sent to the peer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer sent bytes that are not frames.
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame failed authentication or the simple path failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A message inside a sealed frame does not decode.
    #[error("malformed {kind:?} message: {error}")]
    Malformed {
        /// The frame it came in.
        kind: FrameKind,
        /// Why.
        error: MessageError,
    },
    /// A batch does not decode against the session's dictionary.
    #[error("batch does not decode: {0}")]
    Batch(#[from] CompactError),
    /// A frame this side never accepts.
    #[error("unexpected {0:?} frame")]
    Unexpected(FrameKind),
    /// Agent side: the proxy acknowledged a batch this agent never sent in
    /// this session.
    #[error("proxy acknowledged batch {ack} but the highest sent in this session is {highest:?}")]
    AckBeyondSent {
        /// The acknowledged sequence.
        ack: u64,
        /// The highest sent in this session, if any.
        highest: Option<u64>,
    },
    /// Proxy side: a batch sequence whose time part lies in the future.
    #[error(
        "batch sequence {seq} lies {ahead_ms} ms beyond the proxy's clock plus the allowed skew"
    )]
    SeqFromTheFuture {
        /// The sequence.
        seq: u64,
        /// How far beyond, ms.
        ahead_ms: u64,
    },
    /// Nothing arrived from the peer for too long.
    #[error("idle session: nothing from the peer for {0} s")]
    Idle(u64),
    /// The peer closed the session (sealed, so authentic).
    #[error("peer closed the session: {0}")]
    PeerClosed(Close),
    /// The connection was already closed.
    #[error("the connection is closed")]
    Closed,
}

impl ConnError {
    /// The close code this failure sends to the peer.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::Session(SessionError::Auth) => CloseCode::AuthFailure,
            Self::Session(SessionError::Simple(_)) => CloseCode::AuthFailure,
            Self::Idle(_) => CloseCode::Timeout,
            Self::PeerClosed(_) | Self::Closed => CloseCode::Normal,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// Updates the sending keys if they are due at `now` (by bytes or by time)
/// and may change (between simple-path epochs), and starts the new keys'
/// clock, so that [`Session::rekey_deadline`] always names the next one.
fn update_keys_if_due(
    session: &mut crate::session::Session,
    now: std::time::Instant,
    out: &mut Vec<u8>,
) -> Result<(), SessionError> {
    if session.rekey_due(now) && session.may_update_keys() {
        session.update_keys(out)?;
        session.rekey_due(now);
    }
    Ok(())
}

/// Seals a close frame into `out`, best effort (the session may be failed).
fn seal_close(
    session: &mut crate::session::Session,
    code: CloseCode,
    message: &str,
    out: &mut Vec<u8>,
) {
    let mut body = Vec::new();
    Close::new(code, message).encode(&mut body);
    let _ = session.seal_into(FrameKind::Close, &body, out);
}

#[cfg(test)]
mod tests;
