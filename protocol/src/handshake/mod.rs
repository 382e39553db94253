//! The handshake: three messages that authenticate both ends and turn the
//! project secret, both long-term identities and two ephemeral keys into a
//! forward-secret session.
//!
//! ```text
//! agent                                                        proxy
//!   ClientHello  project, key id, time, e_a,
//!                seal_{k_hello}(agent name, S_a, suite)   ──▶
//!                           ◀── ServerHello  e_p, seal_{k_id}(S_p),
//!                                seal_{k_srv}(session id, strong, simple, time)
//!   ClientFinished  seal_{c2s}(th2)                        ──▶
//! ```
//!
//! With `psk` the project secret, `S_a`/`S_p` the agent's and the proxy's
//! static public keys and `e_a`/`e_p` fresh ephemeral keys:
//!
//! - `k_hello = HKDF(salt = e_a, ikm = psk, info = "wasmtap/2 hello" ‖ project ‖ key id)`
//! - `ee = X25519(e_a, e_p)`, `es = X25519(e_a, S_p)`, `se = X25519(S_a, e_p)`
//! - `h2 = SHA-256(ClientHello frame ‖ e_p)`
//! - `k_id = HKDF(salt = h2, ikm = psk ‖ ee, info = "wasmtap/2 identity")`
//! - `k_srv = HKDF(salt = h2, ikm = psk ‖ ee ‖ es, info = "wasmtap/2 server")`
//! - `th2 = SHA-256(ClientHello frame ‖ ServerHello frame)`
//! - `master = HKDF(salt = th2, ikm = psk ‖ ee ‖ es ‖ se, info = "wasmtap/2 master")`
//! - traffic keys: `HKDF(salt = th2, ikm = master ‖ strong|simple, info = "wasmtap/2 <dir> <path>")`
//!
//! `suite` is the simple path's cipher the agent chose
//! ([`SimpleSuite`](crate::simple::SimpleSuite)); sealed in the hello, it is
//! authenticated and part of `th2`.
//!
//! Only a holder of the proxy's static key can open what `k_srv` seals
//! (`es`), only a holder of the agent's static key can produce
//! `ClientFinished` (`se`), only holders of the project secret get that
//! far, and the proxy checks the hello's time and remembers its `e_a` for
//! the freshness window before it spends a Diffie-Hellman on it.
//!
//! Each side is a chain of state types that consume themselves:
//! [`ClientHandshake`] → [`ExpectServerHello`] → [`ClientEstablished`], and
//! [`ServerHandshake`] → [`ReceivedHello`] → [`ExpectClientFinished`] →
//! [`ServerEstablished`]. Between the last two the proxy decides, from its
//! own records, whether this agent name may use this identity.

mod client;
mod error;
mod replay;
mod server;

pub use client::{ClientEstablished, ClientHandshake, ExpectServerHello};
pub use error::HandshakeError;
pub use replay::{DEFAULT_MAX_SKEW_MS, DEFAULT_REPLAY_CAPACITY, ReplayGuard};
pub use server::{
    ExpectClientFinished, ProjectKeys, ReceivedHello, ServerEstablished, ServerHandshake,
};

use crate::access_key::KeyId;
use crate::crypto::derive_key;
use crate::secret::Key256;
use crate::session::{DirectionKeys, Role, Session};
use crate::simple::SimpleSuite;

/// Longest agent name, in bytes.
pub const MAX_AGENT_NAME: usize = 255;

const ZERO_NONCE: [u8; 12] = [0; 12];

/// `k_hello`: seals the agent's name and identity under the project secret.
fn hello_key(psk: &Key256, e_a: &[u8; 32], project: &str, key_id: KeyId) -> Key256 {
    let info = [&b"wasmtap/2 hello"[..], project.as_bytes(), &key_id.0.to_be_bytes()].concat();
    derive_key(e_a, &[psk.expose()], &info)
}

/// `k_id`: seals the proxy's identity (hidden from passive observers).
fn identity_key(psk: &Key256, h2: &[u8; 32], ee: &[u8; 32]) -> Key256 {
    derive_key(h2, &[psk.expose(), ee], b"wasmtap/2 identity")
}

/// `k_srv`: seals the session keys; only the holder of the proxy's static key derives it.
fn server_key(psk: &Key256, h2: &[u8; 32], ee: &[u8; 32], es: &[u8; 32]) -> Key256 {
    derive_key(h2, &[psk.expose(), ee, es], b"wasmtap/2 server")
}

/// The shared secret of both identities, both ephemerals and the project.
struct Master(Key256);

impl Master {
    fn derive(psk: &Key256, th2: &[u8; 32], dh: [&[u8; 32]; 3]) -> Self {
        let [ee, es, se] = dh;
        Self(derive_key(th2, &[psk.expose(), ee, es, se], b"wasmtap/2 master"))
    }

    /// The session's traffic keys: the master secret mixed with the keys the
    /// proxy issued, so both sides' randomness goes into every key.
    fn into_session(
        self,
        th2: &[u8; 32],
        (strong, simple): (&Key256, &Key256),
        suite: SimpleSuite,
        id: u64,
        role: Role,
    ) -> Session {
        let key = |k: &Key256, info: &[u8]| derive_key(th2, &[self.0.expose(), k.expose()], info);
        let c2s = DirectionKeys {
            sealed: key(strong, b"wasmtap/2 c2s sealed"),
            simple: key(simple, b"wasmtap/2 c2s simple"),
        };
        let s2c = DirectionKeys {
            sealed: key(strong, b"wasmtap/2 s2c sealed"),
            simple: key(simple, b"wasmtap/2 s2c simple"),
        };
        match role {
            Role::Client => Session::new(id, role, suite, c2s, s2c),
            Role::Server => Session::new(id, role, suite, s2c, c2s),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
