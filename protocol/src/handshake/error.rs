//! Why a handshake failed, and what each failure tells the peer.

use crate::access_key::KeyId;
use crate::close::{Close, CloseCode};
use crate::codec::DecodeError;
use crate::crypto::LowOrderShare;
use crate::frame::FrameKind;
use crate::identity::Identity;

use super::MAX_AGENT_NAME;

/// The one answer a proxy gives to every credential failure, so that a
/// stranger cannot tell an unknown project from a wrong key or a replay.
pub const GENERIC_REFUSAL: &str = "refused: unknown project or key, or wrong access key";

/// Why a handshake failed. [`HandshakeError::to_close`] says what to tell the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A frame of the wrong kind arrived.
    #[error("expected a {expected:?} frame, got {got:?}")]
    UnexpectedFrame {
        /// What this state waits for.
        expected: FrameKind,
        /// What arrived.
        got: FrameKind,
    },
    /// A handshake message is malformed.
    #[error("malformed handshake message: {0}")]
    Decode(#[from] DecodeError),
    /// Proxy side: the agent names a project this proxy does not serve.
    #[error("unknown project `{0}`")]
    UnknownProject(String),
    /// Proxy side: the project has no access key with this id.
    #[error("project `{project}` has no access key with id {key_id}")]
    UnknownKey {
        /// The project.
        project: String,
        /// The id the agent sent.
        key_id: KeyId,
    },
    /// Proxy side: the hello does not authenticate under the project's key
    /// (the agent holds a wrong key, or the message was altered).
    #[error("agent's hello for project `{0}` does not authenticate: wrong access key")]
    BadCredentials(String),
    /// Proxy side: the hello's time is outside the allowed window.
    #[error(
        "clock skew: the agent's clock is {:.1} s {} the proxy's (allowed ±{} s)",
        skew_ms.unsigned_abs() as f64 / 1000.0,
        if *skew_ms > 0 { "ahead of" } else { "behind" },
        allowed_ms / 1000
    )]
    Stale {
        /// Agent time minus proxy time, ms.
        skew_ms: i64,
        /// The allowed skew either way, ms.
        allowed_ms: u64,
    },
    /// Proxy side: this hello was seen before (a replay).
    #[error("replayed hello")]
    Replayed,
    /// Proxy side: too many recent hellos to remember; refused rather than
    /// risk accepting a replay.
    #[error("too many recent handshakes to check for replays")]
    ReplayCacheFull,
    /// Agent side: the proxy's answer does not authenticate (it holds
    /// another key for this project, or the message was altered).
    #[error("proxy's answer does not authenticate: it does not hold this project's key")]
    ServerNotAuthenticated,
    /// Agent side: the proxy proved an identity other than the pinned one.
    #[error(
        "proxy identity mismatch: pinned {pinned}, proxy presented {presented}; \
         if the proxy's identity was changed on purpose, set [server] proxy_identity \
         to the new one or delete the agent's pinned identity file"
    )]
    IdentityMismatch {
        /// The identity this agent expects.
        pinned: Identity,
        /// The identity the proxy proved.
        presented: Identity,
    },
    /// Proxy side: the key confirmation failed (the agent does not hold the
    /// identity key it claims, or tampering).
    #[error("key confirmation failed: the agent does not hold its identity key, or tampering")]
    ConfirmationFailed,
    /// The peer's X25519 share is of low order.
    #[error(transparent)]
    LowOrderShare(#[from] LowOrderShare),
    /// Agent side: the proxy refused the session. Before the session is up
    /// a close is unauthenticated: anyone on the path could have sent it.
    #[error("proxy refused the handshake (unauthenticated): {0}")]
    Refused(Close),
    /// The agent name is empty or too long.
    #[error("agent name must be 1 to {MAX_AGENT_NAME} bytes")]
    BadAgentName,
    /// Proxy side: the hello names a simple-path suite this proxy does not know.
    #[error("unknown simple-path suite {0}")]
    UnknownSuite(u8),
}

impl HandshakeError {
    /// The close to send to the peer for this failure. Credential failures
    /// all look the same on the wire.
    pub fn to_close(&self) -> Close {
        match self {
            Self::UnknownProject(_)
            | Self::UnknownKey { .. }
            | Self::BadCredentials(_)
            | Self::Replayed
            | Self::ConfirmationFailed
            | Self::ServerNotAuthenticated
            | Self::IdentityMismatch { .. } => Close::new(CloseCode::Refused, GENERIC_REFUSAL),
            Self::Stale { .. } => Close::new(CloseCode::ClockSkew, self.to_string()),
            Self::ReplayCacheFull => Close::new(CloseCode::Overloaded, "proxy busy; retry later"),
            Self::Refused(c) => c.clone(),
            Self::UnknownSuite(_) => Close::new(CloseCode::ProtocolError, self.to_string()),
            _ => Close::new(CloseCode::ProtocolError, "malformed handshake"),
        }
    }
}
