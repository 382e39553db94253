//! The handshake: three messages that turn a project access key into a
//! forward-secret session.
//!
//! ```text
//! agent                                              proxy
//!   ClientHello  project, client_random,
//!                seal_{k_hello}(client share, time, agent name)  ──▶
//!                                  ◀── ServerHello  server share, server_random,
//!                                       seal_{k_hs}(session id, strong key, simple key, time)
//!   ClientFinished  seal_{c2s}(transcript hash)  ──▶
//! ```
//!
//! - `k_hello = HKDF(salt = client_random, ikm = secret, info = "wasmtap/1 hello" ‖ project)`
//! - `th1 = SHA-256(ClientHello frame ‖ server share ‖ server_random)`
//! - `k_hs = HKDF(salt = th1, ikm = secret ‖ X25519(client, server), info = "wasmtap/1 handshake")`
//! - `th2 = SHA-256(ClientHello frame ‖ ServerHello frame)`
//! - traffic keys: `HKDF(salt = th2, ikm = strong|simple key, info = "wasmtap/1 <dir> <path>")`
//!
//! Each side is a chain of state types that consume themselves:
//! [`ClientHandshake`] → [`ExpectServerHello`] → [`ClientEstablished`], and
//! [`ServerHandshake`] → [`ExpectClientFinished`] → [`ServerEstablished`].

mod client;
mod server;

pub use client::{ClientEstablished, ClientHandshake, ExpectServerHello};
pub use server::{ExpectClientFinished, ProjectKeys, ServerEstablished, ServerHandshake};

use crate::close::{Close, CloseCode};
use crate::codec::DecodeError;
use crate::crypto::{LowOrderShare, derive_key};
use crate::frame::FrameKind;
use crate::secret::Key256;
use crate::session::{DirectionKeys, Role, Session};

/// Longest agent name, in bytes.
pub const MAX_AGENT_NAME: usize = 255;

const HELLO_INFO: &[u8] = b"wasmtap/1 hello";
const HANDSHAKE_INFO: &[u8] = b"wasmtap/1 handshake";
const ZERO_NONCE: [u8; 12] = [0; 12];

/// Why a handshake failed. [`HandshakeError::close_code`] says what to tell the peer.
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
    /// Proxy side: the hello does not authenticate under the project's key
    /// (the agent holds a wrong or old key, or the message was altered).
    #[error("agent's hello for project `{0}` does not authenticate: wrong access key")]
    BadCredentials(String),
    /// Agent side: the proxy's answer does not authenticate (the proxy holds
    /// another key for this project, or the message was altered).
    #[error("proxy's answer does not authenticate: it holds a different key for this project")]
    ServerNotAuthenticated,
    /// Proxy side: the key confirmation failed (a replayed hello, or tampering).
    #[error("key confirmation failed (replayed hello or tampered handshake)")]
    ConfirmationFailed,
    /// The peer's X25519 share is of low order.
    #[error(transparent)]
    LowOrderShare(#[from] LowOrderShare),
    /// Agent side: the proxy refused the session.
    #[error("proxy refused the session: {0}")]
    Refused(Close),
    /// The agent name is empty or too long.
    #[error("agent name must be 1 to {MAX_AGENT_NAME} bytes")]
    BadAgentName,
}

impl HandshakeError {
    /// The close code to send to the peer for this failure.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::UnknownProject(_) => CloseCode::UnknownProject,
            Self::BadCredentials(_) | Self::ConfirmationFailed | Self::ServerNotAuthenticated => {
                CloseCode::BadCredentials
            }
            Self::Refused(c) => c.code,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// The traffic keys of one session, derived from the keys the proxy issued.
struct TrafficKeys {
    c2s: DirectionKeys,
    s2c: DirectionKeys,
}

impl TrafficKeys {
    fn derive(strong: &Key256, simple: &Key256, th2: &[u8; 32]) -> Self {
        let key = |k: &Key256, info: &[u8]| derive_key(th2, &[k.expose()], info);
        Self {
            c2s: DirectionKeys {
                sealed: key(strong, b"wasmtap/1 c2s sealed"),
                simple: key(simple, b"wasmtap/1 c2s simple"),
            },
            s2c: DirectionKeys {
                sealed: key(strong, b"wasmtap/1 s2c sealed"),
                simple: key(simple, b"wasmtap/1 s2c simple"),
            },
        }
    }

    fn into_session(self, id: u64, role: Role) -> Session {
        match role {
            Role::Client => Session::new(id, role, self.c2s, self.s2c),
            Role::Server => Session::new(id, role, self.s2c, self.c2s),
        }
    }
}

fn hello_key(secret: &Key256, client_random: &[u8; 32], project: &str) -> Key256 {
    let info = [HELLO_INFO, project.as_bytes()].concat();
    derive_key(client_random, &[secret.expose()], &info)
}

fn handshake_key(secret: &Key256, dh: &[u8; 32], th1: &[u8; 32]) -> Key256 {
    derive_key(th1, &[secret.expose(), dh], HANDSHAKE_INFO)
}

#[cfg(test)]
mod tests;
