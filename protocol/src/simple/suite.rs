//! The simple path's ciphers ("suites"), and the byte that names them in
//! the `ClientHello`.
//!
//! Every suite is a standard AEAD used as specified, with a 16-byte tag and
//! no associated data (see `state` for why none is needed):
//!
//! | byte | suite | key | nonce of frame `n` |
//! |---|---|---|---|
//! | 1 | AEGIS-128L | the first 16 bytes of `k_simple` | `0^8 ‖ n (u64 BE)` (16 bytes) |
//! | 2 | ChaCha20-Poly1305 (RFC 8439) | `k_simple` | `0^4 ‖ n (u64 BE)` (12 bytes) |
//!
//! `n` counts the direction's simple frames under the current key from 0,
//! so a (key, nonce) pair never repeats. AEGIS-128L comes from libaegis
//! (the `aegis` crate), which uses AES-NI or the ARMv8 AES instructions when
//! the CPU has them; ChaCha20-Poly1305 from AWS-LC. The agent picks
//! [`SimpleSuite::for_this_cpu`]; a proxy speaks both.
//!
//! Key material: the AEGIS key is a [`Secret`] (wiped on drop; what libaegis
//! leaves on the stack is described at [`aegis128l_seal`]); the
//! ChaCha20-Poly1305 key lives in an AWS-LC context that is cleansed when
//! freed (see [`crate::crypto`]).

use crate::crypto::{Aead, AuthError, NONCE_LEN, TAG_LEN, aegis128l_open, aegis128l_seal};
use crate::secret::{Key256, Secret};

/// The cipher of a session's simple path, chosen by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimpleSuite {
    /// AEGIS-128L: for CPUs with AES instructions.
    Aegis128L,
    /// ChaCha20-Poly1305: for CPUs without them.
    ChaCha20Poly1305,
}

impl SimpleSuite {
    /// Every suite.
    pub const ALL: [SimpleSuite; 2] = [SimpleSuite::Aegis128L, SimpleSuite::ChaCha20Poly1305];

    /// AEGIS-128L when this CPU has AES instructions that libaegis uses
    /// (x86-64 with AES-NI and AVX, ARMv8 with the AES extension), otherwise
    /// ChaCha20-Poly1305.
    pub fn for_this_cpu() -> Self {
        if hardware_aes() { Self::Aegis128L } else { Self::ChaCha20Poly1305 }
    }

    /// Its byte in the `ClientHello`.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Aegis128L => 1,
            Self::ChaCha20Poly1305 => 2,
        }
    }

    /// The suite a `ClientHello` byte names, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_byte() == byte)
    }

    /// Its name, as the docs and the logs write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aegis128L => "AEGIS-128L",
            Self::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        }
    }
}

impl std::fmt::Display for SimpleSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn hardware_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("avx")
}

#[cfg(target_arch = "aarch64")]
fn hardware_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn hardware_aes() -> bool {
    false
}

/// A suite's expanded key.
pub(crate) enum SuiteKey {
    Aegis128L(Secret<16>),
    ChaCha20Poly1305(Aead),
}

impl std::fmt::Debug for SuiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suite().name())?;
        f.write_str("([redacted])")
    }
}

impl SuiteKey {
    pub(crate) fn new(suite: SimpleSuite, key: &Key256) -> Self {
        match suite {
            SimpleSuite::Aegis128L => {
                let mut k = [0u8; 16];
                k.copy_from_slice(&key.expose()[..16]);
                let key = Secret::new(k);
                zeroize::Zeroize::zeroize(&mut k);
                Self::Aegis128L(key)
            }
            SimpleSuite::ChaCha20Poly1305 => Self::ChaCha20Poly1305(Aead::chacha20_poly1305(key)),
        }
    }

    pub(crate) fn suite(&self) -> SimpleSuite {
        match self {
            Self::Aegis128L(_) => SimpleSuite::Aegis128L,
            Self::ChaCha20Poly1305(_) => SimpleSuite::ChaCha20Poly1305,
        }
    }

    /// Encrypts frame number `n` in place, returning its tag.
    pub(crate) fn seal(&self, n: u64, buf: &mut [u8]) -> [u8; TAG_LEN] {
        match self {
            Self::Aegis128L(key) => aegis128l_seal(key, &aegis_nonce(n), &[], buf),
            Self::ChaCha20Poly1305(aead) => aead.seal_detached(&chacha_nonce(n), &[], buf),
        }
    }

    /// Checks frame number `n` against `tag` and decrypts it in place.
    pub(crate) fn open(
        &self,
        n: u64,
        tag: &[u8; TAG_LEN],
        buf: &mut [u8],
    ) -> Result<(), AuthError> {
        match self {
            Self::Aegis128L(key) => aegis128l_open(key, &aegis_nonce(n), &[], tag, buf),
            Self::ChaCha20Poly1305(aead) => aead.open_detached(&chacha_nonce(n), &[], tag, buf),
        }
    }
}

fn aegis_nonce(n: u64) -> [u8; 16] {
    let mut nonce = [0u8; 16];
    nonce[8..].copy_from_slice(&n.to_be_bytes());
    nonce
}

fn chacha_nonce(n: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    nonce
}
